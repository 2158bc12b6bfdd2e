"""script/pg_upgrade's help and refusals, and script/deploy's refusal to start the pinned PostgreSQL on data of
another major, against a fake `docker` that plays a one-node swarm whose database volume holds a given major (the
real moves run on real PostgreSQL in tests/contracts/test_pg_upgrade.py). Every refusal is one line and changes
nothing: the fake's log shows no call that would."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.docker import fake_docker
from harness.proc import run
from kit.kit import PINS

MAJOR = PINS["_postgres_version"].split(".")[0]
PREVIOUS = PINS["_postgres_previous_version"]
PREVIOUS_MAJOR = PREVIOUS.split(".")[0]
# FAKE_DATA: what volume_pg_data finds in lhd_app_db_data ("17 .", "18 18/docker"); unset: the volume is not on
# this node. FAKE_POSTGRES: the image the stack's postgres service runs. FAKE_KEPT: the kept old volume exists.
FAKE_SWARM = """
echo "docker $*" >> "$FAKE_LOG"
case "$1 $2" in
  "node ls") echo node1 ;;
  "stack ls") echo lhd_app ;;
  "volume inspect")
    case "$3" in
      *_db_data) [ -n "${FAKE_DATA:-}" ] ;;
      *_db_data_pg*) [ -n "${FAKE_KEPT:-}" ] ;;
      *) exit 0 ;;
    esac ;;
  "service inspect")
    case "$3" in
      *_postgres) [ -n "${FAKE_POSTGRES:-}" ] && echo "$FAKE_POSTGRES" ;;
      *) echo registry.gitlab.com/my-group/lhd-app/lucky:aaaa1111 ;;
    esac ;;
  "image inspect") echo "Error: No such image: $3" >&2; exit 1 ;;
  "run --rm")
    case "$*" in
      *PG_VERSION*) [ -z "${FAKE_DATA:-}" ] || echo "$FAKE_DATA" ;;
      *pg_backup*) echo lhd_app_production-20261202T000000Z-before-pg-upgrade.dump ;;
    esac ;;
esac
"""
# Calls that change something; a refusal makes none of them.
CHANGES = ("volume create", "service scale", "stack deploy", "run -d", "pg_backup")


@pytest.fixture
def swarm(default_project, tmp_path):
    """A private copy of the default project with its env file (script/bootstrap), and the fake swarm."""
    project = Path(shutil.copytree(default_project, tmp_path / "project"))
    env_file = tmp_path / "prod.env"
    run([project / "script/bootstrap"], env={**os.environ, "LHD_ENV_FILE": str(env_file)})
    log = tmp_path / "docker.log"
    env = {**os.environ, **fake_docker(tmp_path, FAKE_SWARM), "LHD_ENV_FILE": str(env_file), "FAKE_LOG": str(log)}

    def call(script, *args, **fake):
        log.write_text("")
        result = run([project / "script" / script, *args], env={**env, **fake}, check=False,
                     stdin=subprocess.DEVNULL, timeout=60)
        result.calls = log.read_text().splitlines()
        return result

    return call


def changed(result):
    return [c for c in result.calls if any(word in c for word in CHANGES)]


@pytest.mark.parametrize("fake", [{"FAKE_DATA": f"{PREVIOUS_MAJOR} ."},
                                  {"FAKE_POSTGRES": f"postgres:{PREVIOUS}@sha256:{'1' * 64}"}],
                         ids=["volume-on-this-node", "volume-elsewhere"])
def test_deploy_refuses_data_of_the_previous_major(swarm, fake):
    """Data of the previous major, read from the volume here or from the image the running service has: one line
    naming script/pg_upgrade, and nothing deployed."""
    result = swarm("deploy", "bbbb2222", **fake)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"✖ the database in lhd_app_db_data is PostgreSQL {PREVIOUS_MAJOR}, but postgres:{PINS['_postgres_version']} "
        f"is PostgreSQL {MAJOR}: run script/pg_upgrade first (nothing was deployed)"]
    assert changed(result) == []


@pytest.mark.parametrize("fake", [{"FAKE_DATA": f"{MAJOR} {MAJOR}/docker"}, {},
                                  {"FAKE_POSTGRES": f"postgres:{PINS['_postgres_version']}"}],
                         ids=["pinned-major", "no-data-yet", "service-on-the-pinned-major"])
def test_deploy_goes_on_when_the_data_is_the_pinned_major(swarm, fake):
    """The pinned major's data, or none yet: the check passes and the deploy goes on to the stack."""
    result = swarm("deploy", "bbbb2222", **fake)
    assert "script/pg_upgrade" not in result.stderr
    assert any("PG_VERSION" in c for c in result.calls) == ("FAKE_DATA" in fake)
    assert any(c.startswith("docker run") and "migrate" in c or "stack" in c for c in result.calls), result.calls


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_explains_without_docker(swarm, flag):
    """The help: usage line, what it does, the method and why, options, examples; no Docker call."""
    result = swarm("pg_upgrade", flag)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "usage: script/pg_upgrade [--yes]"
    assert f"PostgreSQL {PREVIOUS_MAJOR} (the previous major)" in result.stdout
    assert "Dump and restore, not pg_upgrade" in result.stdout and "Examples:" in result.stdout
    assert result.calls == []


