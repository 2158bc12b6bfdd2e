"""Unit tests of the hooks' functions, without rendering."""

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from harness.combinations import COOKIECUTTER_JSON, ROOT, rendered_defaults
from harness.proc import run
from hooks import post_gen_project as post
from hooks import pre_gen_project as pre

DEFAULTS = rendered_defaults()


def test_defaults_pass_validation():
    """The default answers have no problem."""
    assert pre.problems(dict(DEFAULTS)) == []


def test_every_answer_has_a_rule():
    """No variable of cookiecutter.json escapes validation, asked or not (pins, derived values)."""
    assert set(DEFAULTS) == set(pre.RULES)


def test_remove_unselected_keeps_tls_files_for_origin_certs_only(tmp_path):
    """A Let's Encrypt account given as the tls answer drops the origin-certificate config like tls=letsencrypt."""
    (tmp_path / "Docker/traefik/dynamic").mkdir(parents=True)
    (tmp_path / "Docker/traefik/dynamic/tls.yml").write_text("x")
    post.remove_unselected(tmp_path, dict(DEFAULTS, tls="ops@example.com"))
    assert not (tmp_path / "Docker/traefik/dynamic/tls.yml").exists()


def test_all_problems_reported_in_order():
    """Several bad answers give several messages, the first printed as ERROR."""
    answers = dict(DEFAULTS, project_name="Bad", app_domain="nope")
    found = pre.problems(answers)
    assert [m.split("=")[0] for m in found] == ["project_name", "app_domain"]


def test_github_derived_values_pass():
    """With git_host=github the registry and clone URL cookiecutter.json derives are the ones the hook expects."""
    github = dict(DEFAULTS, git_host="github", ci="github", __registry="ghcr.io/my-group/lhd-app",
                  __git_url="https://github.com/my-group/lhd-app.git")
    assert pre.problems(github) == []
    moved = dict(github, __registry="registry.gitlab.com/my-group/lhd-app")
    assert pre.problems(moved) == ["__registry='registry.gitlab.com/my-group/lhd-app' is not valid: it must be "
                                   "'ghcr.io/my-group/lhd-app', the registry of git_host, then /<repo_owner>/<repo_name>."]


@pytest.mark.parametrize("pin", sorted(k for k in DEFAULTS if k.endswith("_version")))
def test_pins_take_ascii_digits_only(pin):
    """Each pin's default passes; the same number in Arabic-Indic or fullwidth digits does not (\\d took them)."""
    for zero in ("\u0660", "\uff10"):
        other = "".join(chr(ord(zero) + int(c)) if c.isdigit() else c for c in DEFAULTS[pin])
        assert [m.split("=")[0] for m in pre.problems(dict(DEFAULTS, **{pin: other}))] == [pin]


def test_shard_names_are_the_templates_shard_yml():
    """SHARD_NAMES is every target and dependency of the template's shard.yml besides the project's own target."""
    import jinja2
    import yaml

    text = (ROOT / "{{cookiecutter.project_name}}" / "shard.yml").read_text()
    shard = yaml.safe_load(jinja2.Template(text).render(cookiecutter=DEFAULTS))
    names = (set(shard["targets"]) - {DEFAULTS["project_name"]}) | set(shard["dependencies"])
    assert set(pre.SHARD_NAMES) == names


def test_jinja_markers_are_what_cookiecutters_jinja_reads():
    """The hook refuses what starts Jinja syntax in cookiecutter's environment, as the guard extension does."""
    from cookiecutter.environment import StrictEnvironment

    from hooks import jinja_guard

    assert set(pre.JINJA_MARKERS) == set(jinja_guard.jinja_markers(StrictEnvironment()))


def test_typed_jinja_answer_is_refused_by_the_hook():
    """A value typed at a prompt is not evaluated, so the hook sees the Jinja itself and refuses it first."""
    answers = dict(DEFAULTS, tls="{{ 7*7 }}@example.com", __letsencrypt_email="{{ 7*7 }}@example.com")
    found = pre.problems(answers)
    assert [m.split("=")[0] for m in found] == ["tls", "__letsencrypt_email"]
    assert "it contains Jinja syntax ('{{', '{%', '{#')" in found[0]


