"""The generated project's Docker/backup/pg_backup on a real PostgreSQL (the pinned postgres image: in local mode
the kit's Debian PostgreSQL), with the real pg_dump, pg_restore and psql, and the image's /bin/sh (dash).

One container serves the module. A source database holds two related tables of 200,000 rows each (primary keys, a
foreign key, check constraints, an index) and a `migrations` table; `pg_backup now` dumps it. Copies of that dump
cut short at many points (percentages, 8192-byte block boundaries, the last byte) must be refused by `check` and
by `restore`, and a `live` database with rows of its own must be exactly as it was afterwards (review finding H1:
the old restore piped pg_restore into a committing psql and kept what arrived before the cut). The whole dump must
restore exactly, and a restore whose SQL fails late (after the data is in) must leave the database as it was.
"""

import re
import shutil

import pytest
from testcontainers.core.wait_strategies import ExecWaitStrategy

from harness.containers import contract, execute
from kit.kit import PINS

POSTGRES = f"postgres:{PINS['_postgres_version']}"
BLOCK = 8192
ROWS = 200_000


def source_sql(rows):
    """Two related tables of `rows` rows each (primary keys, a foreign key, check constraints, an index) and
    `migrations`."""
    return f"""
CREATE TABLE migrations (version bigint PRIMARY KEY);
INSERT INTO migrations SELECT 20250101000000 + g FROM generate_series(0, 3) g;
CREATE TABLE authors (id int PRIMARY KEY, name text NOT NULL CHECK (length(name) = 32));
INSERT INTO authors SELECT g, md5(g::text) FROM generate_series(1, {rows}) g;
CREATE TABLE posts (id int PRIMARY KEY CHECK (id > 0), author_id int NOT NULL REFERENCES authors (id), body text);
INSERT INTO posts SELECT g, {rows} + 1 - g, repeat(md5(g::text), 4) FROM generate_series(1, {rows}) g;
CREATE INDEX posts_author_id ON posts (author_id);
"""


LIVE_SQL = """
CREATE TABLE live_only (id int PRIMARY KEY, note text NOT NULL CHECK (note <> ''));
INSERT INTO live_only SELECT g, 'live ' || g FROM generate_series(1, 42) g;
CREATE INDEX live_only_note ON live_only (note);
CREATE TABLE migrations (version bigint PRIMARY KEY);
INSERT INTO migrations VALUES (20990101000000);
"""

# What "the database as it was" means here: every table's row count, every constraint and every index outside
# the system schemas, and the publications (database-wide objects a restore cannot drop with the schemas).
SNAPSHOT_SQL = """
SELECT 'rows ' || n.nspname || '.' || c.relname || ' = ' || (xpath('/row/n/text()', query_to_xml(
         format('SELECT count(*) AS n FROM %I.%I', n.nspname, c.relname), false, true, '')))[1]::text
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
UNION ALL
SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace::regnamespace::text !~ '^pg_' AND connamespace::regnamespace::text <> 'information_schema'
UNION ALL
SELECT 'index ' || schemaname || '.' || indexname || ': ' || indexdef
  FROM pg_indexes WHERE schemaname !~ '^pg_' AND schemaname <> 'information_schema'
UNION ALL
SELECT 'publication ' || pubname FROM pg_publication
ORDER BY 1
"""


@pytest.fixture(scope="module")
def pg(image_mode, default_project, tmp_path_factory):
    """One PostgreSQL container with the rendered pg_backup at /usr/local/bin/pg_backup, a `source` database
    (SOURCE_SQL) and its dump by `pg_backup now`, in /backups (a directory of the host, like BACKUP_DIR)."""
    files = tmp_path_factory.mktemp("pg_backup")
    script = files / "pg_backup"
    shutil.copy(default_project / "Docker/backup/pg_backup", script)
    script.chmod(0o755)
    (files / "pw").write_text("pw\n")
    env = {"POSTGRES_USER": "app", "POSTGRES_PASSWORD": "pw", "POSTGRES_DB": "app"}
    ready = ExecWaitStrategy(["pg_isready", "-h", "127.0.0.1", "-U", "app", "-d", "app"]).with_startup_timeout(60)
    (files / "backups").mkdir()  # as the stack mounts its volume or BACKUP_DIR
    volumes = [(script, "/usr/local/bin/pg_backup", "ro"), (files / "pw", "/run/pw", "ro"), (files / "backups", "/backups", "rw")]
    with contract(POSTGRES, env=env, volumes=volumes, wait=ready.with_poll_interval(0.5)) as container:
        box = Box(container)
        box.sql("app", "CREATE DATABASE source")
        box.sql("source", source_sql(ROWS))
        made = box.pg_backup("source", "now", "manual")
        box.full = f"/backups/{made.stdout.strip()}"
        box.source = box.snapshot("source")
        yield box


class Box:
    """The container, with psql and pg_backup as the stack's one-off containers run them (PGPASSWORD_FILE)."""

    def __init__(self, container):
        self.container = container
        self.full = ""  # the source's dump, by `pg_backup now`
        self.source = []  # the source's snapshot

    def sh(self, command, check=True):
        return execute(self.container, "sh", "-c", command, check=check)

    def sql(self, db, sql):
        return execute(self.container, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-tA", "-h", "127.0.0.1", "-U", "app",
                       "-d", db, "-c", sql).stdout

    def pg_backup(self, db, *args, check=True):
        return execute(self.container, "env", "PGHOST=127.0.0.1", "PGUSER=app", "PGPASSWORD_FILE=/run/pw",
                       f"PGDATABASE={db}", "BACKUP_ROOT=/backups", "pg_backup", *args, check=check)

    def snapshot(self, db):
        return self.sql(db, SNAPSHOT_SQL).splitlines()

    def fresh(self, db, sql):
        """Database db made anew from sql; returns its snapshot."""
        self.sql("app", f"DROP DATABASE IF EXISTS {db}")
        self.sql("app", f"CREATE DATABASE {db}")
        self.sql(db, sql)
        return self.snapshot(db)

    def size(self, path):
        return int(self.sh(f"stat -c %s {path}").stdout)


