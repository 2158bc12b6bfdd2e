"""The app's own PostgreSQL role on real PostgreSQL (security review M5).

The generated project's Docker/postgres/ensure_app_role.sql (run by script/deploy as the superuser) and
Docker/backup/pg_backup (the restore) in one container of the postgres image, the way the swarm runs them:
psql and pg_restore over TCP to the container's own address (the image trusts 127.0.0.1, as the official one
does), a password from a file. The superuser is `<project_name>` (POSTGRES_USER), the app's role
`<project_name>_app` (harness/names.py).
"""

import pytest

from harness.containers import contract, execute, own_ip
from harness.names import DEFAULT as NAMES
from harness.postgres import pg_ready
from kit.kit import PINS

POSTGRES = f"postgres:{PINS['_postgres_version']}"
SUPER, SUPER_PW = NAMES.superuser, "super-password"
APP, APP_PW = NAMES.app_role, "app-password"
DB = NAMES.database
APP_PW_FILE = "/run/secrets/postgres_app_password"
PWNED = "/tmp/pwned"
# What a deployment from before the app's role holds, all made by the superuser: Hasura's catalog, pgcrypto
# (Hasura creates it), a migrated table with a serial and an identity column, a view, an enum, a function.
BEFORE_ROLE = """
CREATE EXTENSION pgcrypto;
CREATE SCHEMA hdb_catalog;
CREATE TABLE hdb_catalog.hdb_version (hasura_uuid uuid PRIMARY KEY DEFAULT gen_random_uuid(), version text);
CREATE FUNCTION hdb_catalog.gen_hasura_uuid() RETURNS uuid LANGUAGE sql AS 'SELECT gen_random_uuid()';
CREATE TABLE notes (id bigserial PRIMARY KEY, n int GENERATED ALWAYS AS IDENTITY, title text NOT NULL);
CREATE VIEW published AS SELECT id, title FROM notes;
CREATE TYPE mood AS ENUM ('fine');
INSERT INTO notes (title) VALUES ('kept');
"""
# Objects in the database's schemas whose owner is not the app's role, extension members aside.
NOT_THE_APPS = f"""
WITH s AS (SELECT oid FROM pg_namespace WHERE nspname !~ '^pg_' AND nspname <> 'information_schema'),
ext AS (SELECT classid, objid FROM pg_depend WHERE deptype = 'e')
SELECT 'class ' || relname FROM pg_class WHERE relnamespace IN (SELECT oid FROM s)
  AND relowner <> '{APP}'::regrole AND ('pg_class'::regclass, oid) NOT IN (SELECT * FROM ext)
UNION ALL SELECT 'proc ' || proname FROM pg_proc WHERE pronamespace IN (SELECT oid FROM s)
  AND proowner <> '{APP}'::regrole AND ('pg_proc'::regclass, oid) NOT IN (SELECT * FROM ext)
UNION ALL SELECT 'type ' || typname FROM pg_type WHERE typnamespace IN (SELECT oid FROM s) AND typtype IN ('e', 'd', 'r')
  AND typowner <> '{APP}'::regrole
UNION ALL SELECT 'schema ' || nspname FROM pg_namespace WHERE oid IN (SELECT oid FROM s)
  AND nspowner NOT IN ('{APP}'::regrole, 'pg_database_owner'::regrole)
UNION ALL SELECT 'database' FROM pg_database WHERE datname = current_database() AND datdba <> '{APP}'::regrole
"""
# The review's repro/evil.sh: a CHECK constraint calls a function that runs a program on the server when a
# row is restored.
EVIL = f"""
CREATE FUNCTION public.audit(t text) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN
  EXECUTE format('COPY (SELECT %L) TO PROGRAM %L', t, 'id > {PWNED}');
  RETURN true;
END $f$;
CREATE TABLE public.notes (id int, title text CHECK (public.audit(title)));
INSERT INTO public.notes VALUES (1, 'x');
"""