def test_guard_allows_only_the_templates_own_text():
    """The extension lets cookiecutter.json's strings, the project directory's name and the hooks through, nothing else."""
    from cookiecutter.environment import StrictEnvironment

    from hooks import jinja_guard

    guard = jinja_guard.RefuseJinjaInAnswers(StrictEnvironment())
    own = [COOKIECUTTER_JSON["swarm_name"], COOKIECUTTER_JSON["ci"][0], "{{cookiecutter.project_name}}",
           (ROOT / "hooks" / "pre_gen_project.py").read_text()]
    for source in own:
        assert guard.preprocess(source, None) == source
    assert guard.preprocess("{{ x }}", "a/template/file") == "{{ x }}"
    with pytest.raises(jinja_guard.JinjaInAnswer, match=r"^ERROR: the template string '\{\{ cookiecutter.project_name\}\}'"):
        guard.preprocess("{{ cookiecutter.project_name}}", None)


def test_remove_unselected_prunes_files(tmp_path):
    """Files of options not chosen are deleted, others kept."""
    for rel in (".gitlab-ci.yml", ".github/workflows/ci.yml", "Docker/prometheus-swarm/x.yml",
                "script/monitoring", "Docker/traefik/dynamic/tls.yml"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    answers = dict(DEFAULTS, ci="none", monitoring="no", tls="letsencrypt")
    post.remove_unselected(tmp_path, answers)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == []


def test_write_dev_env_keeps_existing(tmp_path):
    """An existing .env is never overwritten."""
    (tmp_path / ".env.example").write_text("POSTGRES_PASSWORD=x\nPLAIN=1\n")
    (tmp_path / ".env").write_text("POSTGRES_PASSWORD=mine\n")
    post.write_dev_env(tmp_path)
    assert (tmp_path / ".env").read_text() == "POSTGRES_PASSWORD=mine\n"


def test_write_dev_env_fills_secrets(tmp_path):
    """Secrets are replaced, other lines and comments kept."""
    (tmp_path / ".env.example").write_text("# c\nPOSTGRES_PASSWORD=x\nPLAIN=1\n")
    post.write_dev_env(tmp_path)
    lines = (tmp_path / ".env").read_text().splitlines()
    assert lines[0] == "# c" and lines[2] == "PLAIN=1"
    assert len(lines[1].split("=")[1]) == 48
    assert stat.S_IMODE((tmp_path / ".env").stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("gh:acme/lhd", "https://github.com/acme/lhd.git"),
        ("gl:acme/lhd", "https://gitlab.com/acme/lhd.git"),
        ("https://example.org/lhd.git", "https://example.org/lhd.git"),
        ("git@github.com:acme/lhd.git", "git@github.com:acme/lhd.git"),
    ],
)
def test_recorded_template_expands_abbreviations(template, expected):
    """cruft gets a cloneable URL for every way cookiecutter is called."""
    assert post.template_state({"_template": template})[0]["template"] == expected


def test_recorded_local_template_path_is_absolute(tmp_path):
    """A local template is recorded by absolute path."""
    assert post.template_state({"_template": ".", "_repo_dir": str(tmp_path)})[0]["template"] == str(tmp_path)


def test_cruft_state_not_overwritten(tmp_path):
    """When cruft wrote .cruft.json itself, the hook leaves it alone."""
    (tmp_path / ".cruft.json").write_text('{"mine": true}')
    post.write_cruft_state(tmp_path, dict(DEFAULTS, _template="."))
    assert json.loads((tmp_path / ".cruft.json").read_text()) == {"mine": True}


# --- .cruft.json: where the template lives, and its commit (issue 16) --------------

def plain_copy(path):
    """A template directory that is not a git checkout (an unpacked archive)."""
    (path / "hooks").mkdir(parents=True)
    (path / "cookiecutter.json").write_text("{}\n")
    (path / "hooks" / "post_gen_project.py").write_text("\n")
    return path


def git_repo(path, template_at=".", origin=None):
    """A git repository at path with template files under template_at, committed; return the commit."""
    plain_copy(path / template_at)
    run(["git", "-C", path, "init", "-q", "-b", "main"])
    run(["git", "-C", path, "add", "-A"])
    run(["git", "-C", path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "A"])
    if origin:
        run(["git", "-C", path, "remote", "add", "origin", origin])
    return run(["git", "-C", path, "rev-parse", "HEAD"]).stdout.strip()


