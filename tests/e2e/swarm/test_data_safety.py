"""Production data safety on the local swarm, through the project's own scripts: backups and restores,
destructive steps that back up and ask first, stateful services held to their node label, one deploy
at a time with read errors retried, and a development stack that cannot take production's names.

The real PostgreSQL dumps and restores; the real Lucky image migrates and rolls back.
"""

import os
import re
import shutil
import subprocess
from datetime import UTC, datetime

import pytest

from harness import reaper
from harness.docker import docker
from harness.names import DEFAULT as NAMES
from harness.proc import DEVNULL, PIPE, popen, run
from harness.swarm import BACKUP_INTERVAL, NOTES, SHA1, SHA2, V1, V2, V3
from harness.wait import until

NO_TERMINAL = "refusing to go on without --yes (there is no terminal to ask)"
DUMP_NAME = re.compile(rf"{NAMES.database}-\d{{8}}T\d{{6}}Z-[a-z0-9-]+\.dump")


def titles(deployment):
    return deployment.sql("SELECT title FROM notes ORDER BY title").split()


@pytest.fixture
def rows(live):
    """Three notes written for the test; every note is deleted afterwards."""
    written = ["backup-a", "backup-b", "backup-c"]
    live.sql("INSERT INTO notes (title, body, published) VALUES " + ", ".join(f"('{t}', 'x', true)" for t in written))
    yield written
    until(lambda: live.sql("DELETE FROM notes") is not None, 120, "postgres to delete the test's notes")


def test_backup_then_restore_brings_the_rows_back(live, rows):
    """script/backup, rows destroyed, script/restore --yes DUMP: the rows are equal to what was backed up."""
    backup = live.script("backup")
    dump = DUMP_NAME.search(backup.stdout).group(0)
    assert dump.endswith("-manual.dump") and "✔ All done." in backup.stdout
    assert dump in live.backups()[0]
    live.sql("DELETE FROM notes")
    assert titles(live) == []

    restore = live.script("restore", "--yes", dump)
    assert "✔ All done." in restore.stdout
    safety = re.search(r"Backed up the current database first: (\S+)", restore.stdout).group(1)
    assert safety.endswith("-before-restore.dump") and safety in live.backups()[0]
    assert titles(live) == rows
    assert live.migrations() == [V1]
    data = until(lambda: live.graphql(user=True).execute(NOTES), 90, "hasura to answer after the restore")
    assert sorted(n["title"] for n in data["notes"]) == rows


def test_restore_refuses_a_file_that_is_not_a_dump(live, rows, tmp_path):
    """A file pg_restore cannot read is refused before anything is backed up or changed."""
    junk = tmp_path / "notes.dump"
    junk.write_text("SELECT 1;\n")
    before = live.backups()[0]
    result = live.script("restore", "--yes", junk, check=False)
    assert result.returncode == 1
    assert "is not a PostgreSQL custom-format dump" in result.stderr
    assert f"refusing to restore {junk}: nothing was changed" in result.stderr
    assert titles(live) == rows
    assert [d for d in live.backups()[0] if d not in before and "scheduled" not in d] == []


def in_store(deployment, *command):
    """A one-off postgres container with the stack's backups volume at /backups runs command (sh -c's words)."""
    return docker("run", "--rm", *reaper.label_args(), "-v", f"{deployment.swarm_name}_backups:/backups", "--entrypoint", "sh",
                  f"postgres:{deployment.postgres_version()}", "-c", *command).stdout


def test_restore_refuses_a_dump_cut_short_and_changes_nothing(live, rows, tmp_path):
    """H1: a real dump missing its last byte (its table of contents intact) is refused, in one line naming
    pg_restore's error, before the safety backup: no dump is taken and the rows are as they were."""
    dump = DUMP_NAME.search(live.script("backup").stdout).group(0)
    cut = tmp_path / "cut" / "cut.dump"
    cut.parent.mkdir()
    docker("run", "--rm", *reaper.label_args(), "-v", f"{live.swarm_name}_backups:/backups:ro", "-v", f"{cut.parent}:/out",
           "--entrypoint", "sh", f"postgres:{live.postgres_version()}", "-c",
           'head -c "$(($(stat -c %s "/backups/$0") - 1))" "/backups/$0" > /out/cut.dump', dump)
    live.sql("DELETE FROM notes WHERE title = 'backup-a'")
    before = live.backups()[0]
    result = live.script("restore", "--yes", cut, check=False)
    assert result.returncode == 1
    assert ("is damaged or cut short: pg_restore cannot read it to its end (pg_restore: error: could not read from "
            "input file: end of file); nothing was changed") in result.stderr
    assert f"refusing to restore {cut}: nothing was changed" in result.stderr
    assert titles(live) == rows[1:]
    assert [d for d in live.backups()[0] if d not in before and "scheduled" not in d] == []


