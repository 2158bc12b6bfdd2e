"""script/pg_upgrade, whole, on the local swarm: the session's deployment started afresh as a project of the template
release pinning the previous PostgreSQL major (postgres:17.9, the kit's Debian trixie build, its volume at
/var/lib/postgresql/data), rows written through the app, then the project's files as `cruft update` to the pinned
major leaves them (harness/swarm.py `previous_major_files`). script/deploy refuses the old data; script/pg_upgrade
stops the stack's database service, moves the data, and redeploys.

The module costs one fresh start on the previous major (`Deployment.reset`), shared by its tests; it leaves the
stack serving SHA1 on the pinned major (the upgraded database, or afresh when a test left it elsewhere).
"""

import os
import re
import signal
import subprocess

import pytest

from harness.docker import docker
from harness.names import DEFAULT as NAMES
from harness.proc import DEVNULL, PIPE, default_signals, popen
from harness.swarm import SHA1, previous_major_files
from harness.wait import until
from kit.kit import PINS

PINNED, PREVIOUS = PINS["_postgres_version"], PINS["_postgres_previous_version"]
MAJOR, PREVIOUS_MAJOR = PINNED.split(".")[0], PREVIOUS.split(".")[0]
VOLUME = NAMES.service("db_data")
KEPT = f"{VOLUME}_pg{PREVIOUS_MAJOR}"
PUBLISHED = ["upgrade-published-a", "upgrade-published-b"]
# What must come through: the migrations, every note (with its id and timestamps), the notes' id sequence, the
# table's owner (the app's role, which Lucky and Hasura log in as).
STATE = """
SELECT (SELECT string_agg(version::text, ',' ORDER BY version) FROM migrations),
       (SELECT count(*) || ' ' || md5(string_agg(id || ':' || title || ':' || body || ':' || published || ':'
                                                 || created_at || ':' || updated_at, ',' ORDER BY id)) FROM notes),
       pg_sequence_last_value(pg_get_serial_sequence('notes', 'id')::regclass),
       (SELECT tableowner FROM pg_tables WHERE tablename = 'notes')
"""
REFUSED = (f"✖ the database in {VOLUME} is PostgreSQL {PREVIOUS_MAJOR}, but postgres:{PINNED} is PostgreSQL "
           f"{MAJOR}: run script/pg_upgrade first (nothing was deployed)\n")
SAFETY = re.compile(r"Backed up the current database first: (\S+\.dump)")


def state(live):
    return until(lambda: live.sql(STATE), 120, "postgres to answer the state query")


def served(live):
    """(titles Hasura serves a user, titles Lucky's /api/notes serves), each sorted."""
    data = live.routed_graphql(user=True, timeout=60)
    assert isinstance(data, dict), data
    lucky = live.routed_get("api", "/api/notes", timeout=60)
    lucky.raise_for_status()
    return sorted(n["title"] for n in data["notes"]), sorted(n["title"] for n in lucky.json())


def volume_major(volume):
    """The PG_VERSION of the data in volume, wherever the image of its major keeps it ("" when none)."""
    return docker("run", "--rm", "--network", "none", "-v", f"{volume}:/v:ro", "--entrypoint", "sh",
                  f"postgres:{PINNED}", "-c", "cat /v/PG_VERSION /v/*/docker/PG_VERSION 2>/dev/null || true"
                  ).stdout.strip()


def remove_kept():
    """Remove the kept volume, and first any container holding it (one an interrupted copy left behind would keep
    `volume rm --force` from removing it, and every later module from starting afresh)."""
    holders = docker("ps", "-aq", "--filter", f"volume={KEPT}").stdout.split()
    if holders:
        docker("rm", "-f", *holders, check=False)
    docker("volume", "rm", "--force", KEPT, check=False)


def on_previous(live):
    """True when the stack serves SHA1 with every replica, its database service on the previous major."""
    return live.stack_deployed() and live.postgres_version() == PREVIOUS and live.settled(SHA1)


@pytest.fixture(scope="module")
def previous_files(deployment, tmp_path_factory):
    """The project's files as the previous major's template release rendered them; at the module's end the stack
    serves SHA1 on the pinned major (started afresh when it does not) with no note left."""
    files = previous_major_files(tmp_path_factory.mktemp("pg-previous"))
    assert {"Docker/docker-compose.yml", "script/functions/pg_version"} <= set(files), sorted(files)
    yield files
    remove_kept()
    if not (deployment.stack_deployed() and deployment.postgres_version() == PINNED and deployment.settled(SHA1)):
        deployment.reset()
    until(lambda: deployment.sql("DELETE FROM notes") is not None, 120, "postgres to delete the module's notes")


@pytest.fixture
def upgradable(deployment, previous_files):
    """The deployment serving SHA1 on the previous major, started afresh from the project as that release rendered
    it, with notes written by Lucky's seed task and by SQL (some deleted, so the id sequence runs ahead of the
    count); yielded with the project's files back as the work tree's template renders them (the pinned major), as
    `cruft update` leaves them. Afterwards the kept volume is removed."""
    project = deployment.project
    current = {name: (project / name).read_bytes() for name in previous_files}
    if not on_previous(deployment):
        try:
            for name, text in previous_files.items():
                (project / name).write_bytes(text)
            deployment.reset()
        finally:
            for name, text in current.items():
                (project / name).write_bytes(text)
        deployment.container_exec("lucky", "with_secrets", "lucky_tasks", "db.seed.sample_data")
        deployment.sql("INSERT INTO notes (title, body, published) SELECT 'upgrade-' || n, repeat(md5(n::text), 4), "
                       "false FROM generate_series(1, 300) AS n; DELETE FROM notes WHERE title LIKE 'upgrade-1%'; "
                       "INSERT INTO notes (title, body, published) VALUES "
                       + ", ".join(f"('{t}', 'x', true)" for t in PUBLISHED))
    assert volume_major(VOLUME) == PREVIOUS_MAJOR
    yield deployment
    remove_kept()


