"""Data-safety parts of the generated scripts that need no Docker engine: the question before a destructive
step (asked on a terminal), the deploy lock, the dev stack's name and its refusal of a stack's name, and the
backup script's naming and retention (pg_dump is a test double here; the swarm tier runs the real one)."""

import fcntl
import os
import pty
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.harness.docker import fake_docker
from tests.harness.proc import run

pytestmark = pytest.mark.render

USAGE = [
    (["backup", "extra"], "usage: script/backup [--list]"),
    (["restore"], "usage: script/restore [--yes] DUMP"),
    (["restore", "--bogus", "x.dump"], "usage: script/restore [--yes] DUMP"),
    (["restore", "a.dump", "b.dump"], "usage: script/restore [--yes] DUMP"),
]


@pytest.fixture
def project(default_project, tmp_path):
    """A private copy of the default project (these tests write .env and fake tools into it)."""
    return Path(shutil.copytree(default_project, tmp_path / "project"))


@pytest.mark.parametrize(("args", "words"), USAGE, ids=[" ".join(a) for a, _ in USAGE])
def test_backup_and_restore_usage(default_project, args, words):
    """A wrong call to script/backup or script/restore prints its usage and exits 2."""
    result = run([default_project / "script" / args[0], *args[1:]], check=False, timeout=60)
    assert result.returncode == 2 and words in result.stderr


@pytest.mark.parametrize("script", ["deploy", "rollback", "restore"])
def test_destructive_scripts_offer_yes(default_project, script):
    """deploy, rollback and restore take --yes (their usage says so)."""
    assert "[--yes]" in run([default_project / "script" / script, "--help"], timeout=60).stdout


@pytest.mark.parametrize(("answer", "code", "said"), [("yes", 0, "went on"), ("no", 1, "stopped at your answer")],
                         ids=["yes-goes-on", "no-stops"])
def test_confirm_asks_on_a_terminal(default_project, answer, code, said):
    """On a terminal, confirm asks and goes on only when the answer is `yes`."""
    script = f"source '{default_project}/script/functions/common'; confirm 'Drop the tags table?'; echo went on"
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp("bash", ["bash", "-c", script])
    output = b""
    while b"Type yes to go on:" not in output:
        output += os.read(fd, 1024)
    os.write(fd, f"{answer}\n".encode())
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == code
    assert b"? Drop the tags table? Type yes to go on:" in output and said.encode() in output


def test_confirm_without_terminal_needs_yes(default_project):
    """Without a terminal, confirm refuses unless ASSUME_YES (--yes) is set."""
    script = f"source '{default_project}/script/functions/common'; confirm 'Drop it?'; echo went on"
    refused = run(["bash", "-c", script], check=False, stdin=subprocess.DEVNULL)
    assert refused.returncode == 1
    assert "Drop it?: refusing to go on without --yes (there is no terminal to ask)" in refused.stderr
    assert run(["bash", "-c", script], env={**os.environ, "ASSUME_YES": "true"}, stdin=subprocess.DEVNULL).stdout == "went on\n"


