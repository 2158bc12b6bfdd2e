"""script/pg_upgrade's help and refusals, and script/deploy's refusal to start the pinned PostgreSQL on data of
another major, against a fake `docker` that plays a one-node swarm whose database volume holds a given major (the
real moves run on real PostgreSQL in tests/contracts/test_pg_upgrade.py). Every refusal is one line and changes
nothing: the fake's log shows no call that would."""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from harness.certs import make_ca
from harness.docker import HEALTHY_MANAGER, fake_docker
from harness.proc import DEVNULL, PIPE, default_signals, popen, run
from harness.wait import until
from kit.kit import PINS

MAJOR = PINS["_postgres_version"].split(".")[0]
PREVIOUS = PINS["_postgres_previous_version"]
PREVIOUS_MAJOR = PREVIOUS.split(".")[0]
# Its `version` and `info` answer script/deploy's preflight (script/doctor --for-deploy) as a healthy manager.
# FAKE_DATA: what volume_pg_data finds in lhd_app_db_data ("17 .", "18 18/docker"); unset: the volume is not on
# this node. FAKE_POSTGRES: the image the stack's postgres service runs. FAKE_KEPT: the kept old volume exists.
FAKE_SWARM = """
echo "docker $*" >> "$FAKE_LOG"
""" + HEALTHY_MANAGER + """case "$1 $2" in
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
    _, cert, key = make_ca(tmp_path / "certs", "example.com")  # what script/deploy's preflight checks
    shutil.copy(cert, project / "etc/certs/origin.crt")
    shutil.copy(key, project / "etc/certs/origin.key")
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


# The whole --yes run against a fake one-node swarm whose servers answer like PostgreSQL: FAKE_DIR/data holds what
# volume_pg_data finds (the new server's start makes it the pinned major's), FAKE_DIR/kept whether the kept volume
# exists. script/deploy is replaced by a recorder that also checks the deploy lock is free (pg_upgrade hands it on).
FLOW = """
echo "docker $*" >> "$FAKE_LOG"
echo "$(awk '{ print $6 }' /proc/$$/stat) $(echo "$*" | tr '\\n' ' ')" >> "$FAKE_DIR/sessions"
case "$1 $2" in
  "node ls") echo node1 ;;
  "stack ls") echo lhd_app ;;
  "volume inspect")
    case "$3" in
      *_db_data) exit 0 ;;
      *_db_data_pg*) [ -e "$FAKE_DIR/kept" ] ;;
    esac ;;
  "volume create") touch "$FAKE_DIR/kept" ;;
  "service inspect")
    case "$3" in
      *_postgres) echo "postgres:$OLD_PIN" ;;
      *) echo registry.gitlab.com/my-group/lhd-app/lucky:aaaa1111 ;;
    esac ;;
  "service ls")
    echo "ID NAME MODE REPLICAS IMAGE PORTS"
    echo "a1 lhd_app_lucky replicated 2/2 registry.gitlab.com/my-group/lhd-app/lucky:aaaa1111"
    echo "a2 lhd_app_hasura replicated 1/1 registry.gitlab.com/my-group/lhd-app/hasura:aaaa1111"
    echo "a3 lhd_app_backup replicated 1/1 postgres:$OLD_PIN"
    echo "a4 lhd_app_postgres replicated 1/1 postgres:$OLD_PIN"
    echo "a5 lhd_app_traefik replicated 1/1 traefik:v3"
    echo "a6 lhd_app_monitoring_prometheus replicated 1/1 prom/prometheus" ;;
  "ps -aq") [ ! -e "$FAKE_DIR/holder" ] || echo c0ffee ;;
  "rm -f") case "$*" in *c0ffee*) rm -f "$FAKE_DIR/holder" ;; esac ;;
  "volume rm") [ ! -e "$FAKE_DIR/holder" ] && rm -f "$FAKE_DIR/kept" ;;
  "run --rm")
    case "$*" in
      *"cp -a"*)
        [ -z "${FAKE_COPY_STOPS:-}" ] || { touch "$FAKE_DIR/holder"; exit 130; }
        [ -z "${FAKE_COPY_WAITS:-}" ] || { touch "$FAKE_DIR/copying"; i=0
          until [ -e "$FAKE_DIR/go" ] || [ $i -ge 200 ]; do sleep 0.1; i=$((i + 1)); done; echo "copy done" >> "$FAKE_LOG"; } ;;
      *PG_VERSION*) cat "$FAKE_DIR/data" ;;
      *pg_backup*) echo lhd_app_production-20261202T000000Z-before-pg-upgrade.dump ;;
    esac ;;
  "run -d") case "$*" in *"$NEW_IMAGE") echo "$NEW_DATA" > "$FAKE_DIR/data" ;; esac ;;
  exec*)
    case "$*" in
      *pg_dumpall*) echo "CREATE ROLE lhd_app;" ;;
      *"-i "*psql*) cat > /dev/null; echo 'ERROR:  role "lhd_app" already exists' >&2 ;;
      *count*) echo "public.migrations 3"; echo "public.notes 2" ;;
      *server_version*) echo "18.6" ;;
    esac ;;