@pytest.fixture
def pg(image_mode, default_project, tmp_path):
    """The postgres image as the stack starts it, with the project's role script, pg_backup and the app's
    password file mounted."""
    (tmp_path / "app_pw").write_text(f"{APP_PW}\n")
    env = {"POSTGRES_USER": SUPER, "POSTGRES_PASSWORD": SUPER_PW, "POSTGRES_DB": DB}
    volumes = [(default_project / "Docker/postgres/ensure_app_role.sql", "/ensure_app_role.sql", "ro"),
               (default_project / "Docker/backup/pg_backup", "/usr/local/bin/pg_backup", "ro"),
               (tmp_path / "app_pw", APP_PW_FILE, "ro")]
    with contract(POSTGRES, env=env, volumes=volumes, wait=pg_ready(SUPER, DB)) as container:
        # Not 127.0.0.1, which pg_hba.conf trusts: the address other containers reach, which needs a password.
        container.host = own_ip(container)
        yield container


def sql(pg, query, user=SUPER, db=DB, check=True):
    """psql -c query over TCP as user (password login), stopping at the first error; rows unaligned."""
    password = SUPER_PW if user == SUPER else APP_PW
    return execute(pg, "env", f"PGPASSWORD={password}", "psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1",
                   "-h", pg.host, "-U", user, "-d", db, "-c", query, check=check)


def ensure_app_role(pg):
    """What script/deploy's ensure_app_role runs in its one-off container: the script as the superuser."""
    return execute(pg, "env", f"PGPASSWORD={SUPER_PW}", f"PGAPP_PASSWORD_FILE={APP_PW_FILE}", "psql", "-X", "-q",
                   "-v", "ON_ERROR_STOP=1", "--single-transaction", "-h", pg.host, "-U", SUPER, "-d", DB,
                   "-v", f"role={APP}", "-f", "/ensure_app_role.sql")


def pg_backup(pg, *args, user=APP):
    """Docker/backup/pg_backup as script/restore runs it: PGUSER and PGPASSWORD_FILE of the given role."""
    password_file = APP_PW_FILE if user == APP else "/tmp/super_pw"
    if user == SUPER:
        execute(pg, "sh", "-c", f"echo {SUPER_PW} > /tmp/super_pw")
    return execute(pg, "env", f"PGHOST={pg.host}", f"PGUSER={user}", f"PGPASSWORD_FILE={password_file}",
                   f"PGDATABASE={DB}", "sh", "/usr/local/bin/pg_backup", *args, check=False)


def dump_evil(pg):
    """The evil database, made and dumped by the superuser to /tmp/evil.dump (its insert already ran the program
    once: that file is removed)."""
    sql(pg, "CREATE DATABASE evil")
    sql(pg, EVIL, db="evil")
    execute(pg, "rm", "-f", PWNED)
    execute(pg, "env", f"PGPASSWORD={SUPER_PW}", "pg_dump", "-h", pg.host, "-U", SUPER, "-d", "evil",
            "--format=custom", "--file=/tmp/evil.dump")


def written(pg):
    return execute(pg, "test", "-e", PWNED, check=False).returncode == 0


def test_an_existing_database_is_handed_to_a_non_superuser_owner(pg):
    """A database the superuser filled (a deployment from before) becomes the app role's: the role is made,
    logs in with the file's password, is no superuser, and owns the database and every object in its schemas
    (extension members aside); run again, nothing changes and nothing fails."""
    sql(pg, BEFORE_ROLE)
    ensure_app_role(pg)
    ensure_app_role(pg)
    assert sql(pg, "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user",
               user=APP).stdout.split() == [f"{APP}|f"]
    assert sql(pg, NOT_THE_APPS).stdout.split() == []
    # The owner works without the superuser: Lucky's tables, its migrations, Hasura's catalog.
    sql(pg, "INSERT INTO notes (title) VALUES ('new'); ALTER TABLE notes ADD COLUMN body text; "
            "INSERT INTO hdb_catalog.hdb_version (version) VALUES ('48'); SELECT hdb_catalog.gen_hasura_uuid()",
        user=APP)
    assert sql(pg, "SELECT count(*) FROM notes", user=APP).stdout.strip() == "2"