def test_second_deploy_is_refused_while_the_lock_is_held(project, tmp_path):
    """A deploy finding the lock held stops before any Docker command, naming the holder."""
    env_file = tmp_path / "prod.env"
    run([project / "script/bootstrap"], env={**os.environ, "LHD_ENV_FILE": str(env_file)})
    lock_dir = tmp_path / "deploy"
    lock_dir.mkdir(mode=0o770)
    lock = lock_dir / "lock"
    lock.touch(mode=0o660)
    (lock_dir / "holder").write_text("script/deploy additive aaaa1111, by ci, pid 42, since 2026-11-26T10:00:00Z\n")
    env = {**os.environ, **fake_docker(tmp_path, "echo \"docker must not run: $*\" >&2; exit 99\n"),
           "LHD_ENV_FILE": str(env_file), "DEPLOY_LOCK_DIR": str(lock_dir)}
    with lock.open() as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = run([project / "script/deploy", "bbbb2222"], env=env, check=False, stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    assert ("another deploy, rollback or restore of lhd_app is running (script/deploy additive aaaa1111, by ci, "
            "pid 42, since 2026-11-26T10:00:00Z): wait until it ends, then try again") in result.stderr
    assert "docker must not run" not in result.stderr


STACK_ENGINE = """
case "$1 $2" in
  "info "*|"compose version") exit 0 ;;
  "stack ls") echo lhd_app ;;
  "volume ls") ;;
  *) echo "docker $*" >> "$FAKE_LOG" ;;
esac
"""


@pytest.mark.parametrize(("name", "refused"), [("lhd_app", True), ("lhd_app_dev", False)], ids=["stack-name", "dev-name"])
def test_down_refuses_a_stack_name(project, tmp_path, name, refused):
    """script/down removes nothing under a name a swarm stack has on the engine, and proceeds under another."""
    log = tmp_path / "docker.log"
    env = {**os.environ, **fake_docker(tmp_path, STACK_ENGINE), "FAKE_LOG": str(log), "COMPOSE_PROJECT_NAME": name}
    result = run([project / "script/down"], env=env, check=False, stdin=subprocess.DEVNULL)
    calls = log.read_text() if log.exists() else ""
    if refused:
        assert result.returncode == 1
        assert f"COMPOSE_PROJECT_NAME={name} is the name of a swarm stack on this engine" in result.stderr
        assert "down" not in calls
    else:
        assert result.returncode == 0, result.stderr
        assert "down --volumes" in calls


FAKE_PG_DUMP = """#!/bin/sh
# Test double of pg_dump: writes its --file argument.
for arg in "$@"; do case "$arg" in --file=*) echo "dump of $PGDATABASE" > "${arg#--file=}" ;; esac; done
"""


def test_pg_backup_names_dumps_and_keeps_the_newest(project, tmp_path):
    """pg_backup now names each dump DATABASE-TIMESTAMP-REASON.dump (a suffix within one second) and keeps the
    newest BACKUP_KEEP; list shows them newest first."""
    store = tmp_path / "backups"
    store.mkdir()
    bin_dir = tmp_path / "pgbin"
    bin_dir.mkdir()
    (bin_dir / "pg_dump").write_text(FAKE_PG_DUMP)
    (bin_dir / "pg_dump").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "BACKUP_ROOT": str(store),
           "PGDATABASE": "lhd_app_production", "PGHOST": "postgres", "BACKUP_KEEP": "2"}
    backup = project / "Docker/backup/pg_backup"
    names = [run([backup, "now", reason], env=env).stdout.strip() for reason in ("manual", "manual", "before-rollback")]
    assert re.fullmatch(r"lhd_app_production-\d{8}T\d{6}Z-manual\.dump", names[0])
    assert len(set(names)) == 3
    kept = sorted(p.name for p in store.glob("*.dump"))
    assert len(kept) == 2 and names[2] in kept and not list(store.glob(".*.partial"))
    listing = run([backup, "list"], env=env).stdout
    assert "last scheduled backup: none yet" in listing
    bad = run([backup, "now", "Bad Reason"], env=env, check=False)
    assert bad.returncode == 1 and "the reason 'Bad Reason' must be lowercase letters, digits and -" in bad.stderr


@pytest.mark.parametrize(("command", "setting", "message"), [
    ("now", {"BACKUP_KEEP": "0"}, "BACKUP_KEEP must be a whole number of dumps above 0, not '0'"),
    ("schedule", {"BACKUP_INTERVAL": "daily"}, "BACKUP_INTERVAL must be a whole number of seconds above 0, not 'daily'"),
], ids=["keep-0", "interval-word"])
def test_pg_backup_refuses_bad_settings(project, tmp_path, command, setting, message):
    """A BACKUP_KEEP or BACKUP_INTERVAL that is not a whole number above 0 is refused in one line, before pg_dump
    runs, and nothing is written."""
    store = tmp_path / "backups"
    store.mkdir()
    env = {**os.environ, "BACKUP_ROOT": str(store), "PGDATABASE": "d", **setting}
    result = run([project / "Docker/backup/pg_backup", command], env=env, check=False, timeout=30)
    assert result.returncode == 1 and message in result.stderr
    assert list(store.iterdir()) == []