def nowhere():
    """A launcher_cwd stand-in for a system that does not say where the parent process is."""
    return None


@pytest.mark.parametrize(
    ("template", "origin"),
    [
        ("gh:acme/lhd", "https://github.com/acme/lhd.git"),
        ("gl:acme/lhd", "https://gitlab.com/acme/lhd.git"),
    ],
)
def test_abbreviation_records_clone_origin_and_commit(tmp_path, template, origin):
    """gh:/gl: record the expanded URL, the commit and checkout of cookiecutter's clone (faked here: no network)."""
    clone = tmp_path / ".cookiecutters" / "lhd"
    commit = git_repo(clone, origin=origin)
    answers = dict(DEFAULTS, _template=template, _repo_dir=str(clone), _checkout="v1")
    state, problem = post.template_state(answers, launcher=nowhere)
    assert problem is None
    assert state == {"template": origin, "commit": commit, "checkout": "v1", "directory": None}


def test_clone_subdirectory_records_directory(tmp_path):
    """A template in a subdirectory of a cloned repository (--directory) records the repository and the directory."""
    clone = tmp_path / "lhd"
    commit = git_repo(clone, "templates/web", origin="https://gitlab.com/acme/lhd.git")
    answers = dict(DEFAULTS, _template="gl:acme/lhd", _repo_dir=str(clone / "templates" / "web"), _checkout=None)
    state, problem = post.template_state(answers, launcher=nowhere)
    assert (state, problem) == ({"template": "https://gitlab.com/acme/lhd.git", "commit": commit, "checkout": None,
                                 "directory": "templates/web"}, None)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("git+file:///srv/git/lhd", "file:///srv/git/lhd"),
        ("git+https://example.org/lhd", "https://example.org/lhd"),
    ],
)
def test_git_plus_prefix_is_not_recorded(template, expected):
    """cookiecutter's "git+" only picks the VCS; cruft gets the URL git clones."""
    assert post.template_state({"_template": template}, launcher=nowhere)[0]["template"] == expected


def test_user_abbreviation_is_expanded(tmp_path, monkeypatch):
    """Abbreviations from the user's cookiecutter config expand like cookiecutter expands them."""
    config = tmp_path / "cookiecutterrc"
    config.write_text("abbreviations:\n  corp: https://git.corp.example/{0}.git\n")
    monkeypatch.setenv("COOKIECUTTER_CONFIG", str(config))
    state, _ = post.template_state({"_template": "corp:web/lhd"}, launcher=nowhere)
    assert state["template"] == "https://git.corp.example/web/lhd.git"


def test_relative_path_resolved_from_cookiecutters_directory(tmp_path, monkeypatch):
    """`cookiecutter .` records the template directory the parent process stands in, not the hook's cwd."""
    template = tmp_path / "lhd"
    commit = git_repo(template)
    project = tmp_path / "out" / "lhd_app"
    project.mkdir(parents=True)
    monkeypatch.chdir(project)
    monkeypatch.delenv("PWD", raising=False)
    answers = dict(DEFAULTS, _template=".", _repo_dir=".", _checkout="stable")
    state, problem = post.template_state(answers, launcher=lambda: template)
    assert problem is None
    # cookiecutter 2.7.1 checks out only what it clones (cookiecutter/repository.py, determine_repo_dir):
    # a local path renders its work tree as it is, so a --checkout given with it is not recorded
    assert state == {"template": str(template), "commit": commit, "checkout": None, "directory": None}


def test_relative_path_falls_back_to_shell_pwd(tmp_path, monkeypatch):
    """Where the parent's directory is unknown, `cookiecutter ../lhd` resolves against the shell's PWD."""
    template = tmp_path / "lhd"
    commit = git_repo(template)
    (tmp_path / "work").mkdir()
    monkeypatch.setenv("PWD", str(tmp_path / "work"))
    answers = dict(DEFAULTS, _template="../lhd", _repo_dir="../lhd")
    state, problem = post.template_state(answers, launcher=nowhere)
    assert (state["template"], state.get("commit"), problem) == (str(template), commit, None)


