"""Offsite copies are configured at deploy time from the env file (issue 23): off when OFFSITE_REPOSITORY is empty,
the offsite stack files added when it is set, and a half-made configuration refused in one line before anything
runs. No Docker: a fake `docker` prints the arguments it is given (the e2e tier runs the real thing)."""

import os

import pytest

from harness.docker import fake_docker
from harness.proc import run

FAKE_DOCKER = """printf 'OFFSITE_PASSWORD_VERSION=%s\\n' "${OFFSITE_PASSWORD_VERSION:-}"
printf '%s\\n' "$@"
"""


@pytest.fixture
def server(default_project, tmp_path):
    """A server's environment: the env file and secrets script/bootstrap writes (in tmp_path), a fake `docker`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFSITE_")}
    env.update(fake_docker(tmp_path, FAKE_DOCKER), LHD_ENV_FILE=str(tmp_path / "production.env"),
               LHD_SECRETS_DIR=str(tmp_path / "secrets"), HTTPS_SWITCH="on")
    run([default_project / "script/bootstrap"], env=env, timeout=60)
    return env


def secret(tmp_path, name, text="value\n"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def config(project, env, **extra):
    return run([project / "script/deploy", "--config", "abcdef12"], env={**env, **extra}, check=False, timeout=60)


def offsite_files(stdout):
    return [line.rsplit("/", 1)[-1] for line in stdout.splitlines() if "docker-compose.offsite" in line]


def test_bootstrap_writes_the_settings_and_a_password_it_never_replaces(default_project, server, tmp_path):
    """Offsite is off by default; the repository's password file exists, and --force keeps it."""
    text = (tmp_path / "production.env").read_text()
    assert "OFFSITE_REPOSITORY=\n" in text and "OFFSITE_KEEP_DAILY=7\n" in text
    password = tmp_path / "secrets" / "offsite_password"
    before = password.read_text()
    assert len(before.strip()) >= 32
    run([default_project / "script/bootstrap", "--force"], env=server, timeout=60)
    assert password.read_text() == before


def test_off_adds_no_offsite_files(default_project, server):
    result = config(default_project, server)
    assert result.returncode == 0, result.stderr
    assert offsite_files(result.stdout) == []


@pytest.mark.parametrize("kind, repository, files, expected", [
    ("s3", "s3:https://s3.example.net/backups",
     ("OFFSITE_S3_KEY_ID_FILE", "OFFSITE_S3_SECRET_FILE"), ["docker-compose.offsite.yml", "docker-compose.offsite-s3.yml"]),
    ("sftp", "sftp:backup@store.example.net:/srv/restic",
     ("OFFSITE_SSH_KEY_FILE", "OFFSITE_KNOWN_HOSTS_FILE"), ["docker-compose.offsite.yml", "docker-compose.offsite-sftp.yml"]),
])
def test_a_whole_configuration_adds_the_offsite_files(default_project, server, tmp_path, kind, repository, files,
                                                      expected):
    """A repository with its credentials: the offsite service and the store's secrets join the stack, and the
    password's secret is versioned by its content."""
    extra = {name: secret(tmp_path, name.lower()) for name in files}
    result = config(default_project, server, OFFSITE_REPOSITORY=repository, **extra)
    assert result.returncode == 0, result.stderr
    assert offsite_files(result.stdout) == expected
    assert len(result.stdout.splitlines()[0].split("=", 1)[1]) >= 8
    network = config(default_project, server, OFFSITE_REPOSITORY=repository, OFFSITE_NETWORK="stores", **extra)
    assert offsite_files(network.stdout) == [*expected, "docker-compose.offsite-network.yml"]


@pytest.mark.parametrize("settings, message", [
    ({"OFFSITE_REPOSITORY": "s3:https://s3.example.net/backups", "OFFSITE_PASSWORD_FILE": ""},
     "needs the restic repository's password, but OFFSITE_PASSWORD_FILE is not set"),
    ({"OFFSITE_REPOSITORY": "s3:https://s3.example.net/backups", "OFFSITE_PASSWORD_FILE": "/nonexistent/pw"},
     "OFFSITE_PASSWORD_FILE names /nonexistent/pw, which is missing or empty"),
    ({"OFFSITE_REPOSITORY": "s3:https://s3.example.net/backups"},
     "needs the S3 access key id, but OFFSITE_S3_KEY_ID_FILE is not set"),
    ({"OFFSITE_REPOSITORY": "s3:https://s3.example.net/backups", "OFFSITE_S3_KEY_ID_FILE": "KEY"},
     "needs the S3 secret access key, but OFFSITE_S3_SECRET_FILE is not set"),
    ({"OFFSITE_REPOSITORY": "sftp:backup@store.example.net:/srv/restic"},
     "needs the SSH private key that logs in to the store, but OFFSITE_SSH_KEY_FILE is not set"),
    ({"OFFSITE_REPOSITORY": "sftp:backup@store.example.net:/srv/restic", "OFFSITE_SSH_KEY_FILE": "KEY"},
     "needs the store's host key (a known_hosts line), but OFFSITE_KNOWN_HOSTS_FILE is not set"),
    ({"OFFSITE_REPOSITORY": "rest:https://store.example.net/"},
     "OFFSITE_REPOSITORY must be s3:http(s)://HOST/BUCKET or sftp:USER@HOST:/PATH"),
    ({"OFFSITE_REPOSITORY": "s3:https://s3.example.net/backups", "OFFSITE_S3_KEY_ID_FILE": "KEY",
      "OFFSITE_S3_SECRET_FILE": "KEY", "OFFSITE_KEEP_DAILY": "seven"},
     "OFFSITE_KEEP_DAILY must be a whole number above 0, not 'seven'"),
], ids=["no-password-file", "missing-password-file", "s3-no-key-id", "s3-no-secret", "sftp-no-key",
        "sftp-no-known-hosts", "unknown-kind", "bad-retention"])
def test_a_half_made_configuration_is_refused_in_one_line(default_project, server, tmp_path, settings, message):
    """script/deploy stops before it calls docker, with one line naming what is missing."""
    settings = {k: secret(tmp_path, "key") if v == "KEY" else v for k, v in settings.items()}
    result = config(default_project, server, **settings)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
