"""script/pg_upgrade's core on real PostgreSQL: data written by the previous major (the kit's 17, Debian trixie), in
the volume layout a project pinning it had (the volume at /var/lib/postgresql/data), moved by the generated
project's script/functions/pg_version (`pg_move_data`, what script/pg_upgrade runs once the stack's database is
stopped) to the pinned major (the kit's 18, Debian sid), then read back through the pinned image started as the
stack starts it (the volume at /var/lib/postgresql). Also the refusals around it: the pinned image will not start
on the old data, and script/deploy's `require_data_major` names script/pg_upgrade.
"""

import json
import os
import shutil

import pytest
import yaml

from harness import reaper
from harness.bake import TEMPLATE_PARTS, bake, copy_template
from harness.containers import contract, execute, own_ip, postgres_override
from harness.docker import docker, unique
from harness.names import DEFAULT as NAMES
from harness.postgres import pg_ready
from harness.proc import run
from harness.upgrade import cruft, git
from kit.kit import PINS

PINNED = postgres_override(f"postgres:{PINS['_postgres_version']}")
PREVIOUS = postgres_override(f"postgres:{PINS['_postgres_previous_version']}")
MAJOR, PREVIOUS_MAJOR = (PINS[k].split(".")[0] for k in ("_postgres_version", "_postgres_previous_version"))
SUPER, SUPER_PW, DB = NAMES.superuser, "super-password", NAMES.database
APP, APP_PW = NAMES.app_role, "app-password"
# What a migrated app holds: Lucky's migrations table, keys between tables, sequences moved on, rows owned by the
# app's own role (whose password must survive: Lucky and Hasura log in with it).
DATA = f"""
CREATE ROLE {APP} LOGIN PASSWORD '{APP_PW}';
CREATE TABLE migrations (id serial PRIMARY KEY, version bigint NOT NULL UNIQUE);
INSERT INTO migrations (version) VALUES (20240101000000), (20240201000000), (20240301000000);
CREATE TABLE authors (id bigserial PRIMARY KEY, name text NOT NULL UNIQUE);
CREATE TABLE books (id bigserial PRIMARY KEY, author_id bigint NOT NULL REFERENCES authors ON DELETE CASCADE,
  title text NOT NULL, n int GENERATED ALWAYS AS IDENTITY);
ALTER TABLE authors OWNER TO {APP};
ALTER TABLE books OWNER TO {APP};
SELECT setval('authors_id_seq', 41);
INSERT INTO authors (name) SELECT 'author ' || g FROM generate_series(1, 50) g;
INSERT INTO books (author_id, title) SELECT a.id, a.name || ' book ' || b FROM authors a, generate_series(1, 20) b;
"""
FINGERPRINT = """
SELECT (SELECT string_agg(version::text, ',' ORDER BY version) FROM migrations),
       (SELECT count(*) FROM books), (SELECT md5(string_agg(b.id || a.name || b.title || b.n, ',' ORDER BY b.id))
                                      FROM books b JOIN authors a ON a.id = b.author_id),
       (SELECT last_value FROM authors_id_seq), (SELECT last_value FROM books_n_seq),
       (SELECT string_agg(conname || ' ' || pg_get_constraintdef(oid), ',' ORDER BY conname) FROM pg_constraint
        WHERE conrelid = 'books'::regclass AND contype <> 'n'),  -- 18 lists NOT NULL constraints there too
       (SELECT tableowner FROM pg_tables WHERE tablename = 'books')
"""


def sql(pg, query, user=SUPER, password=SUPER_PW, check=True):
    """psql -c query over TCP (a password login) to the container's own address; rows unaligned."""
    host = own_ip(pg)
    return execute(pg, "env", f"PGPASSWORD={password}", "psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1",
                   "-h", host, "-U", user, "-d", DB, "-c", query, check=check)


def functions(project, swarm, script, env):
    """bash: the project's script/functions/{common,swarm,pg_version} sourced for stack `swarm`, then script."""
    prelude = (f'set -euo pipefail; source "{project}/script/functions/common"; SWARM_NAME={swarm}; '
               f'source "{project}/script/functions/swarm"; source "{project}/script/functions/pg_version"; '
               f'POSTGRES_PINNED_IMAGE={PINNED}; ')
    return run(["bash", "-c", prelude + script], check=False, env=env, timeout=600)


@pytest.fixture
def stack(image_mode, default_project, tmp_path):
    """A stack name of this test, its db_data volume (labelled), the superuser's password file; everything the
    upgrade made under the stack's name is removed afterwards."""
    swarm = unique("pgup").replace("-", "_")
    volume = f"{swarm}_db_data"
    docker("volume", "create", *reaper.label_args(), volume)
    (tmp_path / "postgres_password").write_text(f"{SUPER_PW}\n")
    env = dict(os.environ, POSTGRES_USER=SUPER, POSTGRES_DB=DB,
               POSTGRES_PASSWORD_FILE=str(tmp_path / "postgres_password"))
    yield {"name": swarm, "volume": volume, "keep": f"{volume}_pg{PREVIOUS_MAJOR}", "env": env,
           "project": default_project}
    docker("rm", "-f", f"{swarm}_pg_upgrade_old", f"{swarm}_pg_upgrade_new", check=False)
    docker("volume", "rm", "-f", volume, f"{volume}_pg{PREVIOUS_MAJOR}", check=False)