esac
"""


def upgrade_env(default_project, tmp_path, deploy_status=0, **fake):
    """(project, environment) for script/pg_upgrade --yes against FLOW (and the fake's settings), script/deploy a
    recorder exiting deploy_status."""
    project = Path(shutil.copytree(default_project, tmp_path / "project"))
    env_file = tmp_path / "prod.env"
    run([project / "script/bootstrap"], env={**os.environ, "LHD_ENV_FILE": str(env_file)})
    (project / "script/deploy").write_text('#!/usr/bin/env bash\nflock --nonblock "$(dirname "$0")/../.deploy/lock" '
                                           f'echo "deploy $* (lock free)" >> "$FAKE_LOG"\nexit {deploy_status}\n')
    (tmp_path / "data").write_text(f"{PREVIOUS_MAJOR} .\n")
    log = tmp_path / "docker.log"
    env = {**os.environ, **fake_docker(tmp_path, FLOW), "LHD_ENV_FILE": str(env_file), "FAKE_LOG": str(log),
           "FAKE_DIR": str(tmp_path), "OLD_PIN": PREVIOUS, "NEW_IMAGE": f"postgres:{PINS['_postgres_version']}",
           "NEW_DATA": f"{MAJOR} {MAJOR}/docker", **fake}
    return project, env


def whole_run(default_project, tmp_path, deploy_status=0, **fake):
    """script/pg_upgrade --yes against FLOW; (result, calls)."""
    project, env = upgrade_env(default_project, tmp_path, deploy_status, **fake)
    result = run([project / "script/pg_upgrade", "--yes"], env=env, check=False, stdin=subprocess.DEVNULL, timeout=60)
    return result, (tmp_path / "docker.log").read_text().splitlines()


def test_the_whole_run_stops_moves_and_deploys_in_order(default_project, tmp_path):
    """--yes: backup by the old image, the apps, backup and database (only those, at 0) stopped, the data moved
    from the previous major to the pinned one, script/deploy --first of the running release (every service is at 0
    replicas, the database must start before the role check and the migrations) with the lock handed on; the
    log of docker calls is in that order."""
    result, calls = whole_run(default_project, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr

    def at(fragment):
        return next(i for i, c in enumerate(calls) if fragment in c)

    assert f"postgres:{PREVIOUS} now before-pg-upgrade" in calls[at("pg_backup")]
    assert calls[at("service scale")] == ("docker service scale --detach=false lhd_app_lucky=0 lhd_app_hasura=0 "
                                          "lhd_app_backup=0 lhd_app_postgres=0")
    assert at("pg_backup") < at("service scale") < at("volume create lhd_app_db_data_pg") < at("find /v") \
        < at("pg_dumpall") < at("deploy --first --yes aaaa1111 (lock free)")
    assert "2 tables, the same rows in each, now on PostgreSQL 18.6" in result.stdout
    assert result.stdout.splitlines()[-2:] == [
        f"→ The PostgreSQL {PREVIOUS_MAJOR} data stays in lhd_app_db_data_pg{PREVIOUS_MAJOR}: remove it (docker "
        f"volume rm lhd_app_db_data_pg{PREVIOUS_MAJOR}) once you no longer need it", "✔ All done."]


def test_a_failed_deploy_after_the_move_names_the_deploy_not_the_data(default_project, tmp_path):
    """The data moved, then script/deploy failed: one line saying the volume is the pinned major now and which deploy
    to run; nothing calls the moved data incomplete, nothing scales the old services back."""
    result, calls = whole_run(default_project, tmp_path, deploy_status=1)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"✖ lhd_app_db_data is PostgreSQL {MAJOR} now, but the deploy of aaaa1111 failed: fix what it says, then run "
        "script/deploy --first aaaa1111"], result.stderr
    assert [c for c in calls if "service scale" in c] == [
        "docker service scale --detach=false lhd_app_lucky=0 lhd_app_hasura=0 lhd_app_backup=0 lhd_app_postgres=0"]


def test_a_copy_stopped_midway_is_removed_with_the_container_that_holds_it(default_project, tmp_path):
    """The copy stops (an interrupt) and leaves its container behind, created or still being removed, so the kept
    volume is in use: the container is removed first, then the partial copy, and the old services start again; no
    "could not remove" warning, no copy left for a later run to take for an earlier upgrade's old data."""
    result, calls = whole_run(default_project, tmp_path, FAKE_COPY_STOPS="1")
    assert result.returncode == 1
    assert "! the upgrade stopped before lhd_app_db_data was changed" in result.stderr, result.stderr
    assert "could not remove" not in result.stderr, result.stderr
    assert not (tmp_path / "kept").exists() and not (tmp_path / "holder").exists()
    kept = f"lhd_app_db_data_pg{PREVIOUS_MAJOR}"
    assert calls.index("docker rm -f c0ffee") < calls.index(f"docker volume rm {kept}")
    assert calls[-1].startswith("docker service scale --detach=false lhd_app_lucky=2 lhd_app_hasura=1")


def test_the_copy_runs_out_of_reach_of_the_operators_interrupt(default_project, tmp_path):
    """The copy's docker calls (the kept volume's creation, the copy, the old server on it) run in a session of
    their own: an operator's Ctrl-C (SIGINT to the foreground process group) reaches the script, whose trap cleans up
    once the call ended, never a docker CLI mid-request, whose daemon would finish it after the cleanup (a copy
    container created then would create the removed volume again). Every other call runs in the script's session."""
    result, calls = whole_run(default_project, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    own = os.getsid(0)  # the script runs in this process's session
    sessions = [line.split(" ", 1) for line in (tmp_path / "sessions").read_text().splitlines()]
    apart = [call.strip() for sid, call in sessions if int(sid) != own]
    assert apart == [f"volume create lhd_app_db_data_pg{PREVIOUS_MAJOR}",
                     next(c.strip() for _, c in sessions if "cp -a" in c),
                     next(c.strip() for _, c in sessions if c.startswith("run -d --name lhd_app_pg_upgrade_old"))], apart


@pytest.mark.parametrize(("signal_name", "status"), [("INT", 130), ("TERM", 143), ("HUP", 129)])
def test_a_signal_during_the_copy_lets_it_finish_then_puts_the_old_database_back(default_project, tmp_path,
                                                                                  signal_name, status):
    """Ctrl-C, `kill`, or the ssh session dropped while the copy runs: the copy ends first, then the script removes
    it and starts the old services again, with its one line and the signal's status (docs/postgres-upgrades.md,
    "When the upgrade fails"). The script starts with every signal at its default, as from a terminal."""
    project, env = upgrade_env(default_project, tmp_path, FAKE_COPY_WAITS="1")
    with popen([project / "script/pg_upgrade", "--yes"], env=env, stdin=DEVNULL, stdout=PIPE, stderr=PIPE, text=True,
               preexec_fn=default_signals) as script:
        until(lambda: (tmp_path / "copying").exists(), 30, "the copy to start", pause=0.1)
        script.send_signal(getattr(signal, f"SIG{signal_name}"))
        time.sleep(0.5)  # the script has the signal now, while the copy still runs
        (tmp_path / "go").touch()
        _, stderr = script.communicate(timeout=60)
    calls = (tmp_path / "docker.log").read_text().splitlines()
    assert script.returncode == status, stderr
    assert stderr.splitlines()[-1].endswith(f"starting PostgreSQL {PREVIOUS_MAJOR} and the apps again"), stderr
    kept = f"docker volume rm lhd_app_db_data_pg{PREVIOUS_MAJOR}"
    assert calls.index("copy done") < calls.index(kept), calls
    assert not (tmp_path / "kept").exists()
    assert "deploy --first" not in " ".join(calls)
    assert calls[-1].startswith("docker service scale --detach=false lhd_app_lucky=2 lhd_app_hasura=1"), calls
