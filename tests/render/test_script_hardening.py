"""The generated scripts against the security review of 2026-12 (M1, M4, M6, L1, L2, L7), with real flock, real git
and fake docker/pg_isready/curl programs that record their arguments (no Docker engine)."""

import fcntl
import hashlib
import hmac
import os
import shutil
import stat
import subprocess

import pytest

from harness.docker import fake_docker
from harness.proc import default_signals, run

SECRET_FILES = {"postgres_password", "hasura_graphql_admin_secret", "hasura_jwt_key", "secret_key_base",
                "send_grid_key", "dashboard_users", "grafana_admin_password"}


@pytest.fixture
def own_project(default_project, tmp_path):
    """A private copy of the default project (tests here write .env, etc/secrets and .deploy in it)."""
    copy = tmp_path / "project"
    shutil.copytree(default_project, copy, symlinks=True)
    return copy


def functions(project, body):
    """A bash program that sources the project's common and swarm functions, then runs body."""
    return (f"set -euo pipefail\nsource {project}/script/functions/common\nsource {project}/script/functions/swarm\n"
            f"{body}\n")


def fake_bin(directory, name, script):
    """directory/name, an executable sh script; returns directory."""
    directory.mkdir(exist_ok=True)
    (directory / name).write_text("#!/bin/sh\n" + script)
    (directory / name).chmod(0o755)
    return directory


# --- M1: the deploy lock --------------------------------------------------------------------------------------------

def take_lock(project, lock_dir, what="script/deploy additive aaaa1111", **env):
    return run(["bash", "-c", functions(project, f'take_deploy_lock "{what}"; echo locked')], check=False,
               env={**os.environ, "DEPLOY_LOCK_DIR": str(lock_dir), **env}, stdin=subprocess.DEVNULL, timeout=30)


def test_lock_defaults_to_a_private_directory_in_the_project(own_project, tmp_path):
    """Without DEPLOY_LOCK_DIR the lock is PROJECT_ROOT/.deploy/lock, whatever TMPDIR is; the directory is 2770 and
    the lock 0660 (never 0666); the holder is a separate file."""
    env = {k: v for k, v in os.environ.items() if k != "DEPLOY_LOCK_DIR"}
    result = run(["bash", "-c", functions(own_project, 'take_deploy_lock "script/deploy x"')],
                 env={**env, "TMPDIR": str(tmp_path)}, timeout=30)
    lock_dir = own_project / ".deploy"
    assert result.returncode == 0
    assert stat.S_IMODE(lock_dir.stat().st_mode) == 0o2770
    assert stat.S_IMODE((lock_dir / "lock").stat().st_mode) == 0o660
    assert (lock_dir / "lock").read_text() == ""
    assert (lock_dir / "holder").read_text().startswith("script/deploy x, by ")
    assert not list(tmp_path.glob("*.deploy.lock"))


@pytest.mark.parametrize("planted", ["lock", "directory"])
def test_a_symlink_lock_is_refused(own_project, tmp_path, planted):
    """A lock (or lock directory) that is a symlink planted by someone else is refused, and its target never made."""
    lock_dir, target = tmp_path / "deploy", tmp_path / "victim" / ".bashrc"
    target.parent.mkdir()
    if planted == "lock":
        lock_dir.mkdir(mode=0o2770)
        (lock_dir / "lock").symlink_to(target)
    else:
        lock_dir.symlink_to(target.parent)
    result = take_lock(own_project, lock_dir)
    assert result.returncode == 1 and "locked" not in result.stdout
    assert "is a symlink" in result.stderr
    assert not target.exists() and not (target.parent / "lock").exists()


def test_a_lock_directory_open_to_others_is_refused(own_project, tmp_path):
    """A lock directory others may enter (e.g. 0777 like /tmp) is refused, naming the fix."""
    lock_dir = tmp_path / "deploy"
    lock_dir.mkdir()
    lock_dir.chmod(0o777)
    result = take_lock(own_project, lock_dir)
    assert result.returncode == 1
    assert f"the deploy lock directory {lock_dir} must belong to" in result.stderr and "chmod 2770" in result.stderr


