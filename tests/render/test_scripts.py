"""Generated scripts: usage errors and bad settings fail clearly (no Docker needed)."""

import os

import pytest

from harness.proc import run

# (script and arguments, exit code, words the output must contain)
USAGE = [
    (["up", "--bogus"], 2, "usage: script/up"),
    (["down", "extra"], 2, "usage: script/down"),
    (["watch", "extra"], 2, "usage: script/watch"),
    (["build", "--bogus"], 2, "usage: script/build"),
    (["build", "aaaa1111", "bbbb2222"], 2, "usage: script/build"),
    (["deploy", "--bogus"], 2, "usage: script/deploy"),
    (["rollback"], 2, "usage: script/rollback"),
    (["rollback", "--bogus", "aaaa1111"], 2, "usage: script/rollback"),
    (["bootstrap", "--bogus"], 2, "usage: script/bootstrap"),
    (["ci_deploy", "staging"], 2, "usage: script/ci_deploy"),
    (["ci_deploy", "qa", "aaaa1111"], 2, "usage: script/ci_deploy"),
    (["monitoring"], 2, "usage: script/monitoring"),
    (["deploy", "not-a-sha"], 1, "'not-a-sha' is not an 8-character commit SHA"),
    (["rollback", "XYZ"], 1, "'XYZ' is not an 8-character commit SHA"),
    (["ci_deploy", "staging", "aaaa1111"], 1, "SERVER_IP is not set (the staging server's address"),
]


def run_script(project, args, **env):
    return run([project / "script" / args[0], *args[1:]], cwd=project, env={**os.environ, **env}, timeout=60,
               check=False)


@pytest.mark.parametrize(("args", "code", "words"), USAGE, ids=[" ".join(a) for a, _, _ in USAGE])
def test_bad_arguments_fail_clearly(default_project, args, code, words):
    """A wrong call prints one clear line and exits non-zero."""
    result = run_script(default_project, args, SERVER_IP="")
    assert result.returncode == code, result.stdout + result.stderr
    assert words in result.stderr


def test_help_exits_zero(default_project):
    result = run_script(default_project, ["deploy", "--help"])
    assert result.returncode == 0 and result.stdout.startswith("usage: script/deploy")


def test_deploy_without_env_file_names_it(default_project, tmp_path):
    missing = tmp_path / "nope.env"
    result = run_script(default_project, ["deploy", "--config", "aaaa1111"], LHD_ENV_FILE=str(missing))
    assert result.returncode == 1
    assert f"{missing} does not exist: run script/bootstrap" in result.stderr


def test_bad_https_switch_is_refused(default_project, tmp_path):
    env_file = tmp_path / "prod.env"
    assert run_script(default_project, ["bootstrap"], LHD_ENV_FILE=str(env_file)).returncode == 0
    result = run_script(default_project, ["deploy", "--config", "aaaa1111"], LHD_ENV_FILE=str(env_file),
                        HTTPS_SWITCH="maybe")
    assert result.returncode == 1
    assert "HTTPS_SWITCH must be 'on' or 'off', not 'maybe'" in result.stderr


@pytest.mark.parametrize(("mail", "key", "refusal"), [
    ("maybe", None, "✖ MAIL must be 'sendgrid' or 'off', not 'maybe'"),
    ("sendgrid", None, "✖ MAIL=sendgrid, but {secrets}/send_grid_key holds no SendGrid key: write the key there (or "
                       "set MAIL=off)"),
], ids=["unknown", "sendgrid-without-key"])
def test_mail_is_a_setting_deploy_checks(default_project, tmp_path, mail, key, refusal):
    """bootstrap writes MAIL=off (no silent `unused` key deciding it); deploy refuses an unknown MAIL and
    MAIL=sendgrid while the key file still holds bootstrap's placeholder, in one line, before any docker call."""
    env = {"LHD_ENV_FILE": str(tmp_path / "prod.env"), "LHD_SECRETS_DIR": str(tmp_path / "secrets")}
    assert run_script(default_project, ["bootstrap"], **env).returncode == 0
    assert "\nMAIL=off\n" in (tmp_path / "prod.env").read_text()
    result = run_script(default_project, ["deploy", "--config", "aaaa1111"], MAIL=mail, **env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == refusal.format(secrets=tmp_path / "secrets")


def test_bootstrap_keeps_existing_secrets(default_project, tmp_path):
    """A second bootstrap never rotates secrets silently (--force, which does: test_script_hardening). The env file
    holds paths, not values."""
    env_file, secrets = tmp_path / "prod.env", tmp_path / "secrets"
    env = {"LHD_ENV_FILE": str(env_file), "LHD_SECRETS_DIR": str(secrets)}

    def secret_values():
        return {p.name: p.read_text() for p in secrets.iterdir()}
    run_script(default_project, ["bootstrap"], **env)
    first, values = env_file.read_text(), secret_values()
    assert f"POSTGRES_PASSWORD_FILE={secrets}/postgres_password" in first
    assert not any(v.strip() in first for v in values.values())
    again = run_script(default_project, ["bootstrap"], **env)
    assert "Keeping" in again.stdout and env_file.read_text() == first and secret_values() == values
    assert {oct(p.stat().st_mode & 0o777) for p in [env_file, *secrets.iterdir()]} == {"0o600"}


def test_bootstrap_moves_secret_values_into_files(default_project, tmp_path):
    """--secrets-to-files turns an old env file's secret values into files, keeping every other line; deploy
    refuses the old shape until then, naming the fix."""
    env_file, secrets = tmp_path / "prod.env", tmp_path / "secrets"
    run_script(default_project, ["bootstrap"], LHD_ENV_FILE=str(env_file), LHD_SECRETS_DIR=str(secrets))
    lines = [line for line in env_file.read_text().splitlines() if not line.startswith(("POSTGRES_PASSWORD_FILE",
                                                                                         "SECRET_KEY_BASE_FILE"))]
    env_file.write_text("\n".join([*lines, "POSTGRES_PASSWORD=0123abcd", 'SECRET_KEY_BASE="feed"']) + "\n")
    for name in ("postgres_password", "secret_key_base"):  # the old layout had values, no files
        (secrets / name).unlink()
    refused = run_script(default_project, ["deploy", "--config", "aaaa1111"], LHD_ENV_FILE=str(env_file),
                         LHD_SECRETS_DIR=str(secrets))
    assert refused.returncode == 1
    assert "the env file sets POSTGRES_PASSWORD as a value; secrets now live in files: run script/bootstrap " \
           "--secrets-to-files once" in refused.stderr
    moved = run_script(default_project, ["bootstrap", "--secrets-to-files"], LHD_ENV_FILE=str(env_file),
                       LHD_SECRETS_DIR=str(secrets))
    assert moved.returncode == 0, moved.stderr
    text = env_file.read_text()
    assert "POSTGRES_PASSWORD=" not in text and f"POSTGRES_PASSWORD_FILE={secrets}/postgres_password" in text
    assert (secrets / "postgres_password").read_text() == "0123abcd\n"
    assert (secrets / "secret_key_base").read_text() == "feed\n"
    assert [line for line in lines if line not in text.splitlines()] == []


def test_env_file_with_bad_line_names_it(default_project, tmp_path):
    env_file = tmp_path / "prod.env"
    env_file.write_text("APP_DOMAIN=example.com\nthis is not a setting\n")
    result = run_script(default_project, ["deploy", "--config", "aaaa1111"], LHD_ENV_FILE=str(env_file))
    assert result.returncode == 1
    assert f"{env_file}:2: expected KEY=VALUE" in result.stderr