def test_relative_path_directory_of_local_repository(tmp_path):
    """`cookiecutter . --directory templates/web` records the repository and the directory."""
    repo = tmp_path / "lhd"
    commit = git_repo(repo, "templates/web")
    answers = dict(DEFAULTS, _template=".", _repo_dir="./templates/web")
    state, problem = post.template_state(answers, launcher=lambda: repo / "templates" / "web")
    assert (state, problem) == ({"template": str(repo), "commit": commit, "checkout": None,
                                 "directory": "templates/web"}, None)


@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="reads /proc (Linux)")
def test_launcher_cwd_is_the_parent_process_directory(tmp_path):
    """launcher_cwd() in a child process names the directory its parent works in, not its own."""
    code = "from hooks import post_gen_project as p; print(p.launcher_cwd())"
    result = run([sys.executable, "-c", code], cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert result.stdout.strip() == str(Path.cwd().resolve())


def test_unlocatable_relative_path_records_no_commit(tmp_path, monkeypatch, capsys):
    """When the relative template path cannot be resolved, nothing claims a commit, and the hook says so."""
    monkeypatch.delenv("PWD", raising=False)
    post.write_cruft_state(tmp_path, dict(DEFAULTS, _template=".", _repo_dir="."), launcher=nowhere)
    state = json.loads((tmp_path / ".cruft.json").read_text())
    assert "commit" not in state
    assert "cannot be located" in capsys.readouterr().err


def test_copy_without_git_records_no_commit_and_warns(tmp_path, capsys):
    """A template that is not a git checkout: answers kept, no commit key at all, a two-line warning on stderr."""
    copy = plain_copy(tmp_path / "lhd-1.0")
    project = tmp_path / "lhd_app"
    project.mkdir()
    post.write_cruft_state(project, dict(DEFAULTS, _template=str(copy), _repo_dir=str(copy)), launcher=nowhere)
    state = json.loads((project / ".cruft.json").read_text())
    assert "commit" not in state and "_commit" not in state["context"]["cookiecutter"]
    assert state["template"] == str(copy)
    assert state["context"]["cookiecutter"]["project_name"] == DEFAULTS["project_name"]
    assert state["skip"] == post.CRUFT_SKIP
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("WARNING: .cruft.json names no template commit")
    assert "git source" in lines[1] and captured.out == ""


def test_copy_inside_another_repository_is_not_that_repository(tmp_path):
    """An unpacked template lying untracked inside some other git repository gets no commit of that repository."""
    git_repo(tmp_path / "home")
    copy = plain_copy(tmp_path / "home" / "Downloads" / "lhd-1.0")
    state, problem = post.template_state(dict(DEFAULTS, _template=str(copy), _repo_dir=str(copy)), launcher=nowhere)
    assert "commit" not in state and "error-unmatch" in problem
    assert state["template"] == str(copy)


def test_git_checkout_records_commit_without_warning(tmp_path, capsys):
    """A template in a git checkout gets template, commit (also in the context) and no warning."""
    template = tmp_path / "lhd"
    commit = git_repo(template)
    project = tmp_path / "lhd_app"
    project.mkdir()
    post.write_cruft_state(project, dict(DEFAULTS, _template=str(template), _repo_dir=str(template)), launcher=nowhere)
    state = json.loads((project / ".cruft.json").read_text())
    assert (state["template"], state["commit"], state["directory"]) == (str(template), commit, None)
    assert state["context"]["cookiecutter"]["_commit"] == commit
    assert state["context"]["cookiecutter"]["_template"] == str(template)
    assert "_repo_dir" not in state["context"]["cookiecutter"] and "_output_dir" not in state["context"]["cookiecutter"]
    assert capsys.readouterr().err == ""


def test_cruft_rendering_writes_no_state(tmp_path, capsys):
    """When cruft renders (its context has _commit), the hook writes no .cruft.json and prints nothing."""
    answers = dict(DEFAULTS, _template="https://github.com/acme/lhd.git", _commit="0" * 40)
    post.write_cruft_state(tmp_path, answers, launcher=nowhere)
    assert not (tmp_path / ".cruft.json").exists()
    assert capsys.readouterr().err == ""