def test_a_fresh_database_gives_hasura_and_lucky_what_they_create(pg):
    """On an empty database the owner creates what Hasura creates at start (hdb_catalog, pgcrypto: a trusted
    extension since PostgreSQL 13) and Lucky's db.create gets `already exists`, which avram counts as done,
    not `permission denied`."""
    ensure_app_role(pg)
    sql(pg, "CREATE SCHEMA hdb_catalog; CREATE EXTENSION IF NOT EXISTS pgcrypto; "
            "CREATE TABLE hdb_catalog.t (id uuid DEFAULT gen_random_uuid())", user=APP)
    create = sql(pg, f"CREATE DATABASE {DB}", user=APP, db="postgres", check=False)
    assert f'database "{DB}" already exists' in create.stderr, create.stderr


def test_a_new_password_file_is_the_roles_password_after_the_next_run(pg):
    """The role's password is set from the file at every run, so a new file and a deploy rotate it."""
    ensure_app_role(pg)
    execute(pg, "sh", "-c", f"echo {SUPER_PW} >/tmp/new_pw")
    execute(pg, "env", f"PGPASSWORD={SUPER_PW}", "PGAPP_PASSWORD_FILE=/tmp/new_pw", "psql", "-X", "-q",
            "-v", "ON_ERROR_STOP=1", "--single-transaction", "-h", pg.host, "-U", SUPER, "-d", DB,
            "-v", f"role={APP}", "-f", "/ensure_app_role.sql")
    old = sql(pg, "SELECT 1", user=APP, check=False)
    assert old.returncode != 0 and f'password authentication failed for user "{APP}"' in old.stderr


def test_a_restore_as_the_owner_round_trips_a_backup(pg):
    """pg_backup restore as the owner role puts back a dump the superuser's backup wrote (objects then the
    owner's, pgcrypto made anew by the owner)."""
    sql(pg, BEFORE_ROLE)
    ensure_app_role(pg)
    execute(pg, "env", f"PGPASSWORD={SUPER_PW}", "pg_dump", "-h", pg.host, "-U", SUPER, "-d", DB,
            "--format=custom", "--file=/tmp/app.dump")
    sql(pg, "DELETE FROM notes", user=APP)
    restore = pg_backup(pg, "restore", "/tmp/app.dump")
    assert restore.returncode == 0, restore.stderr
    assert sql(pg, "SELECT title FROM notes", user=APP).stdout.split() == ["kept"]
    assert sql(pg, NOT_THE_APPS).stdout.split() == []


def test_a_dump_that_runs_a_program_fails_to_restore_as_the_owner(pg):
    """The review's evil dump: restored as the owner role, COPY ... TO PROGRAM is refused, the restore fails,
    no file is written and the database keeps its rows."""
    sql(pg, BEFORE_ROLE)
    ensure_app_role(pg)
    dump_evil(pg)
    restore = pg_backup(pg, "restore", "/tmp/evil.dump")
    assert restore.returncode != 0
    # PostgreSQL 15: "must be superuser or have privileges of the pg_execute_server_program role to COPY to or from
    # an external program"; 18: "permission denied to COPY to or from an external program".
    assert "to COPY to or from an external program" in restore.stderr, restore.stderr
    assert not written(pg)
    assert sql(pg, "SELECT title FROM notes").stdout.split() == ["kept"]


def test_the_same_dump_restored_as_the_superuser_runs_its_program(pg):
    """The control: the same restore as the superuser (what script/restore did before the app's role) runs
    the program on the database server."""
    dump_evil(pg)
    restore = pg_backup(pg, "restore", "/tmp/evil.dump", user=SUPER)
    assert restore.returncode == 0, restore.stderr
    assert written(pg)
