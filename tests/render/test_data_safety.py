"""Data-safety parts of the generated scripts that need no Docker engine: the question before a destructive
step (asked on a terminal), the deploy lock, the dev stack's name and its refusal of a stack's name, and the
backup script's naming, retention, file modes, reading a dump to its end and its races (pg_dump, pg_restore and
psql are test doubles here; kit/test_pg_backup.py and the swarm tier run the real ones)."""

import fcntl
import os
import pty
import re
import shutil
import stat
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from harness.docker import fake_docker
from harness.proc import run

RESTORE_USAGE = "usage: script/restore [--yes] [--maintenance] DUMP | [--yes] [--maintenance] --offsite SNAPSHOT"
USAGE = [
    (["backup", "extra"], "usage: script/backup [--list]"),
    (["restore"], RESTORE_USAGE),
    (["restore", "--bogus", "x.dump"], RESTORE_USAGE),
    (["restore", "a.dump", "b.dump"], RESTORE_USAGE),
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


# --- pg_backup with test doubles of pg_dump, pg_restore and psql (the docker tier's kit/test_pg_backup.py
# runs the real ones) ------------------------------------------------------------------------------------------

FAKE_PG_DUMP = """#!/bin/sh
# Test double of pg_dump: writes "dump of DATABASE by PID" to its --file argument, slowly when FAKE_DUMP_SLEEP is set
# (so two calls overlap), one line at a time (so two writers of one file would interleave).
for arg in "$@"; do case "$arg" in --file=*) out="${arg#--file=}" ;; esac; done
echo "dump of $PGDATABASE by $$" > "$out"
sleep "${FAKE_DUMP_SLEEP:-0}"
echo "end of dump by $$" >> "$out"
"""

# The double reads its dump like pg_restore (src/bin/pg_dump/pg_backup_custom.c, REL_15/REL_18): the table of
# contents (--list) reads the head of the file only; anything else reads every data block and fails at a cut with
# "could not read from input file: end of file". A "dump" holding CUT is one cut short.
FAKE_PG_RESTORE = """#!/bin/sh
# Test double of pg_restore (see FAKE_PG_RESTORE in the test module).
for arg in "$@"; do case "$arg" in --file=*) out="${arg#--file=}" ;; -*) ;; *) dump="$arg" ;; esac; done
grep -q '^dump of' "$dump" || { echo "pg_restore: error: input file does not appear to be a valid archive" >&2; exit 1; }
case "$*" in *--list*) echo "; Archive created by the double"; exit 0 ;; esac
echo "CREATE TABLE public.notes (id int);" > "$out"
echo "COPY public.notes (id) FROM stdin;" >> "$out"
echo "1" >> "$out"
if grep -q CUT "$dump"; then echo "pg_restore: error: could not read from input file: end of file" >&2; exit 1; fi
printf '%s\\n' '\\.' 'ALTER TABLE public.notes ADD PRIMARY KEY (id);' >> "$out"
"""

FAKE_PSQL = """#!/bin/sh
# Test double of psql: records its arguments and the files it is given (they are removed when pg_backup ends).
echo "psql $*" >> "$FAKE_PSQL_LOG"
for arg in "$@"; do case "$arg" in --file=*) cat "${arg#--file=}" >> "$FAKE_PSQL_LOG" ;; esac; done
"""

FAKE_DATE = """#!/bin/sh
# Test double of date: one fixed second for the dump names (FAKE_NOW), the real date otherwise.
case "$*" in *%Y%m%dT%H%M%SZ*) echo "$FAKE_NOW" ;; *) exec /bin/date "$@" ;; esac
"""

DB = "lhd_app_production"


def dump_name(moment, reason, n=None):
    """DATABASE-YYYYmmddTHHMMSSZ-REASON[-N].dump for a datetime."""
    return f"{DB}-{moment:%Y%m%dT%H%M%SZ}-{reason}{f'-{n}' if n else ''}.dump"


@pytest.fixture
def pg(project, tmp_path):
    """pg_backup of the rendered project with the doubles first on PATH; pg.store is BACKUP_ROOT (made, empty)."""

    class Pg:
        store = tmp_path / "backups"
        log = tmp_path / "psql.log"
        script = project / "Docker/backup/pg_backup"

        def __init__(self):
            bin_dir = tmp_path / "pgbin"
            bin_dir.mkdir()
            for name, text in (("pg_dump", FAKE_PG_DUMP), ("pg_restore", FAKE_PG_RESTORE), ("psql", FAKE_PSQL)):
                (bin_dir / name).write_text(text)
                (bin_dir / name).chmod(0o755)
            self.bin = bin_dir
            self.store.mkdir()
            self.env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "BACKUP_ROOT": str(self.store),
                        "PGDATABASE": DB, "PGHOST": "postgres", "FAKE_PSQL_LOG": str(self.log)}

        def __call__(self, *args, check=True, **env):
            return run([self.script, *args], env={**self.env, **env}, check=check, timeout=60, umask=0o022)

        def names(self):
            return sorted(p.name for p in self.store.iterdir())

        def put(self, name, days_old=0, text="dump of lhd_app_production by 1\n"):
            path = self.store / name
            path.write_text(text)
            moment = time.time() - days_old * 86400
            os.utime(path, (moment, moment))
            return path

    return Pg()