def test_a_second_holder_is_refused_naming_the_first(own_project, tmp_path):
    """While one take_deploy_lock holds the lock (real flock), a second stops at once, naming the first."""
    lock_dir, go = tmp_path / "deploy", tmp_path / "go"
    first = functions(own_project, f'take_deploy_lock "script/rollback -s aaaa1111"; touch {tmp_path}/held; '
                                   f'until [ -e {go} ]; do sleep 0.1; done')
    script = (f'bash -c {subprocess.list2cmdline([first])} & pid=$!\n'
              f'until [ -e {tmp_path}/held ]; do sleep 0.1; done\n'
              f'bash -c {subprocess.list2cmdline([functions(own_project, "take_deploy_lock second")])}; status=$?\n'
              f'touch {go}; wait $pid; exit $status\n')
    result = run(["bash", "-c", script], check=False, env={**os.environ, "DEPLOY_LOCK_DIR": str(lock_dir)}, timeout=60)
    assert result.returncode == 1
    assert "another deploy, rollback or restore of lhd_app is running (script/rollback -s aaaa1111, by " in result.stderr
    assert "wait until it ends, then try again" in result.stderr


def test_the_holder_is_printed_without_terminal_escapes(own_project, tmp_path):
    """Text in the holder file is printed with control characters removed (no ANSI escapes reach the terminal)."""
    lock_dir = tmp_path / "deploy"
    take_lock(own_project, lock_dir)
    (lock_dir / "holder").write_text("\x1b[31mdeploy by root\x07, call +1-555-0100\x1b[0m\r\n")
    with (lock_dir / "lock").open() as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = take_lock(own_project, lock_dir)
    assert result.returncode == 1
    assert "is running ([31mdeploy by root, call +1-555-0100[0m)" in result.stderr
    assert not any(ord(c) < 32 and c != "\n" for c in result.stderr)


# --- M4: no secret in any process's arguments -----------------------------------------------------------------------

ARGV_LOGGER = 'printf "%s\\n" "$0 $*" >> "$ARGV_LOG"\n'


def test_wait_for_postgres_passes_no_password(own_project, tmp_path):
    """pg_isready gets the URL without its password (it does not log in anyway)."""
    log = tmp_path / "argv.log"
    bin_dir = fake_bin(tmp_path / "bin", "pg_isready", ARGV_LOGGER)
    url = "postgres://app:s3cr%40t-pw@db.example:5433/appdb"
    run(["sh", own_project / "script/docker/wait_for_postgres"], timeout=30,
        env={"PATH": f"{bin_dir}:{os.environ['PATH']}", "ARGV_LOG": str(log), "DATABASE_URL": url})
    argv = log.read_text()
    assert "s3cr" not in argv
    assert "--dbname=postgres://app@db.example:5433/appdb" in argv


def test_hasura_healthcheck_sends_the_admin_secret_through_stdin(own_project, tmp_path):
    """The reload_metadata call gets X-Hasura-Admin-Secret from stdin (curl -H @-), not from its arguments."""
    log, stdin_log, state = tmp_path / "argv.log", tmp_path / "stdin.log", tmp_path / "reloaded"
    curl = ARGV_LOGGER + f"""case "$*" in
  *strict=true*) [ -e {state} ] && exit 0; exit 22 ;;
  *healthz*) echo "WARN: inconsistent objects in schema" ;;
  *v1/metadata*) cat >> {stdin_log}; touch {state} ;;
esac
"""
    bin_dir = fake_bin(tmp_path / "bin", "curl", curl)
    secret = tmp_path / "admin_secret"
    secret.write_text("adm1n-s3cret\n")
    result = run(["sh", own_project / "script/docker/hasura_healthcheck"], check=False, timeout=30,
                 env={"PATH": f"{bin_dir}:{os.environ['PATH']}", "ARGV_LOG": str(log),
                      "HASURA_GRAPHQL_ADMIN_SECRET_FILE": str(secret)})
    assert result.returncode == 0, result.stderr
    assert "adm1n-s3cret" not in log.read_text()
    assert stdin_log.read_text() == "X-Hasura-Admin-Secret: adm1n-s3cret\n"


DEV_DOCKER = ARGV_LOGGER + """case "$*" in
  info*|"compose version") exit 0 ;;
  "stack ls"*|"volume ls"*) exit 0 ;;
  *" run "*) printf '%s\\n' "$DATABASE_URL" > "$ENV_LOG" ;;
  *"exec -T hasura curl"*) [ -e "$STATE" ] || exit 7 ;;
  *"exec -d hasura"*) touch "$STATE" ;;
esac
"""


