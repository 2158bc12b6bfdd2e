"""script/deploy and script/rollback run the images by digest when one is known (review finding M3): a fake
`docker` plays a one-node swarm (it records every call and the LUCKY_/HASURA_ variables `stack deploy` sees,
which docker-compose.prod.yml reads as image: REGISTRY/lucky:${LUCKY_TAG}${LUCKY_DIGEST}; the lint tier's
tests/lint/test_deploy_digests.py merges them with the real `docker stack config`), so the tests read the
image references swarm and the migrations would get, and the release log (var/releases.log) each run appends to.
The same fake plays swarm's answers after a failed update, so the restore that follows is tried too."""

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from harness.certs import make_ca
from harness.docker import HEALTHY_MANAGER, fake_docker
from harness.proc import default_signals, popen, run
from harness.wait import until

NEW, OLD = "bbbb2222", "aaaa1111"
LUCKY, HASURA, LOCAL = "1" * 64, "2" * 64, "3" * 64

# A one-node swarm as script/deploy (its preflight, script/doctor --for-deploy, too) and script/rollback see it.
# FAKE_STATE holds the image the services are
# specified to run ({{.Spec.TaskTemplate.ContainerSpec.Image}}); `stack deploy` sets it from the variables the
# compose files read; `image inspect` answers with FAKE_REPO_DIGESTS (JSON strings), or "no such image".
FAKE_SWARM = """
echo "docker $*" >> "$FAKE_LOG"
""" + HEALTHY_MANAGER + """case "$1" in
  node) echo node1 ;;
  stack)
    case "$2" in
      ls) echo lhd_app ;;
      deploy)
        # FAKE_BROKEN: a tag whose update fails its health checks; swarm rolls the service back.
        # Its stopped task says why in FAKE_TASK_ERROR (`service ps --filter desired-state=shutdown`).
        if [ -n "${FAKE_BROKEN:-}" ] && [ "${LUCKY_TAG:-}" = "$FAKE_BROKEN" ]; then
          echo rollback_completed > "$FAKE_STATE.update"
          printf '%s|%s\\n' "$REGISTRY_IMAGE/lucky:$LUCKY_TAG$LUCKY_DIGEST" "${FAKE_TASK_ERROR:-}" > "$FAKE_STATE.failed"
          exit 0
        fi
        # FAKE_CONFLICTS: a file holding how many of the deploys after it swarm answers "update out of sequence".
        if [ -s "${FAKE_CONFLICTS:-/nonexistent}" ] && [ "$(cat "$FAKE_CONFLICTS")" -gt 0 ]; then
          echo $(($(cat "$FAKE_CONFLICTS") - 1)) > "$FAKE_CONFLICTS"
          printf '%s %s\\n' "failed to update service lhd_app_lucky: Error response from daemon: rpc error:" \
            "code = Unknown desc = update out of sequence" >&2
          exit 1
        fi
        rm -f "$FAKE_STATE.update"
        echo "env LUCKY_TAG=$LUCKY_TAG LUCKY_DIGEST=$LUCKY_DIGEST" \
          "HASURA_TAG=$HASURA_TAG HASURA_DIGEST=$HASURA_DIGEST" >> "$FAKE_LOG"
        # The image: lines of docker-compose.prod.yml, as compose interpolates them.
        printf 'lucky %s\nhasura %s\n' "$REGISTRY_IMAGE/lucky:$LUCKY_TAG$LUCKY_DIGEST" \
          "$REGISTRY_IMAGE/hasura:$HASURA_TAG$HASURA_DIGEST" > "$FAKE_CONFIG"
        echo "$REGISTRY_IMAGE/lucky:$LUCKY_TAG$LUCKY_DIGEST" > "$FAKE_STATE"
        ;;
    esac ;;
  service)
    case "$2 $*" in
      inspect*ContainerSpec.Image*) cat "$FAKE_STATE" ;;
      inspect*UpdateStatus*) cat "$FAKE_STATE.update" 2>/dev/null || echo completed ;;
      inspect*Replicas*) echo 1 ;;
      ps*desired-state=shutdown*) cat "$FAKE_STATE.failed" 2>/dev/null ;;
      ps*) echo "$(cat "$FAKE_STATE") Running 3 seconds ago" ;;
      ls*) echo 1/1 ;;
    esac ;;
  image)
    [ -n "${FAKE_REPO_DIGESTS:-}" ] || { echo "Error: No such image: $3" >&2; exit 1; }
    echo "[{\\"RepoTags\\": [\\"$3\\"], \\"RepoDigests\\": [$FAKE_REPO_DIGESTS]}]" ;;
  run) case "$*" in
    *migration_versions*) echo 20260101000000 ;;
    # FAKE_HOLD: the migration records its arguments there, then runs until interrupted.
    *update_db) if [ -n "${FAKE_HOLD:-}" ]; then echo "$*" > "$FAKE_HOLD"; sleep 60; fi ;;
  esac ;;
esac
"""


