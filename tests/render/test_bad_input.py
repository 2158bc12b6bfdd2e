"""Bad answers stop generation with one clear message and write nothing."""

import pytest
from cookiecutter.exceptions import FailedHookException, OutputDirExistsException

from tests.conftest import bake

pytestmark = pytest.mark.render

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
