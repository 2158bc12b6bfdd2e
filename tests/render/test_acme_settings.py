"""The ACME CA is chosen at deploy time from the server's env file (script/deploy acme_settings): Let's Encrypt
production by default, any ACME directory with a root to trust, half-configured values refused in one line before
Docker is called. No Docker: a fake `docker` prints the variables and arguments it is given (`--config`)."""

import os

import pytest

from harness.bake import bake
from harness.docker import fake_docker
from harness.proc import run

FAKE_DOCKER = """printf 'ACME_CA_SERVER=%s\\n' "${ACME_CA_SERVER:-}"
printf 'ACME_CERTIFICATES_DURATION=%s\\n' "${ACME_CERTIFICATES_DURATION:-}"
printf 'ACME_CA_ROOT=%s\\n' "${ACME_CA_ROOT:-}"
printf '%s\\n' "$@"
"""
PRODUCTION = "https://acme-v02.api.letsencrypt.org/directory"
STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
ACME_KEYS = ("ACME_CA_SERVER", "ACME_CA_ROOT", "ACME_CERTIFICATES_DURATION")


@pytest.fixture(scope="module")
def letsencrypt_project(tmp_path_factory):
    """Rendered with tls=letsencrypt under a path without `:` (the bake cache's names have them, and
    LHD_EXTRA_COMPOSE_FILES, which carries the root's compose file, is `:`-separated)."""
    return bake(tmp_path_factory.mktemp("letsencrypt"), tls="letsencrypt", monitoring="no", ci="none")


def server(project, tmp_path):
    """A server's environment: the env file and secrets script/bootstrap writes, a fake `docker` first on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in ACME_KEYS}
    env.update(fake_docker(tmp_path, FAKE_DOCKER), LHD_ENV_FILE=str(tmp_path / "production.env"),
               LHD_SECRETS_DIR=str(tmp_path / "secrets"), HTTPS_SWITCH="on")
    run([project / "script/bootstrap"], env=env, timeout=60)
    return env


def deploy_config(project, env, **settings):
    return run([project / "script/deploy", "--config", "aaaa1111"], env={**env, **settings}, check=False, timeout=60)


def printed(stdout):
    return dict(line.split("=", 1) for line in stdout.splitlines() if line.startswith("ACME_"))


def test_default_is_lets_encrypt_production(letsencrypt_project, tmp_path):
    """The env file as script/bootstrap writes it: Let's Encrypt production, 90-day certificates, no root file."""
    env = server(letsencrypt_project, tmp_path)
    text = (tmp_path / "production.env").read_text()
    assert f"ACME_CA_SERVER={PRODUCTION}\n" in text and "ACME_CA_ROOT=\n" in text
    result = deploy_config(letsencrypt_project, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert printed(result.stdout) == {"ACME_CA_SERVER": PRODUCTION, "ACME_CERTIFICATES_DURATION": "2160",
                                      "ACME_CA_ROOT": ""}
    assert "docker-compose.acme-ca.yml" not in result.stdout


def test_private_ca_with_its_root(letsencrypt_project, tmp_path):
    """A private ACME directory and its root: the root's compose file is added and the root passed absolute."""
    env = server(letsencrypt_project, tmp_path)
    (tmp_path / "root.pem").write_text(PEM)
    result = run([letsencrypt_project / "script/deploy", "--config", "aaaa1111"], check=False, timeout=60,
                 cwd=tmp_path, env={**env, "ACME_CA_SERVER": "https://pebble:14000/dir", "ACME_CA_ROOT": "root.pem"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert printed(result.stdout)["ACME_CA_ROOT"] == str(tmp_path / "root.pem")
    assert str(letsencrypt_project / "Docker/docker-compose.acme-ca.yml") in result.stdout.splitlines()


@pytest.mark.parametrize(("settings", "named"), [
    ({"ACME_CA_SERVER": "http://pebble:14000/dir"}, "ACME_CA_SERVER"),
    ({"ACME_CA_SERVER": "pebble"}, "ACME_CA_SERVER"),
    ({"ACME_CERTIFICATES_DURATION": "90d"}, "ACME_CERTIFICATES_DURATION"),
    ({"ACME_CA_ROOT": "{root}"}, "ACME_CA_ROOT"),  # a root for Let's Encrypt's own directory
    ({"ACME_CA_SERVER": STAGING, "ACME_CA_ROOT": "{root}"}, "ACME_CA_ROOT"),
    ({"ACME_CA_SERVER": "https://ca.internal/dir", "ACME_CA_ROOT": "{missing}"}, "ACME_CA_ROOT"),
    ({"ACME_CA_SERVER": "https://ca.internal/dir", "ACME_CA_ROOT": "{not_pem}"}, "ACME_CA_ROOT"),
], ids=["http", "no-url", "duration-unit", "root-for-production", "root-for-staging", "root-missing", "root-not-pem"])
def test_half_configured_ca_is_refused_in_one_line(letsencrypt_project, tmp_path, settings, named):
    """A value that cannot work stops script/deploy with one line naming the setting, before Docker is called."""
    env = server(letsencrypt_project, tmp_path)
    (tmp_path / "root.pem").write_text(PEM)
    (tmp_path / "not.pem").write_text("hello\n")
    paths = {"root": tmp_path / "root.pem", "missing": tmp_path / "nowhere.pem", "not_pem": tmp_path / "not.pem"}
    result = deploy_config(letsencrypt_project, env, **{k: v.format(**paths) for k, v in settings.items()})
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], result.stderr


def test_origin_certs_project_refuses_acme_settings(bakes, tmp_path):
    """A tls=origin-certs project refuses ACME settings instead of ignoring them."""
    project = bakes.get({"monitoring": "no", "ci": "none"})
    env = server(project, tmp_path)
    result = deploy_config(project, env, ACME_CA_SERVER=STAGING)
    assert result.returncode == 1 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and "tls=letsencrypt" in result.stderr
