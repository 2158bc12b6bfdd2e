"""Bad answers stop generation with one clear message and write nothing."""

import re

import pytest
import yaml
from cookiecutter.exceptions import FailedHookException, OutputDirExistsException

from harness.bake import bake

# (answers, words the error must contain): each a different kind of mistake.
BAD_INPUT = [
    ({"project_name": "MyApp"}, ["project_name", "'MyApp'", "lowercase letter"]),
    ({"project_name": "1app"}, ["project_name", "'1app'"]),
    ({"project_name": "my-app"}, ["project_name", "'my-app'"]),
    ({"project_name": "a" * 40}, ["project_name", "2-39 characters"]),
    ({"project_name": "traefik"}, ["project_name", "clashes"]),
    ({"project_name": "app'''; import os; os.system('true') #"}, ["project_name"]),
    ({"swarm_name": "my swarm"}, ["swarm_name", "'my swarm'"]),
    ({"repo_owner": "MyGroup"}, ["repo_owner", "lowercase"]),
    ({"repo_owner": "group-"}, ["repo_owner", "'group-'"]),
    ({"repo_name": "a/b"}, ["repo_name", "'a/b'"]),
    ({"app_domain": "https://example.com"}, ["app_domain", "without scheme"]),
    ({"app_domain": "localhost"}, ["app_domain", "'localhost'"]),
    ({"app_domain": "example.com:443"}, ["app_domain", "port"]),
    ({"app_domain": "Example.com"}, ["app_domain", "lowercase domain"]),
    ({"app_domain": "-bad.example.com"}, ["app_domain"]),
    ({"tls": "ops"}, ["tls", "'ops'", "e-mail"]),
    ({"tls": "maybe"}, ["tls", "'maybe'", "origin-certs, letsencrypt"]),
    ({"tls": "letsencrypt", "__letsencrypt_email": "ops"}, ["__letsencrypt_email", "e-mail"]),
    ({"git_host": "gitlab", "ci": "github"}, ["ci=github needs git_host=github"]),
    ({"git_host": "github", "ci": "gitlab"}, ["ci=gitlab needs git_host=gitlab"]),
    ({"_hasura_version": "2.51.0"}, ["_hasura_version", "v2.51.0"]),
    ({"_hasura_version": "v1.3.3"}, ["_hasura_version must be a v2 release"]),
    ({"_traefik_version": "v2.11.0"}, ["_traefik_version must be a v3 release"]),
    ({"_postgres_version": "17.6"}, ["_postgres_version must be 18 or newer"]),
    ({"_crystal_version": "latest"}, ["_crystal_version", "'latest'"]),
    ({"_grafana_version": "v12.1.0"}, ["_grafana_version", "12.1.0"]),
    ({"_lucky_version": "1.5"}, ["_lucky_version"]),
    ({"__registry": "docker.io/acme/shop"}, ["__registry", "ghcr.io"]),
    ({"project_name": "yes"}, ["project_name", "'yes'", "boolean or null"]),
    ({"project_name": "on"}, ["project_name", "'on'", "boolean or null"]),
    ({"project_name": "null"}, ["project_name", "'null'", "boolean or null"]),
    ({"project_name": "app", "swarm_name": "off"}, ["swarm_name", "'off'", "boolean or null"]),
    ({"swarm_name": "s" * 29}, ["swarm_name", "at most 28 characters", "63/64"]),
    ({"project_name": "p" * 30}, ["swarm_name", "defaults to project_name"]),
    ({"app_domain": ("a" * 60 + ".") * 4 + "com"}, ["app_domain", "247 characters", "at most 240", "253"]),
    # Security review 2026-12, section 6: the 18 answers that rendered a broken or dangerous project
    # (the review's row number first).
    # 14, 15: initdb refuses these as the superuser (project_name is POSTGRES_USER).
    ({"project_name": "pg_app"}, ["project_name='pg_app'", "PostgreSQL refuses it as a role name", "pg_*"]),
    ({"project_name": "public"}, ["project_name='public'", "PostgreSQL refuses it as a role name"]),
    # 16, 17, 18: a second shard target of the same name, or the shard named like a dependency.
    ({"project_name": "lucky_tasks"}, ["project_name='lucky_tasks'", "clashes with a target or dependency", "shard.yml"]),
    ({"project_name": "healthcheck"}, ["project_name='healthcheck'", "clashes with a target or dependency"]),
    ({"project_name": "lucky"}, ["project_name='lucky'", "clashes with a target or dependency"]),
    # 38, 39, 40: separators Docker's reference grammar refuses in an image path component.
    ({"repo_owner": "a..b"}, ["repo_owner='a..b'", "path component of Docker's image names", "one '.'"]),
    ({"repo_owner": "a._b"}, ["repo_owner='a._b'", "path component of Docker's image names"]),
    ({"repo_owner": "a___b"}, ["repo_owner='a___b'", "one or two '_'"]),
    # 41 (and 75): the hosts' own URL suffixes.
    ({"repo_name": "app.git"}, ["repo_name='app.git'", "must not end in .git or .atom"]),
    ({"repo_name": "app.atom"}, ["repo_name='app.atom'", "must not end in .git or .atom"]),
    # 47, 48, 79: digits of other scripts, which \d matched.
    ({"_crystal_version": "\u0661.\u0662\u0661.\u0660"}, ["_crystal_version='\u0661.\u0662\u0661.\u0660'", "a release number"]),
    ({"_postgres_version": "\u0661\u0668.\u0663"}, ["_postgres_version='\u0661\u0668.\u0663'", "MAJOR.MINOR"]),
    ({"_grafana_version": "\uff11\uff12.\uff14.\uff11\uff10"}, ["_grafana_version='\uff11\uff12.\uff14.\uff11\uff10'", "12.1.0"]),
    # 49: postgres image tags have two parts.
    ({"_postgres_version": "18.3.0"}, ["_postgres_version='18.3.0'", "two-part tags"]),
    # 52, 53 (and 54): derived values an override may not move elsewhere.
    ({"git_host": "gitlab", "__registry": "ghcr.io/other/repo"},
     ["__registry='ghcr.io/other/repo'", "it must be 'registry.gitlab.com/my-group/lhd-app'"]),
    ({"__registry": "registry.gitlab.com/attacker/repo"},
     ["__registry='registry.gitlab.com/attacker/repo'", "it must be 'registry.gitlab.com/my-group/lhd-app'"]),
    ({"__git_url": "https://github.com/other/repo.git"},
     ["__git_url='https://github.com/other/repo.git'", "it must be 'https://gitlab.com/my-group/lhd-app.git'"]),
    # 68, 69: not RFC 5322 dot-atoms, which Let's Encrypt refuses.
    ({"tls": "a..b@example.com"}, ["tls='a..b@example.com'", "no leading, trailing or double dot"]),
    ({"tls": ".ops@example.com"}, ["tls='.ops@example.com'", "no leading, trailing or double dot"]),
    ({"tls": "ops.@example.com"}, ["tls='ops.@example.com'", "no leading, trailing or double dot"]),
    # 71 (and 21, 35): Jinja in an answer, refused by hooks/jinja_guard.py before cookiecutter evaluates it.
    ({"tls": "{{ cycler.__init__.__globals__.os.getpid() }}@example.com"},
     ["tls='{{ cycler.__init__.__globals__.os.getpid() }}@example.com'", "Jinja syntax ('{{')", "run as code"]),
    ({"swarm_name": "{{ 7*7 }}"}, ["swarm_name='{{ 7*7 }}'", "Jinja syntax"]),
    ({"app_domain": "{% if 1 %}example.com{% endif %}"}, ["app_domain=", "Jinja syntax ('{%')"]),
    ({"project_name": "app{# x #}"}, ["project_name='app{# x #}'", "Jinja syntax ('{#')"]),
]