@pytest.fixture
def swarm(default_project, tmp_path):
    """A private copy of the default project with its env file, and the fake swarm; swarm(script, *args) runs it."""
    project = Path(shutil.copytree(default_project, tmp_path / "project"))
    env_file = tmp_path / "prod.env"
    run([project / "script/bootstrap"], env={**os.environ, "LHD_ENV_FILE": str(env_file)})
    _, cert, key = make_ca(tmp_path / "certs", "example.com")  # what script/deploy's preflight checks
    shutil.copy(cert, project / "etc/certs/origin.crt")
    shutil.copy(key, project / "etc/certs/origin.key")
    registry = re.search(r'^REGISTRY_IMAGE="(.*)"$', (project / "script/functions/common").read_text(), re.M)[1]

    class Swarm:
        log = tmp_path / "docker.log"
        config = tmp_path / "stack.yml"
        state = tmp_path / "image"
        releases = project / "var/releases.log"

        def __init__(self):
            self.project, self.registry = project, registry
            self.env = {**os.environ, **fake_docker(tmp_path, FAKE_SWARM), "LHD_ENV_FILE": str(env_file),
                        "FAKE_LOG": str(self.log), "FAKE_CONFIG": str(self.config),
                        "FAKE_STATE": str(self.state), "DEPLOY_TIMEOUT": "20"}
            self.state.write_text(f"{registry}/lucky:{OLD}@sha256:{'9' * 64}\n")

        def __call__(self, script, *args, **env):
            return run([project / "script" / script, *args], env={**self.env, **env}, check=False,
                       stdin=subprocess.DEVNULL, timeout=120)

        def images(self):
            """The images `stack deploy` was given (the compose files' image: lines), by service."""
            return dict(line.split(" ") for line in self.config.read_text().splitlines())

        def calls(self):
            return self.log.read_text().splitlines()

    return Swarm()


def release_lines(swarm):
    """The release log's lines without their time."""
    return [line.split(" ", 1)[1] for line in swarm.releases.read_text().splitlines()]


def test_deploy_with_digests_runs_them(swarm):
    """--digests (script/ci_deploy_remote's verified ones): migrations and services run tag@digest references,
    and the release log records the digests."""
    result = swarm("deploy", "--yes", "--digests", f"lucky@sha256:{LUCKY},hasura@sha256:{HASURA}", NEW)
    assert result.returncode == 0, result.stdout + result.stderr
    lucky, hasura = f"{swarm.registry}/lucky:{NEW}@sha256:{LUCKY}", f"{swarm.registry}/hasura:{NEW}@sha256:{HASURA}"
    images = swarm.images()
    assert images["lucky"] == lucky and images["hasura"] == hasura
    # LUCKY_TAG, which APP_VERSION is too, stays the SHA.
    assert (f"env LUCKY_TAG={NEW} LUCKY_DIGEST=@sha256:{LUCKY} HASURA_TAG={NEW} HASURA_DIGEST=@sha256:{HASURA}"
            in swarm.calls())
    (migration,) = [c for c in swarm.calls() if c.startswith("docker run") and c.endswith(" update_db")]
    assert f" {lucky} update_db" in migration
    assert release_lines(swarm) == [f"{NEW} lucky@sha256:{LUCKY} hasura@sha256:{HASURA}"]


@pytest.mark.parametrize("pulled", [False, True], ids=["built-here", "pulled"])
def test_deploy_without_digests_uses_the_local_registry_digest_or_the_tag(swarm, pulled):
    """Without --digests: a local image this registry knows by digest (RepoDigests) runs by it; one built here
    and never pushed runs by its tag, exactly as before, and the release log names the SHA alone."""
    env = {"FAKE_REPO_DIGESTS": f'"other.example/lucky@sha256:{"4" * 64}", "{swarm.registry}/lucky@sha256:{LOCAL}", '
                                f'"{swarm.registry}/hasura@sha256:{LOCAL}"'} if pulled else {}
    result = swarm("deploy", "--yes", NEW, **env)
    assert result.returncode == 0, result.stdout + result.stderr
    suffix = f"@sha256:{LOCAL}" if pulled else ""
    assert swarm.images()["lucky"] == f"{swarm.registry}/lucky:{NEW}{suffix}"
    assert swarm.images()["hasura"] == f"{swarm.registry}/hasura:{NEW}{suffix}"
    assert release_lines(swarm) == [f"{NEW} lucky@sha256:{LOCAL} hasura@sha256:{LOCAL}" if pulled else NEW]


