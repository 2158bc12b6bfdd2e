"""Interactive use: the questions cookiecutter asks, and the answers landing in the project.

Runs the real command line, `python -m cookiecutter <template> -o <dir>`, with the
answers on stdin. cookiecutter 2.7.1 asks through rich (cookiecutter/prompt.py,
read_user_variable and read_user_choice: `Prompt.ask`), which reads a line per
question from a pipe, and numbers every question `[n/total]`, total being the
keys that do not start with `_` (prompt_for_config).
"""

import json
import os
import re
import sys

import pytest
import yaml

from harness.combinations import COOKIECUTTER_JSON, ROOT
from harness.proc import run

MAX_QUESTIONS = 10
QUESTION = re.compile(r"\[(\d+)/(\d+)\] (?!\()")  # not "Choose from [1/2] (1)"
PROMPTS = COOKIECUTTER_JSON["__prompts__"]

# Each path: answers typed, one line per question in order (empty: Enter takes the default), and the
# answers the project must record in .cruft.json.
PATHS = {
    "defaults": (
        [""] * MAX_QUESTIONS,
        {"project_name": "lhd_app", "swarm_name": "lhd_app", "git_host": "gitlab", "repo_owner": "my-group",
         "repo_name": "lhd-app", "app_domain": "example.com", "ci": "gitlab", "tls": "origin-certs",
         "monitoring": "yes", "template_update_check": "yes"},
    ),
    "letsencrypt": (
        ["shop", "", "2", "acme", "", "shop.example.org", "", "certs@shop.example.org", "2", "2"],
        {"project_name": "shop", "swarm_name": "shop", "git_host": "github", "repo_owner": "acme",
         "repo_name": "shop", "app_domain": "shop.example.org", "ci": "github", "tls": "certs@shop.example.org",
         "monitoring": "no", "template_update_check": "no"},
    ),
}