def unchanged(live, before, log):
    """The stack as it was: the previous major serving SHA1 with every replica, the same state, the same release
    log, no kept volume."""
    until(lambda: live.settled(SHA1), 120, lambda: f"the stack to serve {SHA1}:\n{live.service_table()}")
    assert live.postgres_version() == PREVIOUS
    assert volume_major(VOLUME) == PREVIOUS_MAJOR
    assert state(live) == before
    assert (live.project / "var/releases.log").read_text() == log
    assert docker("volume", "inspect", KEPT, check=False).returncode != 0, f"{KEPT} exists"


def test_an_interrupted_upgrade_starts_the_old_database_again(upgradable):
    """script/pg_upgrade --yes interrupted (Ctrl-C: SIGINT to its process group) once it has stopped the stack and
    started copying the volume: it starts the previous major and the apps again on the unchanged volume, removes
    its partial copy (a later run would take it for an earlier upgrade's old data), and the stack serves as before."""
    live = upgradable
    before, titles, log = state(live), served(live), (live.project / "var/releases.log").read_text()
    argv = [live.project / "script/pg_upgrade", "--yes"]
    # SIGINT at its default, as in an operator's terminal, whatever this run inherited (harness/proc.py).
    with popen(argv, cwd=live.project, env=live.env(), text=True, stdin=DEVNULL, stdout=PIPE, stderr=PIPE,
               start_new_session=True, preexec_fn=default_signals) as upgrade:
        def copying():
            if upgrade.poll() is not None:
                raise AssertionError(f"script/pg_upgrade ended ({upgrade.returncode}) before copying")
            return docker("volume", "inspect", KEPT, check=False).returncode == 0
        until(copying, 300, f"script/pg_upgrade to create {KEPT}", pause=0.2)
        os.killpg(upgrade.pid, signal.SIGINT)
        try:
            out, err = upgrade.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            raise AssertionError("script/pg_upgrade did not end within 600 s of the interrupt") from None
    # 130 from its INT trap; 1 when the interrupted command's own failure stopped it first.
    assert upgrade.returncode in (1, 130), out + err
    assert f"! the upgrade stopped before {VOLUME} was changed" in err, err
    assert "Emptying" not in out, out
    try:
        unchanged(live, before, log)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nscript/pg_upgrade said:\n{out}{err}") from None
    assert served(live) == titles


def test_pg_upgrade_moves_the_stack_to_the_pinned_major(upgradable):
    """After the update to the pinned major: script/deploy refuses in one line naming script/pg_upgrade, and
    script/pg_upgrade without --yes and without a terminal stops; neither changes the stack. script/pg_upgrade
    --yes moves it: the same rows, ids, sequence and migrations, served by Lucky and Hasura on the pinned major;
    the safety dump holds the rows; the old data stays in <volume>_pg<old>. A second run has nothing to do."""
    live = upgradable
    before, titles, log = state(live), served(live), (live.project / "var/releases.log").read_text()
    assert all(t in titles[1] for t in PUBLISHED), titles

    refused = live.script("deploy", SHA1, check=False)
    assert (refused.returncode, refused.stderr) == (1, REFUSED), refused.stdout + refused.stderr
    unchanged(live, before, log)

    asked = live.script("pg_upgrade", check=False)
    assert asked.returncode == 1, asked.stdout + asked.stderr
    assert asked.stderr.splitlines()[-1] == (
        f"✖ Stop {NAMES.swarm}'s database and apps, and move {VOLUME} to PostgreSQL {MAJOR}?: refusing to go on "
        "without --yes (there is no terminal to ask)"), asked.stderr
    unchanged(live, before, log)

    upgraded = live.script("pg_upgrade", "--yes", check=False)
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert "✔ All done." in upgraded.stdout
    until(lambda: live.settled(SHA1), 120, lambda: f"the stack to serve {SHA1}:\n{live.service_table()}")
    assert live.postgres_version() == PINNED
    assert live.sql("SHOW server_version_num").startswith(MAJOR)
    assert volume_major(VOLUME) == MAJOR
    assert state(live) == before
    assert served(live) == titles
    last = int(before.split("|")[2])
    added = live.sql("INSERT INTO notes (title) VALUES ('after the upgrade') RETURNING id")
    assert added.splitlines()[0] == str(last + 1), added

    safety = SAFETY.search(upgraded.stdout).group(1)
    assert "before-pg-upgrade" in safety and safety in live.backups()[0]
    assert all(t in live.dump_sql(safety, "notes") for t in PUBLISHED)
    assert volume_major(KEPT) == PREVIOUS_MAJOR
    assert f"docker volume rm {KEPT}" in upgraded.stdout

    again = live.script("pg_upgrade", "--yes")
    assert again.stdout.splitlines() == [
        f"→ The database in {VOLUME} is PostgreSQL {MAJOR} already: nothing to do", "✔ All done."], again.stdout
    assert again.stderr == ""