def test_restoring_the_oldest_scheduled_dump_keeps_it(live, rows):
    """H3: with BACKUP_KEEP equal to the number of scheduled dumps, restoring the oldest of them succeeds (its
    safety backup deletes nothing) and the dump is still there afterwards, with no pin left behind."""
    started = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")

    def two_new_scheduled():
        fresh = [d for d in live.backups()[0] if d.endswith("-scheduled.dump") and d.split("-")[-2] > started]
        return len(fresh) >= 2 and fresh
    fresh = until(two_new_scheduled, 2 * BACKUP_INTERVAL + 90, "two scheduled dumps taken during the test", pause=3)
    # Only these two scheduled dumps stay (the service prunes by count only beyond its own BACKUP_KEEP, 14).
    older = [d for d in live.backups()[0] if "-scheduled" in d and d not in fresh]
    if older:
        in_store(live, 'cd /backups && rm -f -- "$@"', "sh", *older)
    scheduled = [d for d in live.backups()[0] if "-scheduled" in d]
    oldest = scheduled[-1]
    live.sql("DELETE FROM notes")

    restore = live.script("restore", "--yes", oldest, env={"BACKUP_KEEP": str(len(scheduled))})
    assert "✔ All done." in restore.stdout
    assert titles(live) == rows
    assert oldest in live.backups()[0]
    assert ".restoring-" not in in_store(live, "ls -a /backups")

    """With no terminal to ask and no --yes, script/restore stops after its safety backup."""
    dump = DUMP_NAME.search(live.script("backup").stdout).group(0)
    live.sql("DELETE FROM notes WHERE title = 'backup-a'")
    result = live.script("restore", dump, check=False)
    assert result.returncode == 1
    assert NO_TERMINAL in result.stderr
    assert titles(live) == rows[1:]


def test_scheduled_backup_appears_within_its_interval(live):
    """The stack's backup service writes a `-scheduled` dump every BACKUP_INTERVAL seconds; --list shows the last."""
    started = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")

    def newer_scheduled():
        dumps, last = live.backups()
        fresh = [d for d in dumps if d.endswith("-scheduled.dump") and d.split("-")[-2] >= started]
        return fresh and (fresh, last)
    fresh, last = until(newer_scheduled, BACKUP_INTERVAL + 60, "a scheduled dump newer than the test's start", pause=3)
    assert last.startswith("last scheduled backup: ") and last.split()[-1] in fresh


def test_rollback_backs_up_lists_undone_migrations_and_its_dump_restores_the_rows(at):
    """script/rollback --yes from SHA2 names the migrations it undoes and its dump; restoring that dump brings
    the dropped table's rows back (then SHA2 is deployed again, so the stack is consistent)."""
    deployment = at(SHA2)
    deployment.sql("INSERT INTO tags (name) VALUES ('kept-by-the-dump')")
    result = deployment.rollback(SHA1, "--yes")
    said = result.stdout + result.stderr
    assert "20250301000000 create_tags" in said and "20250201000000 add_priority_to_notes" in said
    assert said.index("20250301000000") < said.index("20250201000000")  # newest undone first
    dump = re.search(r"Backed up the database first: (\S+)", result.stdout).group(1)
    assert dump.endswith("-before-rollback.dump")
    assert deployment.migrations() == [V1]
    assert deployment.sql("SELECT to_regclass('public.tags') IS NULL") == "t"
    assert "kept-by-the-dump" in deployment.dump_sql(dump, "tags")

    restored = deployment.script("restore", "--yes", dump)
    assert "expects" in restored.stderr  # the dump is at V3, SHA1 knows V1: the script says so
    assert deployment.sql("SELECT name FROM tags") == "kept-by-the-dump"
    assert deployment.migrations() == [V1, V2, V3]
    deployment.deploy(SHA2)
    assert deployment.version() == SHA2


def test_rollback_without_yes_and_without_a_terminal_changes_nothing(at):
    """Undoing migrations with nobody to ask and no --yes stops before any change."""
    deployment = at(SHA2)
    result = deployment.rollback(SHA1, "-a", check=False)
    assert result.returncode == 1
    assert NO_TERMINAL in result.stderr
    assert deployment.images() == {"lucky": SHA2, "hasura": SHA2}
    assert deployment.migrations() == [V1, V2, V3]


def test_subtractive_deploy_lists_its_migrations_and_asks(at):
    """script/deploy -s names the migrations it will run after the code update and, unanswered, changes nothing."""
    deployment = at(SHA1)
    result = deployment.deploy(SHA2, "-s", check=False)
    assert result.returncode == 1
    assert "20250201000000 add_priority_to_notes" in result.stderr and NO_TERMINAL in result.stderr
    assert "-before-deploy.dump" in result.stdout
    assert deployment.images() == {"lucky": SHA1, "hasura": SHA1}
    assert deployment.migrations() == [V1]


