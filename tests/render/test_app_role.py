"""script/bootstrap and the app's own database role (security review M5): the role's password file, also for an
env file written before the role existed."""

import os

from harness.proc import run


def script(project, *args, env):
    return run([project / "script" / args[0], *args[1:]], cwd=project, env={**os.environ, **env}, check=False,
               timeout=60)


def test_bootstrap_gives_an_older_env_file_the_app_roles_password(default_project, tmp_path):
    """An env file from before the role (no POSTGRES_APP_PASSWORD_FILE, no file) is refused by deploy, naming the
    variable; bootstrap then writes a new password file (0600) and adds its line, changing nothing else; a
    second bootstrap changes nothing."""
    env_file, secrets = tmp_path / "prod.env", tmp_path / "secrets"
    env = {"LHD_ENV_FILE": str(env_file), "LHD_SECRETS_DIR": str(secrets)}
    assert script(default_project, "bootstrap", env=env).returncode == 0
    app_file = secrets / "postgres_app_password"
    assert f"POSTGRES_APP_PASSWORD_FILE={app_file}" in env_file.read_text().splitlines()
    older = [line for line in env_file.read_text().splitlines() if not line.startswith("POSTGRES_APP_PASSWORD_FILE=")]
    env_file.write_text("\n".join(older) + "\n")
    app_file.unlink()
    others = {p.name: p.read_text() for p in secrets.iterdir()}

    refused = script(default_project, "deploy", "--config", "aaaa1111", env=env)
    assert refused.returncode == 1
    assert "POSTGRES_APP_PASSWORD_FILE is not set in the env file (see script/bootstrap)" in refused.stderr

    upgraded = script(default_project, "bootstrap", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert env_file.read_text().splitlines() == [*older, f"POSTGRES_APP_PASSWORD_FILE={app_file}"]
    assert len(app_file.read_text().strip()) == 48 and oct(app_file.stat().st_mode & 0o777) == "0o600"
    assert {p.name: p.read_text() for p in secrets.iterdir() if p != app_file} == others

    text, password = env_file.read_text(), app_file.read_text()
    assert script(default_project, "bootstrap", env=env).returncode == 0
    assert env_file.read_text() == text and app_file.read_text() == password
