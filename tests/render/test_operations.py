"""script/maintenance, script/logs --production and the image cleanup without a Docker engine: their help, their
refusals (one line, nothing changed, no docker call), and what they ask docker to do (a fake docker that records
its arguments and answers like the real one)."""

import os
import shutil
import subprocess
import time

import pytest

from harness.docker import fake_docker
from harness.proc import run

FAILING = 'echo "docker $*" >> "$DOCKER_LOG"; exit 97\n'
NO_STACK = 'case "$1 $2" in "info "*|"stack ls"|"volume ls") exit 0 ;; esac; exit 99\n'


@pytest.fixture
def own_project(default_project, tmp_path):
    """A private copy of the default project, bootstrapped for production with a fake docker (env file and secret
    files under tmp_path)."""
    copy = tmp_path / "project"
    shutil.copytree(default_project, copy, symlinks=True)
    (tmp_path / "boot").mkdir()
    env = {**os.environ, **fake_docker(tmp_path / "boot", NO_STACK), "LHD_ENV_FILE": str(tmp_path / "prod.env"),
           "LHD_SECRETS_DIR": str(tmp_path / "secrets")}
    run([copy / "script/bootstrap"], env=env, stdin=subprocess.DEVNULL, timeout=60)
    return copy


def script(project, tmp_path, name, *args, docker=FAILING, **extra):
    """Run script/NAME ARGS with a fake docker (default: records and fails), the env file of `own_project`."""
    (tmp_path / "fake").mkdir(exist_ok=True)
    env = {**os.environ, **fake_docker(tmp_path / "fake", docker), "DOCKER_LOG": str(tmp_path / "docker.log"),
           "LHD_ENV_FILE": str(tmp_path / "prod.env"), "LHD_SECRETS_DIR": str(tmp_path / "secrets"),
           "MAINTENANCE_SETTLE": "0", **extra}
    env.pop("SSH_ORIGINAL_COMMAND", None)
    return run([project / "script" / name, *args], cwd=project, env=env, check=False, stdin=subprocess.DEVNULL,
               timeout=60)


def docker_calls(tmp_path):
    log = tmp_path / "docker.log"
    return log.read_text().splitlines() if log.exists() else []


def one_line_refusal(result, *words):
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("✖ "), result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_maintenance_help_explains_without_side_effects(default_project, tmp_path, flag):
    result = script(default_project, tmp_path, "maintenance", flag)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "usage: script/maintenance on|off|status [--message TEXT]"
    for word in ("Commands:", "Options:", "--message TEXT", "Retry-After", "Examples:", "script/maintenance off"):
        assert word in result.stdout
    assert docker_calls(tmp_path) == []


@pytest.mark.parametrize("args", [[], ["--no-such-option"], ["on", "off"], ["sideways"], ["on", "--message"]])
def test_maintenance_refuses_bad_usage_with_the_usage_line(default_project, tmp_path, args):
    result = script(default_project, tmp_path, "maintenance", *args)
    assert result.returncode == 2
    assert result.stderr == "usage: script/maintenance on|off|status [--message TEXT]\n"
    assert docker_calls(tmp_path) == []


@pytest.mark.parametrize("message, problem", [
    ("<b>back soon</b>", "may not contain"),
    ('say "hi"', "may not contain"),
    ("costs $5", "may not contain"),
    ("two\nlines", "one line"),
    ("x" * 301, "at most 300"),
    ("", "needs a text"),
])
def test_maintenance_refuses_a_message_it_cannot_show(own_project, tmp_path, message, problem):
    before = (tmp_path / "prod.env").read_text()
    one_line_refusal(script(own_project, tmp_path, "maintenance", "on", "--message", message), problem)
    assert (tmp_path / "prod.env").read_text() == before
    assert docker_calls(tmp_path) == []


def test_maintenance_message_goes_with_on_only(own_project, tmp_path):
    one_line_refusal(script(own_project, tmp_path, "maintenance", "off", "--message", "x"), "with 'on' only")
    assert docker_calls(tmp_path) == []