def test_pg_backup_names_dumps_and_lists_them_newest_first(pg):
    """pg_backup now names each dump DATABASE-TIMESTAMP-REASON.dump (-2 for a second one within one second);
    list shows them newest first; a bad reason is refused."""
    names = [pg("now", reason).stdout.strip() for reason in ("manual", "manual", "before-rollback")]
    assert re.fullmatch(rf"{DB}-\d{{8}}T\d{{6}}Z-manual\.dump", names[0])
    assert len(set(names)) == 3 and pg.names() == sorted(names)
    listing = pg("list").stdout
    assert [line.split()[0] for line in listing.splitlines() if line.endswith(" bytes")] == \
        sorted(names, key=lambda n: (n.split("-")[1], n.endswith("-2.dump")), reverse=True)
    assert "last scheduled backup: none yet" in listing
    bad = pg("now", "Bad Reason", check=False)
    assert bad.returncode == 1 and "the reason 'Bad Reason' must be lowercase letters, digits and -" in bad.stderr


def test_dumps_are_private(pg):
    """M8: run under a umask of 022, pg_backup creates the store 0700 and each dump 0600."""
    pg.store.rmdir()
    name = pg("now").stdout.strip()
    assert stat.S_IMODE(pg.store.stat().st_mode) == 0o700
    assert stat.S_IMODE((pg.store / name).stat().st_mode) == 0o600


def test_retention_prunes_only_its_own_scheduled_dumps_by_count_and_others_by_age(pg):
    """M7: after a scheduled dump, the scheduled dumps beyond BACKUP_KEEP go (oldest first, by the time in their
    names) and this database's other dumps older than BACKUP_MAX_AGE_DAYS; another database's dumps, other
    files and recent manual or safety dumps stay, however many there are."""
    now = datetime.now(UTC)
    kept = [pg.put(n).name for n in (
        "other_app.dump", "notes.txt", f"{DB}.dump", f"lhd_app_staging-{now - timedelta(days=90):%Y%m%dT%H%M%SZ}-scheduled.dump",
        dump_name(now - timedelta(days=2), "scheduled"),  # newest scheduled but one: kept (with the new one, 2)
        *(dump_name(now - timedelta(days=d), "before-deploy") for d in range(1, 20)),  # many safety dumps: all recent
        dump_name(now - timedelta(days=29), "manual"))]
    pruned = [pg.put(n).name for n in (
        dump_name(now - timedelta(days=3), "scheduled"), dump_name(now - timedelta(days=3), "scheduled", 2),
        dump_name(now - timedelta(days=4), "scheduled"),
        dump_name(now - timedelta(days=31), "before-restore"), dump_name(now - timedelta(days=45), "manual"))]
    # Age is the time in the name: a copy with a fresh modification time is still old.
    pruned.append(pg.put(dump_name(now - timedelta(days=200), "scheduled"), days_old=-1).name)
    result = pg("now", "scheduled", BACKUP_KEEP="2", BACKUP_MAX_AGE_DAYS="30")
    assert pg.names() == sorted([*kept, result.stdout.strip()])
    assert sorted(re.findall(r"pg_backup: removed (\S+) \(retention\)", result.stderr)) == sorted(pruned)


@pytest.mark.parametrize("reason", ["before-restore", "before-deploy", "before-rollback", "manual"])
def test_safety_and_manual_dumps_delete_nothing(pg, reason):
    """H3: a safety (or manual) dump deletes no dump, even with BACKUP_KEEP=1 and old dumps of every kind."""
    now = datetime.now(UTC)
    before = [pg.put(dump_name(now - timedelta(days=d), r)).name for d in (1, 2, 60) for r in ("scheduled", "manual")]
    new = pg("now", reason, BACKUP_KEEP="1", BACKUP_MAX_AGE_DAYS="1").stdout.strip()
    assert pg.names() == sorted([*before, new])