def dev_env(project, tmp_path):
    env = {**os.environ, **fake_docker(tmp_path, DEV_DOCKER), "ARGV_LOG": str(tmp_path / "argv.log"),
           "ENV_LOG": str(tmp_path / "env.log"), "STATE": str(tmp_path / "console")}
    for name in ("POSTGRES_PASSWORD", "HASURA_GRAPHQL_ADMIN_SECRET", "COMPOSE_PROJECT_NAME"):
        env.pop(name, None)
    return env


def dev_secret(project, name):
    return dict(line.split("=", 1) for line in (project / ".env").read_text().splitlines() if "=" in line)[name]


def test_script_test_passes_database_url_by_name(own_project, tmp_path):
    """script/test hands DATABASE_URL to compose by name (-e DATABASE_URL): the password is in no argument, and the
    variable compose reads carries it."""
    env = dev_env(own_project, tmp_path)
    run([own_project / "script/test"], env=env, cwd=own_project, timeout=60)
    password = dev_secret(own_project, "POSTGRES_PASSWORD")
    argv = (tmp_path / "argv.log").read_text()
    assert password not in argv and " -e DATABASE_URL " in argv
    user, database = dev_secret(own_project, "POSTGRES_USER"), dev_secret(own_project, "POSTGRES_DB")
    assert (tmp_path / "env.log").read_text() == f"postgres://{user}:{password}@postgres:5432/{database}_test\n"


def test_dev_console_gets_the_admin_secret_from_its_environment(own_project, tmp_path):
    """hasura-cli console is started without --admin-secret (it reads HASURA_GRAPHQL_ADMIN_SECRET itself)."""
    env = dev_env(own_project, tmp_path)
    body = ("source script/functions/dev\nload_dev_env\nstart_hasura_console\n")
    run(["bash", "-c", f"set -euo pipefail\nsource script/functions/common\n{body}"], env=env, cwd=own_project,
        timeout=60)
    argv = (tmp_path / "argv.log").read_text()
    assert "hasura-cli console" in argv
    assert dev_secret(own_project, "HASURA_GRAPHQL_ADMIN_SECRET") not in argv and "--admin-secret" not in argv


# --- M6: bootstrap never overwrites a secret --------------------------------------------------------------------------

NO_STACK = """case "$1 $2" in
  "info "*) exit 0 ;;
  "stack ls"|"volume ls") exit 0 ;;
esac
echo "unexpected docker $*" >&2; exit 99
"""

DB_VOLUME = NO_STACK.replace('"stack ls"|"volume ls") exit 0 ;;',
                             '"stack ls") exit 0 ;;\n  "volume ls") echo lhd_app_db_data; exit 0 ;;')


def bootstrap(project, tmp_path, *args, docker=NO_STACK):
    env = {**os.environ, **fake_docker(tmp_path, docker), "LHD_ENV_FILE": str(tmp_path / "prod.env"),
           "LHD_SECRETS_DIR": str(tmp_path / "secrets")}
    return run([project / "script/bootstrap", *args], env=env, check=False, stdin=subprocess.DEVNULL, timeout=60)


def files(directory):
    return {p.name: p.read_bytes() for p in directory.iterdir()}


def test_bootstrap_without_env_file_keeps_every_secret_file(own_project, tmp_path):
    """A lost env file costs no secret: each existing file is kept as it is; the new env file names them."""
    assert bootstrap(own_project, tmp_path).returncode == 0
    before = files(tmp_path / "secrets")
    (tmp_path / "prod.env").unlink()
    (tmp_path / "secrets/hasura_jwt_key").unlink()  # one missing: only it is written
    result = bootstrap(own_project, tmp_path)
    assert result.returncode == 0, result.stderr
    after = files(tmp_path / "secrets")
    assert {k: v for k, v in after.items() if k != "hasura_jwt_key"} == {k: v for k, v in before.items()
                                                                       if k != "hasura_jwt_key"}
    assert after["hasura_jwt_key"] != before["hasura_jwt_key"]
    assert f"POSTGRES_PASSWORD_FILE={tmp_path}/secrets/postgres_password" in (tmp_path / "prod.env").read_text()
    assert "Traefik dashboard login" not in result.stdout  # the dashboard password was kept, not made


