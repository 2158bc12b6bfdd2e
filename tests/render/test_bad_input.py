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
]


def bad_id(case):
    answers, _ = case
    return "-".join(f"{k}:{str(v)[:20]}" for k, v in answers.items())


@pytest.mark.parametrize("case", BAD_INPUT, ids=[bad_id(c) for c in BAD_INPUT])
def test_bad_answer_is_refused_cleanly(tmp_path, capfd, case):
    """The hook names the variable and rule, and no output directory remains."""
    answers, words = case
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(FailedHookException):
        bake(out, **answers)
    err = capfd.readouterr().err
    assert err.startswith("ERROR: "), err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"
    assert list(out.iterdir()) == []


def test_enough_kinds_of_bad_input():
    """The table covers at least 15 distinct mistakes."""
    assert len({bad_id(c) for c in BAD_INPUT}) >= 15


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