def test_a_pinned_dump_survives_retention_and_comes_back(pg):
    """H3: pin NAME links the dump as .restoring-NAME; retention deleting NAME meanwhile leaves the pin, and unpin
    puts NAME back (same content) and removes the pin."""
    oldest = pg.put(dump_name(datetime.now(UTC) - timedelta(days=5), "scheduled"), text="dump of the oldest\n").name
    pin = pg("pin", oldest).stdout.strip()
    assert pin == f"{pg.store}/.restoring-{oldest}"
    pg("now", "scheduled", BACKUP_KEEP="1")
    assert oldest not in pg.names() and Path(pin).read_text() == "dump of the oldest\n"
    pg("unpin", oldest)
    assert (pg.store / oldest).read_text() == "dump of the oldest\n" and not Path(pin).exists()
    missing = pg("pin", "nothing-here.dump", check=False)
    assert missing.returncode == 1 and f"{pg.store}/nothing-here.dump does not exist" in missing.stderr


def test_check_and_restore_refuse_a_dump_cut_short_and_psql_never_runs(pg, tmp_path):
    """H1: check and restore read the dump to its end; a dump pg_restore cannot finish is refused in one line and
    psql is never started (nothing reaches the database); a whole dump is applied as one transaction."""
    cut = pg.put("cut.dump", text="dump of lhd_app_production by 1\nCUT\n")
    temp = tmp_path / "temp"
    temp.mkdir()
    for command in ("check", "restore"):
        result = pg(command, cut, check=False, TMPDIR=str(temp))
        assert result.returncode == 1
        assert result.stderr == (f"pg_backup: {cut} is damaged or cut short: pg_restore cannot read it to its end "
                                 "(pg_restore: error: could not read from input file: end of file); nothing was changed\n")
    assert not pg.log.exists()
    whole = pg.put("whole.dump")
    pg("restore", whole, TMPDIR=str(temp))
    applied = pg.log.read_text()
    assert "-v ON_ERROR_STOP=1 --single-transaction" in applied and "ADD PRIMARY KEY" in applied
    assert list(temp.iterdir()) == []  # the script pg_restore wrote (every row) is gone


def test_a_new_dump_pg_restore_cannot_read_is_not_kept(pg):
    """H1: `now` reads its dump back to the end before naming it; one that fails is removed, no name is printed."""
    (pg.bin / "pg_dump").write_text(FAKE_PG_DUMP.replace('echo "end of dump by $$"', 'echo CUT'))
    result = pg("now", "manual", check=False)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (f"pg_backup: the new dump of {DB} cannot be read back (pg_restore: error: could not read "
                             "from input file: end of file); no dump was kept\n")
    assert pg.names() == []


def test_two_dumps_in_one_second_share_no_file(pg, tmp_path):
    """L8: two `now` of one reason in the same second write separate partial files and take separate names; each
    dump holds its own writer's whole output."""
    fake_date = tmp_path / "pgbin" / "date"
    fake_date.write_text(FAKE_DATE)
    fake_date.chmod(0o755)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: pg("now", "manual", check=False, FAKE_NOW="20261202T101010Z",
                                             FAKE_DUMP_SLEEP="1"), range(2)))
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    names = sorted(r.stdout.strip() for r in results)
    assert names == [f"{DB}-20261202T101010Z-manual-2.dump", f"{DB}-20261202T101010Z-manual.dump"]
    for name in names:
        first, last = (pg.store / name).read_text().splitlines()
        assert first.removeprefix(f"dump of {DB} by ") == last.removeprefix("end of dump by ")
    assert pg.names() == names


def test_schedule_removes_only_partials_a_day_old(pg):
    """L8: the scheduler, starting, removes its own partial dumps older than a day, not a running dump's partial
    nor anyone else's file."""
    now = datetime.now(UTC)
    old = pg.put(f".{dump_name(now, 'manual')}.partial.Ab12Cd", days_old=2).name
    old_style = pg.put(f".{dump_name(now, 'manual')}.partial", days_old=2).name
    young = pg.put(f".{dump_name(now, 'manual')}.partial.Xy34Zw", days_old=0.5).name
    theirs = pg.put(".other_app.partial.Qq", days_old=9).name
    recent = pg.put(dump_name(now, "scheduled")).name  # so the scheduler waits instead of dumping
    result = run(["timeout", "--preserve-status", "-s", "TERM", "2", pg.script, "schedule"],
                 env={**pg.env, "BACKUP_INTERVAL": "3600"}, check=False, timeout=30)
    assert result.returncode == 0, result.stderr
    assert pg.names() == sorted([young, theirs, recent])
    assert old not in pg.names() and old_style not in pg.names()