def test_bootstrap_force_keeps_dated_copies(own_project, tmp_path):
    """--force (no stack, no database volume) writes new secrets and keeps each old file as NAME.bak-STAMP, 0600."""
    bootstrap(own_project, tmp_path)
    before = files(tmp_path / "secrets")
    result = bootstrap(own_project, tmp_path, "--force")
    assert result.returncode == 0, result.stderr
    after = files(tmp_path / "secrets")
    backups = {name.split(".bak-")[0]: value for name, value in after.items() if ".bak-" in name}
    assert backups == {k: v for k, v in before.items() if k in SECRET_FILES}
    assert all(after[name] != before[name] for name in SECRET_FILES - {"send_grid_key"})
    assert after[".version_key"] == before[".version_key"]
    assert all(len(name.split(".bak-")[1]) == 15 for name in after if ".bak-" in name)
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in (tmp_path / "secrets").iterdir()} == {"0o600"}


def test_bootstrap_force_refuses_while_the_database_exists(own_project, tmp_path):
    """--force with the stack's db_data volume on the engine changes nothing, in one line saying how to rotate."""
    bootstrap(own_project, tmp_path)
    before, env_before = files(tmp_path / "secrets"), (tmp_path / "prod.env").read_text()
    result = bootstrap(own_project, tmp_path, "--force", docker=DB_VOLUME)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "refusing --force: the stack lhd_app or its volume lhd_app_db_data exists" in result.stderr
    assert "ALTER ROLE" in result.stderr
    assert files(tmp_path / "secrets") == before and (tmp_path / "prod.env").read_text() == env_before


def test_bootstrap_refuses_a_domain_it_would_ignore(own_project, tmp_path):
    """--domain with a kept env file that routes another domain (a staging server bootstrapped before) would be
    ignored, so it is refused in one line and nothing is written; the same domain again is fine."""
    assert bootstrap(own_project, tmp_path, "--domain", "staging.example.com").returncode == 0
    before, env_before = files(tmp_path / "secrets"), (tmp_path / "prod.env").read_text()
    assert "APP_DOMAIN=staging.example.com" in env_before
    (tmp_path / "secrets" / "postgres_password").unlink()  # a missing secret bootstrap would otherwise write
    del before["postgres_password"]
    result = bootstrap(own_project, tmp_path, "--domain", "shop.example.org")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"✖ --domain shop.example.org would be ignored: {tmp_path / 'prod.env'} is kept and routes "
        "APP_DOMAIN=staging.example.com; set APP_DOMAIN there (then script/deploy); nothing was written"]
    assert files(tmp_path / "secrets") == before and (tmp_path / "prod.env").read_text() == env_before
    again = bootstrap(own_project, tmp_path, "--domain", "staging.example.com")
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "secrets" / "postgres_password").exists()


def test_bootstrap_force_refuses_when_the_engine_cannot_answer(own_project, tmp_path):
    """--force with a docker that cannot reach its engine (stopped, or no permission) cannot know whether the
    database exists, so it changes nothing and says so in one line."""
    bootstrap(own_project, tmp_path)
    before, env_before = files(tmp_path / "secrets"), (tmp_path / "prod.env").read_text()
    result = bootstrap(own_project, tmp_path, "--force", docker="echo 'Cannot connect to the Docker daemon' >&2; exit 1\n")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "✖ cannot ask Docker whether the stack lhd_app exists (is the engine running?); nothing was written"]
    assert files(tmp_path / "secrets") == before and (tmp_path / "prod.env").read_text() == env_before


def test_bootstrap_leaves_no_temporary_file_when_it_fails(own_project, tmp_path):
    """A bootstrap that stops half-way (here: no tool can hash the dashboard password) leaves no temporary file."""
    bin_dir = tmp_path / "tools"
    for tool in ("openssl", "htpasswd"):
        fake_bin(bin_dir, tool, "exit 3\n")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "LHD_ENV_FILE": str(tmp_path / "prod.env"),
           "LHD_SECRETS_DIR": str(tmp_path / "secrets")}
    result = run([own_project / "script/bootstrap"], env=env, check=False, stdin=subprocess.DEVNULL, timeout=60)
    assert result.returncode != 0
    left = sorted(p.name for p in (tmp_path / "secrets").iterdir())
    assert not [name for name in left if name.startswith("dashboard_users")], left
    assert not (tmp_path / "prod.env").exists()