def bad_id(case):
    answers, _ = case
    return "-".join(f"{k}:{str(v)[:20]}" for k, v in answers.items())


@pytest.mark.parametrize("case", BAD_INPUT, ids=[bad_id(c) for c in BAD_INPUT])
def test_bad_answer_is_refused_cleanly(tmp_path, capfd, case):
    """One ERROR line names the variable, the value and the rule, and no output directory remains."""
    answers, words = case
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(FailedHookException) as refused:
        bake(out, **answers)
    err = capfd.readouterr().err
    # The hook prints its refusal; hooks/jinja_guard.py refuses before any hook runs, in the exception
    # (JinjaInAnswer), which cookiecutter's command line prints as it is.
    message = err if err.startswith("ERROR: ") else str(refused.value)
    first, *_ = message.splitlines()
    assert first.startswith("ERROR: "), message
    for word in words:
        assert word in first, f"{word!r} not in {first!r}"
    assert list(out.iterdir()) == []


def test_jinja_answer_never_runs(tmp_path):
    """An answer that would run Python (review row 71) is refused before it runs: its side effect never happens."""
    marker = tmp_path / "ran"
    out = tmp_path / "out"
    out.mkdir()
    payload = "{{ cycler.__init__.__globals__.os.mkdir('" + str(marker) + "') }}@example.com"
    with pytest.raises(FailedHookException, match="Jinja syntax"):
        bake(out, tls=payload)
    assert not marker.exists()
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("option", ["git_host", "ci", "monitoring", "template_update_check"])
def test_unknown_choice_is_refused(tmp_path, option):
    """A value outside a choice list is refused before anything is written."""
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ValueError, match=option):
        bake(out, **{option: "maybe"})
    assert list(out.iterdir()) == []


def test_empty_project_name_is_refused(tmp_path):
    """An empty name would render into the output directory itself: refused, nothing written."""
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(OutputDirExistsException):
        bake(out, project_name="")
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("email", ["o'brien@example.com", "ops+certs@example.com", "a.b@mail.example.com"])
def test_valid_email_is_accepted(tmp_path, email):
    """RFC 5322 local parts (apostrophe, plus) are accepted and land quoted in Traefik's static config."""
    project = bake(tmp_path, tls=email)
    static = yaml.safe_load((project / "Docker/traefik/traefik.https.yml").read_text())
    assert static["certificatesResolvers"]["letsencrypt"]["acme"]["email"] == email


def test_longest_swarm_name_keeps_every_name_within_swarm_limits(tmp_path):
    """With a 28-character swarm_name every service (63) and config or secret (64) name fits."""
    swarm = "s" * 28
    project = bake(tmp_path, swarm_name=swarm, monitoring="yes")
    hashed = "0123456789ab"  # script/functions/swarm: content hashes are 12 characters
    names = {"services": [], "configs": [], "secrets": []}
    for path in sorted((project / "Docker").rglob("docker-compose*.yml")):
        stack = f"{swarm}_monitoring" if "prometheus-swarm" in path.parts else swarm
        compose = yaml.safe_load(path.read_text())
        for kind, found in names.items():
            for key, spec in (compose.get(kind) or {}).items():
                name = (spec or {}).get("name") or f"{stack}_{key}"
                found.append(re.sub(r"\$\{[A-Z_]+_VERSION:\?[^}]*\}", hashed, name))
    assert names["services"] and names["configs"] and names["secrets"]
    assert max(map(len, names["services"])) <= 63, names["services"]
    assert max(map(len, names["configs"] + names["secrets"])) <= 64, names["configs"] + names["secrets"]
    assert max(map(len, names["configs"] + names["secrets"])) == 64, "28 is no longer the tightest bound"