def test_bootstrap_writes_the_operations_keys(own_project, tmp_path):
    settings = (tmp_path / "prod.env").read_text().splitlines()
    assert "KEEP_RELEASES=5" in settings and "MAINTENANCE=false" in settings


SWARM_DOCKER = """echo "docker $*" >> "$DOCKER_LOG"
case "$1 $2" in
  "service inspect") echo false ;;
  "service update") ;;
  *) exit 97 ;;
esac
"""


def test_maintenance_on_records_the_state_and_flips_the_router(own_project, tmp_path):
    """on: MAINTENANCE=true and the message in the env file (its mode kept), and one `service update` of the
    maintenance service's traefik.enable label and message; off: false again, the label only."""
    env_file = tmp_path / "prod.env"
    mode = env_file.stat().st_mode
    on = script(own_project, tmp_path, "maintenance", "on", "--message", "Back at 14:00 UTC, it's the database",
                docker=SWARM_DOCKER)
    assert on.returncode == 0, on.stderr
    settings = env_file.read_text().splitlines()
    assert "MAINTENANCE=true" in settings and "MAINTENANCE=false" not in settings
    assert "MAINTENANCE_MESSAGE=Back at 14:00 UTC, it's the database" in settings
    assert env_file.stat().st_mode == mode
    update = [c for c in docker_calls(tmp_path) if c.startswith("docker service update")]
    assert update == ["docker service update --quiet --label-add traefik.enable=true --env-add "
                      "MAINTENANCE_MESSAGE=Back at 14:00 UTC, it's the database lhd_app_maintenance"]
    off = script(own_project, tmp_path, "maintenance", "off", docker=SWARM_DOCKER)
    assert off.returncode == 0, off.stderr
    assert "MAINTENANCE=false" in env_file.read_text().splitlines()
    assert docker_calls(tmp_path)[-1] == "docker service update --quiet --label-add traefik.enable=false lhd_app_maintenance"


def test_a_hand_written_maintenance_value_is_refused(own_project, tmp_path):
    env_file = tmp_path / "prod.env"
    env_file.write_text(env_file.read_text().replace("MAINTENANCE=false", "MAINTENANCE=on"))
    one_line_refusal(script(own_project, tmp_path, "maintenance", "status"), "MAINTENANCE must be 'true' or 'false'")


# --- script/logs --production -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, problem", [
    (["--since", "5m"], "go with --production"),
    (["--follow"], "go with --production"),
    (["--production", "lucky", "hasura"], "one service or all of them"),
    (["--production", "--since", "yesterday"], "neither a duration"),
])
def test_logs_refusals(own_project, tmp_path, args, problem):
    one_line_refusal(script(own_project, tmp_path, "logs", *args), problem)
    assert docker_calls(tmp_path) == []


LOGS_DOCKER = """echo "docker $*" >> "$DOCKER_LOG"
case "$1 $2" in
  "stack ls") echo lhd_app ;;
  "stack services") printf 'lhd_app_lucky\\nlhd_app_hasura\\n' ;;
  "service logs") for last in "$@"; do :; done; printf '%s | GET /probe?token=%s 404\\n' "$last" "$(cat "$PLANTED")" ;;
  *) exit 97 ;;
esac
"""


def test_production_logs_mask_every_secret_value(own_project, tmp_path):
    """A log line carrying a secret file's value is printed with [secret] instead; the docker calls are the
    stack's service logs since the given time, and nothing inspects a service (no environment read)."""
    planted = tmp_path / "secrets/hasura_jwt_key"
    result = script(own_project, tmp_path, "logs", "--production", "--since", "5m", docker=LOGS_DOCKER,
                    PLANTED=str(planted))
    assert result.returncode == 0, result.stderr
    secret = planted.read_text().strip()
    assert secret not in result.stdout
    assert sorted(result.stdout.splitlines()) == [f"lhd_app_{s} | GET /probe?token=[secret] 404" for s in ("hasura", "lucky")]
    calls = docker_calls(tmp_path)
    assert "docker service logs --since 5m --timestamps lhd_app_lucky" in calls
    assert not [c for c in calls if "inspect" in c]