# --- L1: no secret copies left behind ---------------------------------------------------------------------------------

@pytest.mark.parametrize("signal_name", ["TERM", "INT", "HUP"])
def test_run_lucky_task_removes_its_secret_copies_when_killed(own_project, tmp_path, signal_name):
    """A migration interrupted mid-run (the process group signalled, as by Ctrl-C or a cancelled CI job) leaves no
    copy of the secrets behind."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    # `docker image inspect` (is there a registry digest for the image?) answers "no such image"; `docker run` runs until
    # the signal kills it. Its traps are set before it logs, so a signal sent once the log is there always ends it (a
    # `sleep` in the foreground could be forked while sh had caught the signal and then run its 30 s: seen under load),
    # and each passes the signal on to itself, so the script sees docker killed by it.
    hang = ('[ "$1" = run ] || exit 1\n'
            'for sig in INT TERM HUP; do trap "kill \\$! 2>/dev/null; trap - $sig; kill -$sig \\$\\$" "$sig"; done\n'
            'printf "%s\\n" "$*" > "$ARGV_LOG"\nsleep 30 </dev/null >/dev/null 2>&1 & wait $!\n')
    env = {**os.environ, **fake_docker(tmp_path, hang),
           "ARGV_LOG": str(tmp_path / "argv.log"), "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    for name in ("POSTGRES_PASSWORD", "POSTGRES_APP_PASSWORD", "SECRET_KEY_BASE", "SEND_GRID_KEY"):
        (secrets / name.lower()).write_text(f"{name}-value\n")
        env[f"{name}_FILE"] = str(secrets / name.lower())
    task = functions(own_project, "run_lucky_task aaaa1111 update_db")
    driver = (f"set -m\nbash -c {subprocess.list2cmdline([task])} & pid=$!\n"
              f"for _ in $(seq 100); do [ -s {tmp_path}/argv.log ] && break; sleep 0.1; done\n"
              f"kill -{signal_name} -- -$pid\nwait $pid || true\n")
    # A terminal's Ctrl-C reaches a shell whose SIGINT is at its default: the driver starts from the default
    # dispositions whatever the suite inherited (a background job's SIGINT ignored, nohup's SIGHUP).
    run(["bash", "-c", driver], env=env, timeout=30, preexec_fn=default_signals)
    argv = (tmp_path / "argv.log").read_text()
    assert f"{tmp_path}/tmp/" in argv  # the copies were made there
    assert list((tmp_path / "tmp").iterdir()) == []


# --- L2: secret names carry a keyed hash --------------------------------------------------------------------------------

def test_secret_versions_are_keyed_hashes(own_project, tmp_path):
    """A secret's version is HMAC-SHA256 under the server's .version_key (12 hex digits), not a plain hash of it."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "postgres_password").write_text("password1\n")
    versions = {}
    for key in ("11" * 32, "22" * 32):
        (secrets / ".version_key").write_text(key + "\n")
        result = run(["bash", "-c", functions(own_project, f"content_hash_of_files <<<{secrets}/postgres_password")],
                     env={**os.environ, "LHD_SECRETS_DIR": str(secrets)}, timeout=30)
        versions[key] = result.stdout.strip()
        assert versions[key] == hmac.new(bytes.fromhex(key), b"password1\n", hashlib.sha256).hexdigest()[:12]
    assert len(set(versions.values())) == 2
    assert hashlib.sha256(b"password1\n").hexdigest()[:12] not in versions.values()


def test_bootstrap_makes_the_version_key_once(own_project, tmp_path):
    """bootstrap writes .version_key (64 hex digits, 0600) when missing and keeps it afterwards."""
    bootstrap(own_project, tmp_path)
    key_file = tmp_path / "secrets/.version_key"
    key = key_file.read_text()
    assert len(key.strip()) == 64 and int(key, 16) and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    bootstrap(own_project, tmp_path)
    assert key_file.read_text() == key