def test_an_unknown_option_is_refused_with_the_usage_line(swarm):
    result = swarm("pg_upgrade", "--force")
    assert (result.returncode, result.stderr) == (2, "usage: script/pg_upgrade [--yes]\n")
    assert result.calls == []


@pytest.mark.parametrize(("fake", "message"), [
    ({"FAKE_DATA": "16 ."}, f"✖ the database in lhd_app_db_data is PostgreSQL 16, and script/pg_upgrade moves "
                            f"PostgreSQL {PREVIOUS_MAJOR} only (to {MAJOR}): go through a release of the template that "
                            "pins the major after 16 first; nothing was changed"),
    ({}, "✖ the volume lhd_app_db_data is not on this node: run script/pg_upgrade on the node labelled "
         "lhd_app.db=true"),
    ({"FAKE_DATA": f"{PREVIOUS_MAJOR} .", "FAKE_KEPT": "1"},
     f"✖ the volume lhd_app_db_data_pg{PREVIOUS_MAJOR} exists already (an earlier upgrade's old data?): remove it "
     f"(docker volume rm lhd_app_db_data_pg{PREVIOUS_MAJOR}) once you no longer need it, then run again; nothing "
     "was changed"),
], ids=["not-the-previous-major", "volume-elsewhere", "kept-volume-exists"])
def test_pg_upgrade_refuses_in_one_line(swarm, fake, message):
    result = swarm("pg_upgrade", "--yes", **fake)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [message]
    assert changed(result) == []


def test_pg_upgrade_on_the_pinned_major_has_nothing_to_do(swarm):
    result = swarm("pg_upgrade", FAKE_DATA=f"{MAJOR} {MAJOR}/docker")
    assert result.returncode == 0, result.stderr
    assert f"is PostgreSQL {MAJOR} already: nothing to do" in result.stdout
    assert changed(result) == []


def test_without_a_terminal_it_backs_up_then_asks_and_stops(swarm):
    """No --yes and no terminal: the safety backup is taken (by the old major's own image, whose dump restores into
    either major), then it refuses to go on, before stopping anything."""
    result = swarm("pg_upgrade", FAKE_DATA=f"{PREVIOUS_MAJOR} .", FAKE_POSTGRES=f"postgres:{PREVIOUS}")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].endswith("refusing to go on without --yes (there is no terminal to ask)")
    backups = [c for c in result.calls if "pg_backup" in c]
    assert len(backups) == 1 and f"postgres:{PREVIOUS} now before-pg-upgrade" in backups[0], result.calls
    assert [c for c in changed(result) if c not in backups] == []
