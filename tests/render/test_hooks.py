"""Unit tests of the hooks' functions, without rendering."""

import json
import stat

import pytest

from hooks import post_gen_project as post
from hooks import pre_gen_project as pre
from tests.combinations import rendered_defaults

DEFAULTS = rendered_defaults()

pytestmark = pytest.mark.render


def test_defaults_pass_validation():
    """The default answers have no problem."""
    assert pre.problems(dict(DEFAULTS)) == []


def test_every_answer_has_a_rule():
    """No variable of cookiecutter.json escapes validation."""
    assert set(DEFAULTS) == set(pre.RULES)


def test_all_problems_reported_in_order():
    """Several bad answers give several messages, the first printed as ERROR."""
    answers = dict(DEFAULTS, project_name="Bad", app_domain="nope")
    found = pre.problems(answers)
    assert [m.split("=")[0] for m in found] == ["project_name", "app_domain"]


def test_remove_unselected_prunes_files(tmp_path):
    """Files of options not chosen are deleted, others kept."""
    for rel in (".gitlab-ci.yml", ".github/workflows/ci.yml", "docker-sync.yml",
                "Docker/docker-compose.docker-sync.yml", "Docker/prometheus-swarm/x.yml",
                "script/monitoring", "Docker/traefik/dynamic/tls.yml"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    answers = dict(DEFAULTS, ci="none", dev_sync="compose-watch", monitoring="no", tls="letsencrypt")
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
def test_template_source_expands_abbreviations(template, expected):
    """cruft gets a cloneable URL for every way cookiecutter is called."""
    assert post.template_source({"_template": template}) == expected


def test_template_source_local_path_is_absolute(tmp_path):
    """A local template is recorded by absolute path."""
    assert post.template_source({"_template": ".", "_repo_dir": str(tmp_path)}) == str(tmp_path)


def test_cruft_state_not_overwritten(tmp_path):
    """When cruft wrote .cruft.json itself, the hook leaves it alone."""
    (tmp_path / ".cruft.json").write_text('{"mine": true}')
    post.write_cruft_state(tmp_path, dict(DEFAULTS, _template="."))
    assert json.loads((tmp_path / ".cruft.json").read_text()) == {"mine": True}