def test_deploy_without_version_key_names_it(own_project, tmp_path):
    bootstrap(own_project, tmp_path)
    (tmp_path / "secrets/.version_key").unlink()
    env = {**os.environ, "LHD_ENV_FILE": str(tmp_path / "prod.env"), "LHD_SECRETS_DIR": str(tmp_path / "secrets")}
    result = run([own_project / "script/deploy", "--config", "aaaa1111"], env=env, check=False, timeout=60)
    assert result.returncode == 1
    assert f"{tmp_path}/secrets/.version_key is missing: run script/bootstrap once on this server" in result.stderr


# --- L7: nothing secret shows up in git ---------------------------------------------------------------------------------

def test_git_ignores_env_files_dumps_and_the_lock(own_project):
    """With real git: env files of any name, bootstrap's temporary files, dumps, partial dumps and the deploy lock
    are ignored; .env.example is not."""
    run(["git", "init", "-q"], cwd=own_project)
    left = [".env.production.Ab12Cd", ".env.staging", ".env.local", "prod.dump", "db/old.dump",
            ".lhd_app-20261201T000000Z-x.dump.partial", ".deploy/lock", ".deploy/holder",
            "etc/secrets/.version_key", "etc/secrets/postgres_password.bak-20261202T101010"]
    for name in left:
        (own_project / name).parent.mkdir(parents=True, exist_ok=True)
        (own_project / name).write_text("secret\n")
    status = run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=own_project).stdout
    assert not [name for name in left if name in status], status
    assert ".env.example" in status


# --- L4 / M9: plain HTTP on a real domain is warned about; overlay encryption is a checked switch -------------------

CONFIG_DOCKER = 'printf "%s\\n" "$*" >> "$ARGV_LOG"\n'


@pytest.mark.parametrize(("domain", "warned"), [("example.com", True), ("localhost", False)])
def test_plain_http_on_a_real_domain_is_warned_about(own_project, tmp_path, domain, warned):
    """HTTPS_SWITCH=off warns that logins and JWTs go in clear text, unless the domain is a local one."""
    bootstrap(own_project, tmp_path)
    env = {**os.environ, **fake_docker(tmp_path, CONFIG_DOCKER), "ARGV_LOG": str(tmp_path / "argv.log"),
           "LHD_ENV_FILE": str(tmp_path / "prod.env"), "LHD_SECRETS_DIR": str(tmp_path / "secrets"),
           "HTTPS_SWITCH": "off", "APP_DOMAIN": domain}
    result = run([own_project / "script/deploy", "--config", "aaaa1111"], env=env, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    assert ("the dashboard logins and every JWT go over plain HTTP" in result.stderr) == warned


@pytest.mark.parametrize(("setting", "included"), [(None, True), ("on", True), ("off", False)])
def test_overlay_encryption_switch(own_project, tmp_path, setting, included):
    """The overlays are encrypted (the stack files) unless OVERLAY_ENCRYPTION=off adds the unencrypted
    definitions (on by default)."""
    bootstrap(own_project, tmp_path)
    env = {**os.environ, **fake_docker(tmp_path, CONFIG_DOCKER), "ARGV_LOG": str(tmp_path / "argv.log"),
           "LHD_ENV_FILE": str(tmp_path / "prod.env"), "LHD_SECRETS_DIR": str(tmp_path / "secrets")}
    env.pop("OVERLAY_ENCRYPTION", None)
    if setting is None:
        text = (tmp_path / "prod.env").read_text().replace("OVERLAY_ENCRYPTION=on\n", "")
        (tmp_path / "prod.env").write_text(text)  # an env file written before the switch existed
    else:
        env["OVERLAY_ENCRYPTION"] = setting
    run([own_project / "script/deploy", "--config", "aaaa1111"], env=env, timeout=60)
    assert ("docker-compose.unencrypted.yml" in (tmp_path / "argv.log").read_text()) != included


def test_a_bad_overlay_encryption_is_refused(own_project, tmp_path):
    bootstrap(own_project, tmp_path)
    env = {**os.environ, "LHD_ENV_FILE": str(tmp_path / "prod.env"), "LHD_SECRETS_DIR": str(tmp_path / "secrets"),
           "OVERLAY_ENCRYPTION": "yes"}
    result = run([own_project / "script/deploy", "--config", "aaaa1111"], env=env, check=False, timeout=60)
    assert result.returncode == 1 and "OVERLAY_ENCRYPTION must be 'on' or 'off', not 'yes'" in result.stderr