@pytest.mark.parametrize("service, role", [("postgres", "db"), ("backup", "db"), ("traefik", "edge")])
def test_stateful_service_is_placed_by_its_node_label(live, service, role):
    """The deployed spec of each service with a volume carries its node-label constraint."""
    constraints = docker("service", "inspect", NAMES.service(service), "--format",
                         "{{json .Spec.TaskTemplate.Placement.Constraints}}").stdout
    assert f'"node.labels.{NAMES.swarm}.{role} == true"' in constraints


def test_database_without_its_label_stays_pending_then_returns_with_its_rows(live, surviving_note):
    """With the db label gone, postgres is stopped and waits, pending, for a node with the label; with the
    label back it starts on its volume, rows intact."""
    before = live.container("postgres")
    live.label("db", present=False)
    try:
        def pending():
            states = docker("service", "ps", NAMES.service("postgres"), "--filter", "desired-state=running",
                            "--format", "{{.CurrentState}} {{.Error}}", "--no-trunc").stdout
            return "Pending" in states and "no suitable node" in states and live.container("postgres") is None and states
        until(pending, 120, "postgres to stop and stay pending without its node label", pause=2)
    finally:
        live.label("db")
    until(lambda: live.container("postgres") not in (None, before) and
          live.sql(f"SELECT count(*) FROM notes WHERE title = '{surviving_note}'") == "1",
          120, "postgres to come back on its volume with the row")


def test_deploy_refuses_while_no_node_carries_a_label(live):
    """script/deploy stops with one clear line while the db label is on no node, before changing anything."""
    live.label("db", present=False)
    try:
        result = live.deploy(SHA1, check=False)
    finally:
        live.label("db")
    assert result.returncode == 1
    assert f"no swarm node carries the label {NAMES.swarm}.db=true" in result.stderr


@pytest.fixture
def flaky_docker(tmp_path):
    """A `docker` first on PATH whose 2nd and 3rd `docker service inspect` fail as a transient daemon
    error would, then pass everything to the real docker."""
    real = shutil.which("docker")
    fake = tmp_path / "bin" / "docker"
    fake.parent.mkdir()
    fake.write_text(f"""#!/bin/sh
# Test double: two transient failures of `docker service inspect`, then the real {real}.
if [ "$1 $2" = "service inspect" ]; then
  n=$(( $(cat "{tmp_path}/count" 2>/dev/null || echo 0) + 1 ))
  echo "$n" > "{tmp_path}/count"
  if [ "$n" -ge 2 ] && [ "$n" -le 3 ]; then
    echo "error during connect: injected transient failure $n" >&2
    exit 1
  fi
fi
exec {real} "$@"
""")
    fake.chmod(0o755)
    return {"PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}"}


def test_one_deploy_at_a_time_and_read_errors_are_retried(at, flaky_docker):
    """While a deploy runs, a second one is refused naming the first; the first, whose Docker reads fail twice
    while it waits for the services, retries them and succeeds: no rollback is reported."""
    deployment = at(SHA1)
    deployment.release(SHA2)
    with popen([deployment.project / "script/deploy", SHA2], cwd=deployment.project, text=True,
               env=deployment.env(**flaky_docker), stdin=DEVNULL, stdout=PIPE, stderr=PIPE) as first:
        until(lambda: "script/deploy additive bbbb2222" in deployment.lock_file.read_text(), 60,
              "the first deploy to take the lock", pause=0.5)
        second = deployment.script("deploy", SHA2, check=False)
        out, err = first.communicate(timeout=600)
    assert second.returncode == 1
    assert f"another deploy, rollback or restore of {NAMES.swarm} is running (script/deploy additive {SHA2}" in second.stderr
    assert first.returncode == 0, out + err
    assert f"could not read {NAMES.swarm}_" in err and "trying again" in err
    assert "rolled it back" not in err and "restoring every service" not in err
    assert deployment.version() == SHA2


@pytest.mark.parametrize("script", ["down", "up"])
def test_dev_scripts_refuse_the_stack_name(live, script):
    """script/up and script/down with COMPOSE_PROJECT_NAME set to the stack's name stop; its volume stays."""
    result = run([live.project / "script" / script], cwd=live.project, check=False, timeout=120,
                 env={**os.environ, "COMPOSE_PROJECT_NAME": NAMES.swarm}, stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    assert f"COMPOSE_PROJECT_NAME={NAMES.swarm} is the name of a swarm stack on this engine" in result.stderr
    assert NAMES.service("db_data") in docker("volume", "ls", "-q").stdout.split()