def test_rollback_uses_the_recorded_digests(swarm):
    """script/rollback SHA runs the images the release log recorded for SHA, by digest, not what the tag is now."""
    swarm.releases.parent.mkdir()
    swarm.releases.write_text(f"2026-11-30T10:00:00Z {OLD} lucky@sha256:{LUCKY} hasura@sha256:{HASURA}\n"
                              f"2026-12-01T10:00:00Z {NEW}\n")
    swarm.state.write_text(f"{swarm.registry}/lucky:{NEW}\n")
    result = swarm("rollback", "--yes", OLD, FAKE_REPO_DIGESTS=f'"{swarm.registry}/lucky@sha256:{LOCAL}"')
    assert result.returncode == 0, result.stdout + result.stderr
    assert "records no image digests" not in result.stderr
    lucky = f"{swarm.registry}/lucky:{OLD}@sha256:{LUCKY}"
    assert swarm.images() == {**swarm.images(), "lucky": lucky, "hasura": f"{swarm.registry}/hasura:{OLD}@sha256:{HASURA}"}
    assert any(c.startswith("docker run") and f" {lucky} /app/db/migration_versions" in c for c in swarm.calls())
    assert release_lines(swarm)[-1] == f"{OLD} lucky@sha256:{LUCKY} hasura@sha256:{HASURA}"


def test_rollback_to_an_unrecorded_sha_warns_and_uses_the_tag(swarm):
    """A SHA the release log recorded no digests for, whose images are on the node: one warning line, then its
    tags."""
    swarm.state.write_text(f"{swarm.registry}/lucky:{NEW}\n")
    result = swarm("rollback", "--yes", OLD, FAKE_REPO_DIGESTS=f'"{swarm.registry}/lucky@sha256:{LOCAL}"')
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line for line in result.stderr.splitlines() if "digest" in line] == [
        f"! {swarm.releases} records no image digests for {OLD}: rolling back to the images tagged {OLD}, as they are now"]
    assert swarm.images()["lucky"] == f"{swarm.registry}/lucky:{OLD}"
    assert swarm.images()["hasura"] == f"{swarm.registry}/hasura:{OLD}"


@pytest.mark.parametrize("digests", [f"lucky@sha256:{LUCKY}", f"lucky@sha256:{LUCKY},hasura@sha256:{HASURA[:10]}",
                                     f"hasura@sha256:{HASURA},lucky@sha256:{LUCKY}"], ids=["one", "short", "order"])
def test_deploy_refuses_malformed_digests(swarm, digests):
    """A --digests LIST that is not both digests is one line, before any docker call."""
    result = swarm("deploy", "--yes", "--digests", digests, NEW)
    assert result.returncode == 1
    assert result.stderr.strip() == f"✖ '{digests}' is not lucky@sha256:<64 hex>,hasura@sha256:<64 hex>"
    assert not swarm.log.exists()


@pytest.mark.parametrize("conflicts", [2, 5], ids=["retried", "persistent"])
def test_restore_after_a_failed_update_retries_sequence_conflicts(swarm, tmp_path, conflicts):
    """After swarm rolled a broken update back, the restore's `stack deploy` can meet swarm still writing that
    rollback ("update out of sequence", seen in CI): it deploys again, at most 5 times in all, and reports the
    restore; when the conflict persists it shows swarm's error and says the restore failed."""
    counter = tmp_path / "conflicts"
    counter.write_text(f"{conflicts}\n")
    result = swarm("deploy", "--yes", "dead0000", FAKE_BROKEN="dead0000", FAKE_CONFLICTS=str(counter))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    retries = [line for line in lines if "(update out of sequence); deploying again" in line]
    assert retries == [f"! swarm changed a service while this deploy updated it (update out of sequence); "
                       f"deploying again ({n}/4)" for n in range(1, min(conflicts, 4) + 1)]
    if conflicts < 5:
        assert lines[-1] == ("✖ the update to dead0000 failed its health checks and was rolled back: "
                             f"every service runs {OLD} again")
        assert swarm.state.read_text().startswith(f"{swarm.registry}/lucky:{OLD}")
    else:
        assert lines[-2:] == [
            "failed to update service lhd_app_lucky: Error response from daemon: rpc error: code = Unknown desc = "
            "update out of sequence",
            f"✖ could not restore {OLD} either: check 'docker service ps lhd_app_lucky'"]
    assert counter.read_text().strip() == str(max(conflicts - 5, 0))