HANGING_LOGS_DOCKER = LOGS_DOCKER.replace(
    '"service logs") for last',
    '"service logs") case "$*" in *lhd_app_hasura) echo "lhd_app_hasura | before the hang"; exec sleep 600 ;; esac; for last')


def test_production_logs_return_when_docker_hangs(own_project, tmp_path):
    """docker service logs can print and then never return (moby/moby#38640): with LOGS_TIMEOUT=2 the script
    returns in seconds, with every line printed, and says in one line which service's logs were cut short."""
    started = time.monotonic()
    result = script(own_project, tmp_path, "logs", "--production", "--since", "5m", docker=HANGING_LOGS_DOCKER,
                    PLANTED=str(tmp_path / "secrets/hasura_jwt_key"), LOGS_TIMEOUT="2")
    assert time.monotonic() - started < 30
    assert result.returncode == 0, result.stderr
    assert "lhd_app_hasura | before the hang" in result.stdout
    assert "lhd_app_lucky | GET /probe?token=[secret] 404" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if line.startswith("! ")]
    assert len(warnings) == 1 and "lhd_app_hasura had not returned after 2s" in warnings[0], result.stderr


def test_production_logs_timeout_must_be_seconds(own_project, tmp_path):
    one_line_refusal(script(own_project, tmp_path, "logs", "--production", docker=LOGS_DOCKER,
                            PLANTED=str(tmp_path / "secrets/hasura_jwt_key"), LOGS_TIMEOUT="1m"),
                     "LOGS_TIMEOUT must be a number of seconds")


def test_production_logs_of_an_unknown_service_are_refused(own_project, tmp_path):
    one_line_refusal(script(own_project, tmp_path, "logs", "--production", "nosuch", docker=LOGS_DOCKER,
                            PLANTED=str(tmp_path / "secrets/hasura_jwt_key")), "has no service 'nosuch'")


# --- cleanup and rollback ---------------------------------------------------------------------------------------------

def cleanup_docker(repo, rows):
    """A docker answering `image ls ... REPO` with rows ("ID TAG DIGEST"), `ps -q` with one running container of
    image sha256:run, `image rm` and `ps -aq` (no stopped container) as a node would, and recording every call."""
    lines = "\\n".join(rows)
    return f"""echo "docker $*" >> "$DOCKER_LOG"
for last in "$@"; do :; done
case "$1 $2" in
  "ps -q") echo c1 ;;
  "ps -aq") ;;
  "inspect --format") echo sha256:run ;;
  "image ls") [ "$last" != "{repo}" ] || printf '{lines}\\n' ;;
  "image rm") ;;
  *) exit 97 ;;
esac
"""


def removed_references(log):
    """The references `docker image rm` was given, in order, from the fake docker's log."""
    return [line.split()[-1] for line in log.read_text().splitlines() if line.startswith("docker image rm ")]


