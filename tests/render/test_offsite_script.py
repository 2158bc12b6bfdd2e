"""Docker/backup/offsite with a fake `restic`: against a locked repository every restic call but the opening probe
waits for another process's lock (restic's `--retry-lock`, half of OFFSITE_TIMEOUT and at most 600 s), and a lock
still held is said in one line naming its holder, with nothing written; a second upload on the same server waits
for the first's local lock, up to OFFSITE_TIMEOUT, then gives up in one line; the status it records is what the
backup service's metrics (Docker/backup/backup_metrics, the offsite alarms' input) read.

The fake answers as restic 0.19.1 does (its lines copied from the real binary's answer here): when the repository
is locked, exit code 11, "failed to lock repository" (doc/075_scripting.rst, "Exit codes", v0.17.0 on), and the
lock's holder; a backup's JSON summary carries `snapshot_id`. The e2e tier runs the real restic
and holds a real lock (tests/e2e/swarm/test_offsite.py)."""

import os
import time

import pytest

from harness.proc import popen, run

LOCKED = """unable to create lock in backend: repository is already locked exclusively by PID 24 on ef5fc77ecb23 by root \
(UID 0, GID 0)
lock was created at 2026-12-03 02:27:57 (2.6s ago)
storage ID 7e250619
the `unlock` command can be used to remove stale locks"""

FAKE_RESTIC = f"""#!/bin/sh
printf '%s\\n' "$*" >>"$CALLS"
case "$*" in
  *'--no-lock cat config'*) exit 0 ;;
  init) echo 'Fatal: create repository at s3:http://store.example.net:8080/backups failed: config file already exists' >&2
    exit 1 ;;
esac
if [ "$MODE" = ok ]; then
  echo '{{"message_type":"summary","snapshot_id":"4f1c2a9b0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a"}}'
  exit 0
fi
cat >&2 <<'EOF'
repo already locked, waiting up to 30s for the lock
{LOCKED}
EOF
exit 11
"""