def previous_major_data(stack):
    """Start the previous major on the volume as a project pinning it did, write DATA, stop it cleanly; return the
    fingerprint and the server's version."""
    env = {"POSTGRES_USER": SUPER, "POSTGRES_PASSWORD": SUPER_PW, "POSTGRES_DB": DB}
    with contract(PREVIOUS, env=env, volumes=[(stack["volume"], "/var/lib/postgresql/data", "rw")],
                  wait=pg_ready(SUPER, DB)) as old:
        sql(old, DATA)
        fingerprint = sql(old, FINGERPRINT).stdout
        version = sql(old, "SHOW server_version_num").stdout.strip()
        assert sql(old, "SHOW data_checksums").stdout.strip() == "off"  # 17's initdb default
        old.get_wrapped_container().stop(timeout=60)
    return fingerprint, version


def test_previous_major_data_moves_to_the_pinned_major(stack):
    """Rows, keys, sequences, the migrations table and the app role's password come through dump and restore; the
    old data stays in <stack>_db_data_pg<old>; the pinned image then starts on the volume as the stack mounts it."""
    fingerprint, old_version = previous_major_data(stack)
    assert old_version.startswith(PREVIOUS_MAJOR)
    project, volume, keep = stack["project"], stack["volume"], stack["keep"]

    # Before: the pinned image refuses the old layout (docker-library/postgres's 18 entrypoint), and so does deploy.
    with contract(PINNED, env={"POSTGRES_PASSWORD": "x"}, volumes=[(volume, "/var/lib/postgresql", "rw")]) as new:
        assert new.get_wrapped_container().wait(timeout=60)["StatusCode"] != 0
        assert "there appears to be PostgreSQL data in" in new.get_wrapped_container().logs().decode()
    refused = functions(project, stack["name"], "require_data_major", stack["env"])
    assert refused.returncode == 1
    assert refused.stderr.strip() == (f"✖ the database in {volume} is PostgreSQL {PREVIOUS_MAJOR}, but {PINNED} is "
                                      f"PostgreSQL {MAJOR}: run script/pg_upgrade first (nothing was deployed)")

    found = functions(project, stack["name"], f"volume_pg_data {volume}", stack["env"])
    assert found.stdout.split() == [PREVIOUS_MAJOR, "."], found.stderr
    moved = functions(project, stack["name"], f"pg_move_data {volume} . {keep} {PREVIOUS} {PINNED}", stack["env"])
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert "the same rows in each" in moved.stdout

    after = functions(project, stack["name"], f"volume_pg_data {volume}; volume_pg_data {keep}; require_data_major",
                      stack["env"])
    assert after.returncode == 0, after.stderr
    assert after.stdout.split() == [MAJOR, f"{MAJOR}/docker", PREVIOUS_MAJOR, "."]
    assert docker("ps", "-a", "--quiet", "--filter", f"name={stack['name']}_pg_upgrade").stdout.strip() == ""

    # The pinned image as the stack starts it: the existing data, no new initdb (no password given).
    with contract(PINNED, env={"POSTGRES_USER": SUPER, "POSTGRES_DB": DB},
                  volumes=[(volume, "/var/lib/postgresql", "rw")], wait=pg_ready(SUPER, DB)) as new:
        assert sql(new, FINGERPRINT).stdout == fingerprint
        assert sql(new, "SHOW server_version_num").stdout.startswith(MAJOR)
        assert sql(new, "SHOW data_directory").stdout.strip() == f"/var/lib/postgresql/{MAJOR}/docker"
        # initdb enables data checksums by default from 18 on; the restore went into a fresh initdb.
        assert sql(new, "SHOW data_checksums").stdout.strip() == ("on" if int(MAJOR) >= 18 else "off")
        assert sql(new, "SELECT count(*) FROM books", user=APP, password=APP_PW).stdout.strip() == "1000"
        assert "violates foreign key constraint" in sql(new, "INSERT INTO books (author_id, title) VALUES (999, 'x')",
                                                        check=False).stderr
        assert sql(new, "INSERT INTO authors (name) VALUES ('new') RETURNING id").stdout.strip() == "92"