# A docker that runs a one-off `docker run ... -v HOST:/backups ... --entrypoint pg_backup IMAGE ARGS` here, with its
# -e variables, the store's host directory as BACKUP_ROOT and /backups/... or /restore/dump arguments mapped to the
# host paths mounted there; `stack ls` names the stack; anything else is logged and succeeds.
RUNNING_DOCKER = r"""
echo "docker $*" >> "$FAKE_LOG"
case "$1 $2" in
  "stack ls") echo lhd_app; exit 0 ;;
esac
[ "$1" = run ] || exit 0
shift
vars=""; store=""; dump=""; script=""; entry=""
while [ $# -gt 0 ]; do
  case "$1" in
    -e) vars="$vars $2"; shift ;;
    -v) case "$2" in
          *:/backups|*:/backups:*) store="${2%%:/backups*}" ;;
          *:/restore/dump:*) dump="${2%%:/restore/dump*}" ;;
          *:/usr/local/bin/pg_backup:*) script="${2%%:/usr/local/bin/pg_backup*}" ;;
        esac; shift ;;
    --entrypoint) entry="$2"; shift ;;
    --network|--name|--user|-u|--mount|--tmpfs|--env-file) shift ;;
    -*) ;;
    *) shift; break ;;
  esac
  shift
done
[ "$entry" = pg_backup ] || exit 0
args=""
for arg in "$@"; do
  case "$arg" in /backups/*) arg="$store/${arg#/backups/}" ;; /restore/dump) arg="$dump" ;; esac
  args="$args $arg"
done
# shellcheck disable=SC2086 # the words are ours: no spaces
exec env $vars BACKUP_ROOT="$store" PGPASSWORD_FILE= "$script" $args
"""


def test_restore_never_deletes_the_dump_it_restores(pg, project, tmp_path):
    """H3 through script/restore: with BACKUP_KEEP equal to the number of scheduled dumps, restoring the oldest
    takes its safety backup (then, with no terminal and no --yes, stops at the question) and every dump is still
    there, with no pin (.restoring-NAME) left behind."""
    env_file = tmp_path / "prod.env"
    run([project / "script/bootstrap"], env={**os.environ, "LHD_ENV_FILE": str(env_file)})
    now = datetime.now(UTC)
    scheduled = [pg.put(dump_name(now - timedelta(days=d), "scheduled")).name for d in (3, 2, 1)]
    env = {**pg.env, **fake_docker(tmp_path, RUNNING_DOCKER), "LHD_ENV_FILE": str(env_file), "BACKUP_DIR": str(pg.store),
           "BACKUP_KEEP": str(len(scheduled)), "FAKE_LOG": str(tmp_path / "docker.log"),
           "DEPLOY_LOCK_FILE": str(tmp_path / "deploy.lock"), "DEPLOY_LOCK_DIR": str(tmp_path / "deploy-lock")}
    env["PATH"] = f"{pg.bin}{os.pathsep}{env['PATH']}"
    result = run([project / "script/restore", scheduled[0]], env=env, check=False, stdin=subprocess.DEVNULL, timeout=60)
    assert result.returncode == 1 and "refusing to go on without --yes" in result.stderr, result.stderr
    safety = re.search(r"Backed up the current database first: (\S+)", result.stdout).group(1)
    assert safety.endswith("-before-restore.dump")
    assert pg.names() == sorted([*scheduled, safety])


@pytest.mark.parametrize(("command", "setting", "message"), [
    ("now", {"BACKUP_KEEP": "0"}, "BACKUP_KEEP must be a whole number of dumps above 0, not '0'"),
    ("now", {"BACKUP_MAX_AGE_DAYS": "30d"}, "BACKUP_MAX_AGE_DAYS must be a whole number of days above 0, not '30d'"),
    ("schedule", {"BACKUP_INTERVAL": "daily"}, "BACKUP_INTERVAL must be a whole number of seconds above 0, not 'daily'"),
    ("schedule", {"BACKUP_MAX_AGE_DAYS": "0"}, "BACKUP_MAX_AGE_DAYS must be a whole number of days above 0, not '0'"),
], ids=["keep-0", "max-age-word", "interval-word", "max-age-0"])
def test_pg_backup_refuses_bad_settings(project, tmp_path, command, setting, message):
    """A BACKUP_KEEP, BACKUP_MAX_AGE_DAYS or BACKUP_INTERVAL that is not a whole number above 0 is refused in one
    line, before pg_dump runs, and nothing is written."""
    store = tmp_path / "backups"
    store.mkdir()
    env = {**os.environ, "BACKUP_ROOT": str(store), "PGDATABASE": "d", **setting}
    result = run([project / "Docker/backup/pg_backup", command], env=env, check=False, timeout=30)
    assert result.returncode == 1 and result.stderr == f"pg_backup: {message}\n"
    assert list(store.iterdir()) == []