@pytest.fixture
def offsite(default_project, tmp_path):
    """Run the project's offsite script as the restic image would, with a fake restic on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "restic").write_text(FAKE_RESTIC)
    (bin_dir / "restic").chmod(0o755)
    backups = tmp_path / "backups"
    backups.mkdir()
    (tmp_path / "calls").touch()
    for name in ("password", "key_id", "secret"):
        (tmp_path / name).write_text("x\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OFFSITE_", "RESTIC_"))}
    env.update(PATH=f"{bin_dir}:{os.environ['PATH']}", CALLS=str(tmp_path / "calls"), BACKUP_ROOT=str(backups),
               RESTIC_REPOSITORY="s3:http://store.example.net:8080/backups",
               RESTIC_PASSWORD_FILE=str(tmp_path / "password"), OFFSITE_S3_KEY_ID_FILE=str(tmp_path / "key_id"),
               OFFSITE_S3_SECRET_FILE=str(tmp_path / "secret"), PGDATABASE="lhd_app_production")

    def call(*args, timeout="60", mode="locked"):
        result = run(["sh", default_project / "Docker/backup/offsite", *args],
                     env={**env, "OFFSITE_TIMEOUT": timeout, "MODE": mode}, check=False, timeout=60)
        calls = (tmp_path / "calls").read_text().splitlines()
        return result, calls, sorted(p.name for p in backups.iterdir() if not p.name.startswith(".offsite-"))

    return call


@pytest.mark.parametrize(("timeout", "wait"), [("60", "30s"), ("3600", "600s")])
def test_a_locked_repository_is_waited_for_then_said_in_one_line(offsite, timeout, wait):
    result, calls, written = offsite("fetch", "1519ed4d", timeout=timeout)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "offsite: cannot list snapshot 1519ed4d in s3:http://store.example.net:8080/backups: the repository is still "
        f"locked exclusively by PID 24 on ef5fc77ecb23 after {wait}; when no restic process uses it any more, "
        "`restic unlock` frees it"]
    assert calls[0].startswith("--no-lock cat config")  # the probe takes no lock
    assert calls[1] == f"--retry-lock {wait} ls --json 1519ed4d"
    assert written == []


def test_an_upload_waits_for_the_lock_and_keeps_the_dump(offsite, tmp_path):
    dump = tmp_path / "backups/lhd_app_production-20261203T024129Z-manual.dump"
    dump.write_bytes(b"PGDMP")
    result, calls, written = offsite("upload", dump.name)
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1
    assert "the local dump is kept: the repository is still locked exclusively by PID 24" in result.stderr
    assert calls[-1].startswith("--retry-lock 30s backup ")
    assert written == [dump.name]


def test_the_status_it_records_is_what_the_offsite_alarms_read(offsite, default_project, tmp_path):
    """After an upload that succeeds and a later one that fails, backup_metrics exports both times for
    store="offsite" from the status file this script wrote (BackupFailing and BackupMissing read them)."""
    before = int(time.time())
    first = tmp_path / "backups/lhd_app_production-20261203T010000Z-manual.dump"
    first.write_bytes(b"PGDMP")
    assert offsite("upload", first.name, mode="ok")[0].returncode == 0
    second = tmp_path / "backups/lhd_app_production-20261203T020000Z-manual.dump"
    second.write_bytes(b"PGDMP")
    assert offsite("upload", second.name)[0].returncode == 1
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    run(["sh", default_project / "Docker/backup/backup_metrics"], timeout=30,
        env={**os.environ, "BACKUP_ROOT": str(tmp_path / "backups"), "BACKUP_METRICS_DIR": str(metrics)})
    samples = dict(line.split(" ") for line in (metrics / "lhd_backup.prom").read_text().splitlines()
                   if 'store="offsite"' in line)
    success = int(samples['lhd_backup_last_success_timestamp_seconds{store="offsite"}'])
    failure = int(samples['lhd_backup_last_failure_timestamp_seconds{store="offsite"}'])
    assert before <= success <= failure <= time.time()


def test_a_failing_store_leaves_the_service_healthy(offsite, tmp_path):
    """The healthcheck is the container's own: a failed upload keeps it healthy (a deploy waits for every service's
    health, and a store that is down must not hold deploys: the alerts say it), a missing password does not."""
    dump = tmp_path / "backups/lhd_app_production-20261203T020000Z-manual.dump"
    dump.write_bytes(b"PGDMP")
    assert offsite("upload", dump.name)[0].returncode == 1
    assert "last_failure_epoch=" in (tmp_path / "backups/.offsite-status").read_text()
    assert offsite("healthy")[0].returncode == 0
    (tmp_path / "password").write_text("")
    assert offsite("healthy")[0].returncode == 1


def test_an_upload_behind_another_waits_then_gives_up_in_one_line(offsite, tmp_path):
    """Another upload holds the offsite lock in /backups (the service's, while script/backup's runs): the second
    says it waits, then after OFFSITE_TIMEOUT gives up in one line, having called restic for nothing."""
    (tmp_path / "backups/lhd_app_production-20261203-010000.dump").write_text("dump")
    with popen(["flock", tmp_path / "backups/.offsite-lock", "sleep", "30"], log=tmp_path / "holder.log"):
        time.sleep(0.5)
        started = time.monotonic()
        result, calls, _ = offsite("upload", timeout="2", mode="ok")
        waited = time.monotonic() - started
    assert result.returncode == 1 and 2 <= waited < 20, (result, waited)
    assert result.stderr.splitlines() == [
        f"offsite: waiting for another offsite upload or prune in {tmp_path}/backups to finish",
        f"offsite: upload: another offsite upload or prune still held {tmp_path}/backups/.offsite-lock after 2s; "
        "nothing was sent, the local dumps are kept"], result.stderr
    assert calls == [], calls  # not even the probe: the lock comes first


def test_an_upload_after_another_goes_on(offsite, tmp_path):
    """The lock freed within OFFSITE_TIMEOUT: the second upload waits for it, then sends the dump."""
    (tmp_path / "backups/lhd_app_production-20261203-010000.dump").write_text("dump")
    with popen(["flock", tmp_path / "backups/.offsite-lock", "sleep", "2"], log=tmp_path / "holder.log"):
        time.sleep(0.5)
        result, calls, _ = offsite("upload", timeout="30", mode="ok")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["lhd_app_production-20261203-010000.dump", "4f1c2a9b"], result.stdout
    assert result.stderr.startswith("offsite: waiting for another offsite upload"), result.stderr