def test_cleanup_keeps_the_last_releases_and_running_images(own_project, tmp_path):
    """KEEP_RELEASES=2 with releases a..d logged (d newest): c and d kept, b removed; a kept because a container
    runs it; an image tagged with a SHA never released kept; a digest-only image of b removed, of c kept. The
    node's part (script/docker/cleanup_node, the job's program on the other nodes) runs in POSIX sh (dash)."""
    log = own_project / "var/releases.log"
    log.parent.mkdir(exist_ok=True)
    shas = ["aaaa0001", "bbbb0002", "cccc0003", "dddd0004"]
    digest = {sha: f"sha256:{str(i) * 64}" for i, sha in enumerate(shas, 1)}
    log.write_text("".join(f"2026-12-0{i}T00:00:00Z {sha} lucky@{digest[sha]} hasura@{digest[sha]}\n"
                           for i, sha in enumerate(shas, 1)))
    repo = "registry.gitlab.com/my-group/lhd-app/lucky"
    rows = [f"sha256:run {shas[0]} <none>", "sha256:d eeee0001 <none>", f"sha256:b {shas[1]} <none>",
            f"sha256:c {shas[2]} <none>", f"sha256:d {shas[3]} <none>", "sha256:e eeee0005 <none>",
            f"sha256:bd <none> {digest[shas[1]]}", f"sha256:cd <none> {digest[shas[2]]}"]
    program = f"""set -euo pipefail
source {own_project}/script/functions/common
source {own_project}/script/functions/swarm
source {own_project}/script/functions/cleanup
mapfile -t inputs < <(cleanup_inputs)
env "${{inputs[@]}}" CLEANUP_NODE=node1 dash {own_project}/script/docker/cleanup_node"""
    (tmp_path / "fake").mkdir()
    docker_log = tmp_path / "docker.log"
    env = {**os.environ, **fake_docker(tmp_path / "fake", cleanup_docker(repo, rows)),
           "DOCKER_LOG": str(docker_log), "KEEP_RELEASES": "2"}
    result = run(["bash", "-c", program], env=env, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    assert removed_references(docker_log) == [f"{repo}:{shas[1]}", f"{repo}@{digest[shas[1]]}"]
    assert "→ Image cleanup on node1: 2 references of releases older than the last 2 removed" in result.stdout
    # An old release's tag on a kept image (the same layers) is taken off it, even while that image runs.
    log.write_text(log.read_text() + "2026-12-05T00:00:00Z eeee0001\n")
    rows[:] = [f"sha256:run {shas[0]} <none>", f"sha256:run {shas[3]} <none>"]
    (tmp_path / "fake/bin/docker").write_text("#!/bin/sh\n" + cleanup_docker(repo, rows))
    docker_log.write_text("")
    result = run(["bash", "-c", program], env=env, check=False, timeout=60)
    assert removed_references(docker_log) == [f"{repo}:{shas[0]}"], result.stderr


def test_cleanup_reaches_the_other_nodes_as_a_global_job(own_project, tmp_path):
    """On a swarm of three nodes (one drained), the cleanup's job runs script/docker/cleanup_node on every other
    Ready and active node: the argv script/deploy gives `docker service create` (global-job, the docker CLI image,
    the node's socket), its nodes' lines printed, the drained node named in a warning, the job removed."""
    log = own_project / "var/releases.log"
    log.parent.mkdir(exist_ok=True)
    log.write_text(f"2026-12-01T00:00:00Z aaaa0001 lucky@sha256:{'1' * 64} hasura@sha256:{'2' * 64}\n")
    docker = r"""printf '%s\n' "docker $*" >> "$DOCKER_LOG"
case "$1 $2" in
  "ps -q" | "ps -aq" | "image ls" | "image rm") ;;
  "info --format") echo self ;;
  "node ls") printf 'self m Ready Active\nw1 worker1 Ready Active\nw2 worker2 Ready Drain\n' ;;
  "service rm" | "service create") ;;
  "service ps") echo "Complete 1 second ago" ;;
  "service logs") echo "→ Image cleanup: nothing older than the last 5 releases on worker1" ;;
  *) exit 97 ;;
esac
"""
    program = f"""set -euo pipefail
source {own_project}/script/functions/common
source {own_project}/script/functions/swarm
source {own_project}/script/functions/cleanup
cleanup_images"""
    (tmp_path / "fake").mkdir()
    docker_log = tmp_path / "docker.log"
    env = {**os.environ, **fake_docker(tmp_path / "fake", docker), "DOCKER_LOG": str(docker_log)}
    result = run(["bash", "-c", program], env=env, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "→ Image cleanup: nothing older than the last 5 releases on worker1"
    assert result.stderr.count("\n") == 1 and "node worker2 is Ready and Drain" in result.stderr, result.stderr
    calls = docker_log.read_text().splitlines()
    create = next(line for line in calls if line.startswith("docker service create"))
    for part in ("--name lhd_app_image-cleanup --mode global-job --restart-condition none",
                 "--constraint node.id!=self --constraint node.id!=w2",
                 "--mount type=bind,source=/var/run/docker.sock,target=/var/run/docker.sock",
                 "--env CLEANUP_NODE={{.Node.Hostname}}", "--env CLEANUP_KEEP_TAGS=aaaa0001",
                 f"--env CLEANUP_KEEP_DIGESTS=sha256:{'1' * 64} sha256:{'2' * 64}",
                 "--entrypoint sh docker:28.5.2-cli -c #!/bin/sh"):
        assert part in create, create
    assert calls[-1] == "docker service rm lhd_app_image-cleanup"


def test_keep_releases_must_be_a_number(own_project, tmp_path):
    program = f"set -euo pipefail\nsource {own_project}/script/functions/common\n" \
              f"source {own_project}/script/functions/cleanup\nkeep_releases"
    result = run(["bash", "-c", program], env={**os.environ, "KEEP_RELEASES": "five"}, check=False, timeout=30)
    assert result.returncode == 1 and "KEEP_RELEASES must be a whole number" in result.stderr


def test_rollback_to_a_release_whose_images_are_gone_is_refused(own_project, tmp_path):
    """The node has no image of the SHA (cleaned up): one line naming docker pull and script/build, before the
    deploy lock or any change (no service update, no stack deploy)."""
    docker = """echo "docker $*" >> "$DOCKER_LOG"
case "$1 $2" in
  "stack ls") echo lhd_app ;;
  "service inspect") echo registry.gitlab.com/my-group/lhd-app/lucky:cccc0003 ;;
  "image inspect") exit 1 ;;
  *) exit 97 ;;
esac
"""
    result = script(own_project, tmp_path, "rollback", "--yes", "aaaa0001", docker=docker,
                    DEPLOY_LOCK_DIR=str(tmp_path / "lock"))
    one_line_refusal(result, "the images of aaaa0001 are not on this node", "docker pull", "script/build aaaa0001")
    assert not [c for c in docker_calls(tmp_path) if "update" in c or "stack deploy" in c]


@pytest.mark.parametrize("status", [0, 3])
def test_maintenance_during_an_operation_is_turned_off_after_it_even_on_failure(own_project, tmp_path, status):
    """--maintenance (maintenance_during WHAT true): on before the operation, off when the script exits with any
    status (which is kept), and a trap set before it (script/restore's) still runs; already on: left on."""
    env_file = tmp_path / "prod.env"

    def operation(state):
        env_file.write_text(env_file.read_text().replace("MAINTENANCE=false", f"MAINTENANCE={state}")
                            .replace("MAINTENANCE=true", f"MAINTENANCE={state}"))
        program = f"""set -euo pipefail
source {own_project}/script/functions/common
source {own_project}/script/functions/maintenance
load_env_file {env_file}
trap 'echo earlier trap ran' EXIT
maintenance_during "the test" true
echo "during: $(grep '^MAINTENANCE=' {env_file})"
exit {status}"""
        (tmp_path / "fake").mkdir(exist_ok=True)
        env = {**os.environ, **fake_docker(tmp_path / "fake", SWARM_DOCKER), "DOCKER_LOG": str(tmp_path / "docker.log"),
               "LHD_ENV_FILE": str(env_file), "MAINTENANCE_SETTLE": "0", "SWARM_NAME": "lhd_app"}
        return run(["bash", "-c", program], env=env, check=False, stdin=subprocess.DEVNULL, timeout=60)

    result = operation("false")
    assert result.returncode == status, result.stderr
    assert "during: MAINTENANCE=true" in result.stdout and "earlier trap ran" in result.stdout
    assert "MAINTENANCE=false" in env_file.read_text().splitlines()
    flips = [c.split()[5] for c in docker_calls(tmp_path) if c.startswith("docker service update")]
    assert flips == ["traefik.enable=true", "traefik.enable=false"]
    (tmp_path / "docker.log").unlink()
    result = operation("true")
    assert result.returncode == status and "already on; it stays on" in result.stdout
    assert "MAINTENANCE=true" in env_file.read_text().splitlines() and docker_calls(tmp_path) == []