def cookiecutter_cli(tmp_path, *args, stdin=None, check=True):
    """Run cookiecutter's command line in tmp_path with a home of its own; return the result."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    # COLUMNS: rich wraps prompts at the terminal width, 80 without a terminal.
    env = dict(os.environ, HOME=str(home), COLUMNS="400")
    env.pop("COOKIECUTTER_CONFIG", None)
    return run([sys.executable, "-m", "cookiecutter", ROOT, "-o", tmp_path / "out", *args],
               cwd=tmp_path, env=env, input=stdin, check=check, timeout=300)


@pytest.fixture(scope="module", params=list(PATHS))
def session(request, tmp_path_factory):
    """(path name, cookiecutter's output, the project) for one interactive session."""
    typed, expected = PATHS[request.param]
    tmp_path = tmp_path_factory.mktemp(request.param)
    # More lines than questions: a question too many would take a default instead of hanging on EOF.
    result = cookiecutter_cli(tmp_path, stdin="\n".join(typed + [""] * MAX_QUESTIONS) + "\n")
    return request.param, result.stdout, tmp_path / "out" / expected["project_name"]


def questions(output):
    """The [n/total] numbers of the questions cookiecutter printed, in order."""
    return [(int(n), int(total)) for n, total in QUESTION.findall(output)]


def test_at_most_ten_questions(session):
    """Each path asks the same numbered questions, one per public key, at most ten."""
    _, output, _ = session
    asked = questions(output)
    total = len([k for k in COOKIECUTTER_JSON if not k.startswith("_")])
    assert asked == [(n, total) for n in range(1, total + 1)]
    assert total <= MAX_QUESTIONS


def test_questions_in_plain_words(session):
    """Every question is the wording of __prompts__, never a bare key name."""
    _, output, _ = session
    assert "Select " not in output  # cookiecutter's wording for a choice without a prompt
    for key in (k for k in COOKIECUTTER_JSON if not k.startswith("_")):
        wording = PROMPTS[key]["__prompt__"] if isinstance(PROMPTS[key], dict) else PROMPTS[key]
        assert wording in output, key


def test_project_has_the_answers_given(session):
    """.cruft.json records the answers typed (or taken by Enter), derived values following them."""
    name, _, project = session
    answers = json.loads((project / ".cruft.json").read_text())["context"]["cookiecutter"]
    assert {k: answers[k] for k in PATHS[name][1]} == PATHS[name][1]
    registry = {"gitlab": "registry.gitlab.com", "github": "ghcr.io"}[answers["git_host"]]
    assert answers["__registry"] == f"{registry}/{answers['repo_owner']}/{answers['repo_name']}"


def test_letsencrypt_account_only_on_its_path(session):
    """The e-mail typed as the TLS answer is the ACME account; the defaults path has no account anywhere."""
    name, _, project = session
    https = yaml.safe_load((project / "Docker/traefik/traefik.https.yml").read_text())
    readme = (project / "README.md").read_text()
    if name == "letsencrypt":
        assert https["certificatesResolvers"]["letsencrypt"]["acme"]["email"] == "certs@shop.example.org"
        assert "account `certs@shop.example.org`" in readme
        assert not (project / "Docker/traefik/dynamic/tls.yml").exists()
    else:
        assert "certificatesResolvers" not in https and "Let's Encrypt (" not in readme
        assert (project / "Docker/traefik/dynamic/tls.yml").is_file()


def test_ci_follows_git_host(session):
    """Enter at the CI question gives the CI of the host chosen before it."""
    name, _, project = session
    github = name == "letsencrypt"
    assert (project / ".github/workflows/ci.yml").is_file() == github
    assert (project / ".gitlab-ci.yml").is_file() == (not github)


def test_git_host_alone_without_input(tmp_path):
    """`cookiecutter . --no-input git_host=github` succeeds: ci follows git_host unless given."""
    cookiecutter_cli(tmp_path, "--no-input", "git_host=github")
    project = tmp_path / "out" / "lhd_app"
    assert (project / ".github/workflows/ci.yml").is_file() and not (project / ".gitlab-ci.yml").exists()
    assert "ghcr.io/my-group/lhd-app/lucky:" in (project / "Docker/docker-compose.prod.yml").read_text()


@pytest.mark.parametrize(
    ("given", "ci_file"),
    [(["ci=none"], None), (["git_host=github", "ci=none"], None), (["ci=gitlab"], ".gitlab-ci.yml")],
    ids=["ci:none", "git_host:github-ci:none", "ci:gitlab"],
)
def test_ci_given_wins(tmp_path, given, ci_file):
    """A ci given on the command line is taken as given."""
    cookiecutter_cli(tmp_path, "--no-input", *given)
    project = tmp_path / "out" / "lhd_app"
    found = [f for f in (".gitlab-ci.yml", ".github/workflows/ci.yml") if (project / f).exists()]
    assert found == ([ci_file] if ci_file else [])


def test_pin_override_on_the_command_line(tmp_path):
    """A pin is overridden by its `_` name on the command line and lands in the project."""
    cookiecutter_cli(tmp_path, "--no-input", "_crystal_version=1.22.0")
    assert "ARG CRYSTAL_VERSION=1.22.0" in (tmp_path / "out/lhd_app/Docker/lucky/Dockerfile").read_text()


def test_bad_pin_override_is_refused_with_one_message(tmp_path):
    """A malformed pin stops generation with one line naming the pin, the value and the rule; nothing is written."""
    result = cookiecutter_cli(tmp_path, "--no-input", "_crystal_version=latest", check=False)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR: ")]
    assert errors == ["ERROR: _crystal_version='latest' is not valid: a release number such as 1.21.0."]
    assert not (tmp_path / "out" / "lhd_app").exists()


def test_jinja_answer_is_refused_before_it_runs(tmp_path):
    """An answer holding Jinja (review row 71) stops cookiecutter in one line before it is evaluated; nothing is written."""
    marker = tmp_path / "ran"
    payload = "tls={{ cycler.__init__.__globals__.os.mkdir('" + str(marker) + "') }}@example.com"
    result = cookiecutter_cli(tmp_path, "--no-input", payload, check=False)
    assert result.returncode != 0
    # cookiecutter's command line prints the refusal (hooks/jinja_guard.py, JinjaInAnswer) on stdout.
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("ERROR: ")]
    assert len(errors) == 1 and errors[0].startswith('ERROR: tls="{{ cycler.') and "Jinja syntax ('{{')" in errors[0]
    assert "Traceback" not in result.stderr
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_jinja_typed_at_a_prompt_is_refused(tmp_path):
    """Typed at the TLS question, Jinja is not evaluated: the pre-gen hook refuses it in one line, nothing written."""
    typed = ["", "", "", "", "", "", "", "{{7*7}}@example.com"]
    result = cookiecutter_cli(tmp_path, stdin="\n".join(typed + [""] * MAX_QUESTIONS) + "\n", check=False)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR: ")]
    assert errors[0].startswith("ERROR: tls='{{7*7}}@example.com' is not valid: it contains Jinja syntax"), errors
    assert not (tmp_path / "out" / "lhd_app").exists()