def test_a_failure_before_the_volume_is_emptied_leaves_it_unchanged(stack):
    """An env file whose POSTGRES_USER is not the superuser the data was made with: the old server's copy cannot be
    read, the move stops in one line saying the volume is unchanged, and it still holds the previous major's data."""
    previous_major_data(stack)
    project, volume, keep = stack["project"], stack["volume"], stack["keep"]
    moved = functions(project, stack["name"], f"pg_move_data {volume} . {keep} {PREVIOUS} {PINNED}",
                      dict(stack["env"], POSTGRES_USER="someone_else"))
    assert moved.returncode == 1
    assert moved.stderr.splitlines()[-1] == f"✖ cannot count the rows in {keep}: {volume} is unchanged", moved.stderr
    both = functions(project, stack["name"], f"volume_pg_data {volume}; volume_pg_data {keep}", stack["env"])
    assert both.stdout.split() == [PREVIOUS_MAJOR, ".", PREVIOUS_MAJOR, "."], both.stderr


# --- the path a user takes: `cruft update` from a template release pinning the previous major -------------------

def pin_previous_major(template):
    """Turn a copy of the work tree's template into a release that pinned the previous major, as one would have
    looked: the pins one major back, the hook's floor with them, the volume where images before 18 keep data."""
    pins = json.loads((template / "cookiecutter.json").read_text())
    pins["_postgres_version"] = PINS["_postgres_previous_version"]
    pins["_postgres_previous_version"] = f"{int(PREVIOUS_MAJOR) - 1}.0"
    (template / "cookiecutter.json").write_text(json.dumps(pins, indent=2))
    hook = template / "hooks/pre_gen_project.py"
    hook.write_text(hook.read_text().replace(f'split(".")[0]) >= {MAJOR},', f'split(".")[0]) >= {PREVIOUS_MAJOR},'))
    compose = template / "{{cookiecutter.project_name}}/Docker/docker-compose.yml"
    text = compose.read_text()
    assert "      - db_data:/var/lib/postgresql\n" in text
    compose.write_text(text.replace("      - db_data:/var/lib/postgresql\n", "      - db_data:/var/lib/postgresql/data\n"))


@pytest.fixture(scope="module")
def updated(tmp_path_factory):
    """A project rendered from a template commit A pinning the previous major, committed, then `cruft update`d to
    the work tree's template (commit B)."""
    base = tmp_path_factory.mktemp("pg-major")
    template = base / "template"
    copy_template(template)
    pin_previous_major(template)
    git(template, "init", "-q", "-b", "main")
    git(template, "add", "-A")
    git(template, "commit", "-qm", "A: pins the previous PostgreSQL major")
    project = bake(base / "out", template=template)
    old_compose = yaml.safe_load((project / "Docker/docker-compose.yml").read_text())["services"]["postgres"]
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "generated")
    git(template, "rm", "-rq", ".")
    for part in TEMPLATE_PARTS:  # what git ignores stays after `git rm` (the project's .gitignore has /docs/)
        if (template / part).is_dir():
            shutil.rmtree(template / part)
    copy_template(template)
    git(template, "add", "-A")
    git(template, "commit", "-qm", "B: the work tree's template")
    result = cruft("update", project)
    assert result.returncode == 0, result.stdout + result.stderr
    return {"project": project, "old": old_compose,
            "new": yaml.safe_load((project / "Docker/docker-compose.yml").read_text())["services"]["postgres"]}


def test_cruft_update_to_the_new_major_then_deploy_refuses_and_pg_upgrade_succeeds(updated, stack):
    """From a project of the previous major's template release: its data in the volume where that release mounted
    it; after `cruft update` the project pins the new major and mounts the volume at /var/lib/postgresql, its
    deploy check refuses the old data, its pg_upgrade core moves it, and the new image serves it as mounted."""
    project = updated["project"]
    assert updated["old"]["image"] == f"postgres:{PINS['_postgres_previous_version']}"
    assert updated["old"]["volumes"] == ["db_data:/var/lib/postgresql/data"]
    assert updated["new"]["image"] == f"postgres:{PINS['_postgres_version']}"
    assert updated["new"]["volumes"] == ["db_data:/var/lib/postgresql"]
    assert (project / "script/pg_upgrade").is_file()
    fingerprint, _ = previous_major_data(stack)
    volume, keep = stack["volume"], stack["keep"]
    refused = functions(project, stack["name"], "require_data_major", stack["env"])
    assert refused.returncode == 1 and "run script/pg_upgrade first" in refused.stderr
    moved = functions(project, stack["name"], f"pg_move_data {volume} . {keep} {PREVIOUS} {PINNED}", stack["env"])
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert functions(project, stack["name"], "require_data_major", stack["env"]).returncode == 0
    mount = updated["new"]["volumes"][0].split(":", 1)[1]
    with contract(PINNED, env={"POSTGRES_USER": SUPER, "POSTGRES_DB": DB}, volumes=[(volume, mount, "rw")],
                  wait=pg_ready(SUPER, DB)) as new:
        assert sql(new, FINGERPRINT).stdout == fingerprint