def test_the_new_dump_is_private_and_whole(pg):
    """`now` wrote a dump pg_restore reads to its end (check passes), mode 0600, and the source has what the
    other tests compare against."""
    assert pg.sh(f"stat -c %a {pg.full}").stdout.strip() == "600"
    pg.pg_backup("source", "check", pg.full)
    assert f"rows public.authors = {ROWS}" in pg.source and f"rows public.posts = {ROWS}" in pg.source
    assert any(line.startswith("constraint posts posts_author_id_fkey FOREIGN KEY") for line in pg.source)
    assert any(line.startswith("index public.posts_author_id:") for line in pg.source)


def cuts(size):
    """(label, bytes kept): percentages, two 8192-byte block boundaries, and all but the last byte."""
    points = [(f"{p}%", size * p // 100) for p in (5, 20, 35, 50, 65, 80, 95, 99)]
    points += [(f"block {k}", BLOCK * k) for k in (size // BLOCK // 3, size // BLOCK)]
    return points + [("last byte missing", size - 1)]


def test_a_dump_cut_short_is_refused_and_the_database_is_unchanged(pg):
    """H1: for every cut, `check` and `restore` fail with one line naming the file and pg_restore's error, and the
    live database (its own rows, constraints and indexes) is exactly as before."""
    size = pg.size(pg.full)
    live = pg.fresh("live", LIVE_SQL)
    assert any(line.startswith("rows public.live_only = 42") for line in live)
    seen = []
    for label, kept in cuts(size):
        assert 0 < kept < size
        cut = f"/tmp/cut-{kept}.dump"
        pg.sh(f"head -c {kept} {pg.full} > {cut}")
        for command in ("check", "restore"):
            result = pg.pg_backup("live", command, cut, check=False)
            message = result.stderr
            assert result.returncode == 1, f"{label}: {command} exited {result.returncode}: {message}"
            assert message.count("\n") == 1 and re.fullmatch(
                rf"pg_backup: {re.escape(cut)} is damaged or cut short: pg_restore cannot read it to its end "
                r"\(pg_restore: error: .+\); nothing was changed\n", message), f"{label}: {command}: {message}"
            assert pg.snapshot("live") == live, f"{label}: {command} changed the live database"
        seen.append(label)
        pg.sh(f"rm {cut}")
    assert len(seen) == 11


def test_the_whole_dump_restores_exactly(pg):
    """The whole dump makes `live` exactly the source: row counts, constraints and indexes; nothing of live's own
    remains."""
    pg.fresh("live", LIVE_SQL)
    pg.pg_backup("live", "restore", pg.full)
    assert pg.snapshot("live") == pg.source


def test_a_session_holding_a_lock_neither_holds_up_nor_deadlocks_the_restore(pg):
    """An app session in a transaction holding a lock on a live table (as Lucky or Hasura may, at any moment) is
    ended when the restore starts: the restore goes through, and that session is told it was terminated. The old
    restore waited behind such a session, and one taking a second lock meanwhile deadlocked with its drops (the
    deadlock that rolled back a restore on a deployed stack)."""
    pg.fresh("live", LIVE_SQL)
    # The holder is the exec's own process (exec, not &): an orphan would be reaped by the postmaster, which is the
    # container's PID 1, and taken for a crashed backend when it exits.
    pg.container.get_wrapped_container().exec_run(
        ["sh", "-c", "exec psql -X -h 127.0.0.1 -U app -d live -c 'BEGIN; LOCK TABLE live_only IN ACCESS SHARE MODE; "
                     "SELECT pg_sleep(60);' >/tmp/holder.out 2>&1 </dev/null"], detach=True)
    held = "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'live_only'"
    for _ in range(100):
        if pg.sql("live", held).strip() != "0":
            break
        pg.sh("sleep 0.1")
    else:
        pytest.fail("the holding session never took its lock")
    result = pg.pg_backup("live", "restore", pg.full, check=False)
    assert result.returncode == 0, result.stderr
    assert pg.snapshot("live") == pg.source
    assert "terminating connection due to administrator command" in pg.sh("cat /tmp/holder.out").stdout


def test_a_restore_failing_after_its_data_is_loaded_changes_nothing(pg):
    """A dump whose SQL fails at the end (its publication exists in the target already: publications belong to
    the database, not to a schema, so the restore's DROP SCHEMA leaves them) is rolled back after its tables and
    rows were loaded: one line says so, and the live database is exactly as before."""
    pg.fresh("conflicting", source_sql(20_000) + "CREATE PUBLICATION lhd_pub FOR TABLE posts;")
    made = pg.pg_backup("conflicting", "now", "manual").stdout.strip()
    live = pg.fresh("live", LIVE_SQL + "CREATE PUBLICATION lhd_pub FOR TABLE live_only;")
    result = pg.pg_backup("live", "restore", f"/backups/{made}", check=False)
    assert result.returncode == 1
    assert re.fullmatch(rf"pg_backup: applying /backups/{re.escape(made)} failed and was rolled back, so live is as it "
                        r"was: psql:\S+: ERROR:  publication \"lhd_pub\" already exists\n", result.stderr), result.stderr
    assert pg.snapshot("live") == live