@pytest.mark.parametrize("conflicts", [2, 5], ids=["retried", "persistent"])
def test_monitoring_up_retries_sequence_conflicts_as_deploy_does(swarm, tmp_path, conflicts):
    """`script/monitoring up` deploys its stack through the same `stack_deploy` as script/deploy: swarm's "update
    out of sequence" is deployed again, at most 5 times in all, then its error is shown and the script fails."""
    counter = tmp_path / "conflicts"
    counter.write_text(f"{conflicts}\n")
    result = swarm("monitoring", "up", FAKE_CONFLICTS=str(counter))
    deploys = [call for call in swarm.calls() if call.startswith("docker stack deploy")]
    assert len(deploys) == min(conflicts + 1, 5) and all(d.endswith(" lhd_app_monitoring") for d in deploys), deploys
    lines = result.stderr.splitlines()
    retries = [line for line in lines if "(update out of sequence); deploying again" in line]
    assert len(retries) == min(conflicts, 4), lines
    if conflicts < 5:
        assert result.returncode == 0, result.stderr
        assert "✔ All done." in result.stdout, result.stdout
    else:
        assert result.returncode == 1
        assert lines[-1].endswith("code = Unknown desc = update out of sequence"), lines


@pytest.mark.parametrize("error", ["task: unhealthy container", "task: non-zero exit (1)", ""],
                         ids=["unhealthy", "exited", "no-error"])
def test_a_rolled_back_update_says_what_swarm_said(swarm, error):
    """The warning for an update swarm rolled back carries swarm's error for the new task (why it failed: its
    health checks, an exit, a missing image), so the operator need not go to `docker service ps --no-trunc`;
    when swarm recorded none, the warning is the plain one."""
    result = swarm("deploy", "--yes", "dead0000", FAKE_BROKEN="dead0000", FAKE_TASK_ERROR=error)
    assert result.returncode == 1
    warning = next(line for line in result.stderr.splitlines() if "swarm rolled it back" in line)
    plain = f"! the update of lhd_app_hasura to dead0000 failed its health checks; swarm rolled it back to {OLD}"
    assert warning == (f"{plain} (swarm: {error})" if error else plain)


@pytest.mark.parametrize(("sent", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)],
                         ids=["ctrl-c", "cancelled-job", "dropped-ssh"])
def test_an_interrupted_migration_leaves_no_secret_copies_and_no_update(swarm, tmp_path, sent, status):
    """Ctrl-C (INT to the terminal's process group), a cancelled CI job (TERM) or a dropped ssh session (HUP)
    while the migration runs: the readable copies of the secrets run_lucky_task made for the migration's
    container are removed, the deploy stops with the signal's status, and no service is updated nor the release
    recorded. Without run_lucky_task's EXIT trap all three fail (the copies stay). Its INT/TERM/HUP traps, which
    make the exit status 128+N, change nothing this test sees on bash 5: bash runs the EXIT trap itself when such
    a signal ends it (sig.c, termsig_handler)."""
    hold, log = tmp_path / "held", tmp_path / "deploy.log"
    # default_signals: as a terminal starts it, whatever this run inherited (a run under nohup ignores HUP).
    with popen([swarm.project / "script/deploy", "--yes", NEW], log=log, env={**swarm.env, "FAKE_HOLD": str(hold)},
               stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=default_signals) as proc:
        argv = until(lambda: hold.exists() and hold.read_text().split(), 30, "the migration to start")
        copies = {Path(argv[i + 1].split(":")[0]) for i, arg in enumerate(argv) if arg == "-v"}
        assert len(copies) == 3 and all(path.is_file() for path in copies), argv
        os.killpg(proc.pid, sent)
        proc.wait(timeout=30)
    # The subshell's trap exits with 128+N; script/deploy, which has no trap of its own for TERM and HUP, ends by
    # the signal, or (bash's SIGINT rule: the child handled it) with that status.
    assert proc.returncode in (status, -sent), log.read_text()
    # The subshell may outlive script/deploy (which TERM and HUP end at once) by the moment its trap takes.
    until(lambda: not [path for path in copies if path.exists()] and not next(iter(copies)).parent.exists(), 10,
          lambda: f"the secret copies to be removed: {sorted(str(path) for path in copies if path.exists())}")
    assert not [call for call in swarm.calls() if call.startswith("docker stack deploy")], swarm.calls()
    assert not swarm.releases.exists()
