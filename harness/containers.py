"""Containers for the image contract tests, through testcontainers.

`contract()` builds a testcontainers `DockerContainer` the way the contract
tests want it: labelled with the run's labels (harness/reaper.py: org.lhd.run,
org.lhd.owner), each published port bound to 127.0.0.1 only (on a port the
engine picks), and its wait strategy wrapped so a container that never gets
ready fails with its own logs. Tests enter it with
`with contract(...) as c:` (DockerContainer.__enter__/__exit__: start, wait,
then `remove(force=True, v=True)`; testcontainers/core/container.py).

What this module relies on in testcontainers 4.15.0 (site-packages):
- core/container.py `start()` hands `self.ports` to docker-py's create as
  `ports=`; `with_bind_ports()` only takes an int or "port/proto" as host, so a
  loopback binding goes straight into `ports` as docker-py's `(host_ip,)`
  tuple (docker/utils/utils.py `_convert_port_binding`: that IP, a free port).
- core/docker_client.py `get_connection_mode()`/`host()`: inside a container
  (/.dockerenv, as on these machines) testcontainers would aim its wait
  strategies at the bridge gateway; the config overrides below point them at
  127.0.0.1, where the ports are published (core/config.py
  `connection_mode_override`, `tc_host_override`).
- core/config.py reads TESTCONTAINERS_RYUK_DISABLED lazily, at the first
  container start: the Ryuk reaper image cannot be pulled here.
- core/wait_strategies.py: HttpWaitStrategy, HealthcheckWaitStrategy and
  ExecWaitStrategy poll until their startup timeout, then raise.
"""

import os
import subprocess

import requests

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

from testcontainers.core.config import ConnectionMode, testcontainers_config  # noqa: E402
from testcontainers.core.container import DockerContainer  # noqa: E402
from testcontainers.core.network import Network  # noqa: E402
from testcontainers.core.waiting_utils import WaitStrategy  # noqa: E402

from harness import reaper  # noqa: E402
from harness.docker import docker, unique  # noqa: E402
from harness.proc import CommandFailed  # noqa: E402

LOOPBACK = "127.0.0.1"

# Wait strategies reach containers where tests do: 127.0.0.1 (see the module docstring).
testcontainers_config.connection_mode_override = ConnectionMode.docker_host
testcontainers_config.tc_host_override = LOOPBACK


class NotReady(AssertionError):
    """A container's wait strategy gave up; the message carries the container's logs."""


class WithLogs(WaitStrategy):
    """Run another wait strategy; if it gives up, fail with the container's logs."""

    def __init__(self, strategy):
        super().__init__()
        self.strategy = strategy

    def wait_until_ready(self, container):
        try:
            self.strategy.wait_until_ready(container)
        except Exception as error:  # TimeoutError or RuntimeError (unhealthy, exited), per wait_strategies.py
            raise NotReady(f"{container.image}: {error}\n--- logs ---\n{logs(container)}") from None


def contract_network():
    """A testcontainers Network with the run's labels (removed on exit of its `with`, else by the reaper)."""
    return Network(docker_network_kw={"labels": reaper.labels()})


def postgres_override(image):
    """The image to run for `image`: LHD_POSTGRES_IMAGES ("postgres:18.3=lhd-dev/postgres:18 postgres:17.9=...")
    runs a private PostgreSQL build wherever a test names an upstream postgres tag, so a new kit image is tried
    against the contract tests without taking the upstream name other runs on the engine use."""
    for pair in os.environ.get("LHD_POSTGRES_IMAGES", "").split():
        upstream, _, local = pair.partition("=")
        if not upstream.startswith("postgres:") or not local:
            raise ValueError(f"LHD_POSTGRES_IMAGES: {pair!r} is not postgres:TAG=IMAGE")
        if image == upstream:
            return local
    return image


def contract(image, *command, env=None, ports=(), network=None, aliases=(), volumes=(), wait=None, **create):
    """A DockerContainer for image: env, ports published on 127.0.0.1 only, an optional network with aliases,
    volumes as (host, container, mode), a wait strategy (shown with logs on failure); `create` goes to docker-py."""
    image = postgres_override(image)
    container = DockerContainer(image, command=list(command) or None, env=dict(env or {}), name=unique("lhd-test"),
                                network=network, network_aliases=list(aliases) or None,
                                volumes=[(str(host), inside, mode) for host, inside, mode in volumes],
                                labels=reaper.labels(), **create)
    for port in ports:
        container.ports[str(port)] = (LOOPBACK,)
    if wait is not None:
        container.waiting_for(WithLogs(wait))
    return container


def address(container, port):
    """127.0.0.1:<host port> where the container's port is published; fails unless every binding is on 127.0.0.1."""
    bindings = container.get_docker_client().client.api.port(container.get_container_id(), port) or []
    hosts = {b["HostIp"] for b in bindings}
    if hosts != {LOOPBACK}:
        raise AssertionError(f"{container.image} port {port} is published on {hosts or 'nothing'}, not {LOOPBACK} only")
    return f"{LOOPBACK}:{bindings[0]['HostPort']}"


def own_ip(container):
    """The container's address on its network, from the engine (what `getent hosts $(hostname)` answers inside it,
    without an exec: docker-py's exec_run can return a short command's output empty, docker/docker-py#2042, which
    failed a run once, 2026-12-05)."""
    wrapped = container.get_wrapped_container()
    wrapped.reload()
    networks = wrapped.attrs["NetworkSettings"]["Networks"]
    return next(n["IPAddress"] for n in networks.values() if n.get("IPAddress"))


def url(container, port, path=""):
    """http://127.0.0.1:<host port><path> for the container's port (see address())."""
    return f"http://{address(container, port)}{path}"


def published(container):
    """`docker port` of the container, one `PORT/tcp -> HOST:PORT` line each."""
    return docker("port", container.get_container_id()).stdout.splitlines()


def logs(container, tail=None):
    """The container's stdout and stderr (testcontainers get_logs()), the last `tail` lines of each when given."""
    try:
        out, err = (stream.decode(errors="replace") for stream in container.get_logs())
    except Exception as error:  # noqa: BLE001 - never started, or already removed
        return f"(no logs: {error})"
    if tail:
        out, err = ("\n".join(text.splitlines()[-tail:]) for text in (out, err))
    return f"--- stdout ---\n{out}\n--- stderr ---\n{err}"


def output(container):
    """The container's stdout and stderr interleaved as the engine keeps them (`docker logs`), for order checks."""
    return container.get_wrapped_container().logs(stdout=True, stderr=True).decode(errors="replace")


def state(container):
    """The engine's State of the container (fresh: the wrapped docker-py container is reloaded)."""
    wrapped = container.get_wrapped_container()
    wrapped.reload()
    return wrapped.attrs["State"]


def exit_code(container, timeout):
    """Block (at most timeout s, the engine's own wait) until the container exits; return its exit code."""
    try:
        return container.get_wrapped_container().wait(timeout=timeout)["StatusCode"]
    except requests.exceptions.RequestException:  # docker-py's read timeout
        raise NotReady(f"{container.image} did not exit within {timeout}s\n{logs(container, tail=60)}") from None


def execute(container, *argv, check=True):
    """Run argv inside the running container (docker exec); return a CompletedProcess with stdout and stderr apart.

    When check, a non-zero exit raises CommandFailed showing argv, stdout and stderr.
    """
    argv = [str(a) for a in argv]
    code, (out, err) = container.get_wrapped_container().exec_run(argv, demux=True)
    result = subprocess.CompletedProcess(argv, code, (out or b"").decode(errors="replace"),
                                         (err or b"").decode(errors="replace"))
    if check and code != 0:
        raise CommandFailed(["docker", "exec", container.get_container_id()[:12], *argv], result)
    return result


def run_once(image, *command, timeout=300, check=True, **options):
    """`docker run --rm`, through testcontainers: start, wait for the exit, return a CompletedProcess with the
    container's stdout and stderr, remove it. `options` are contract()'s. When check, a non-zero exit raises CommandFailed."""
    with contract(image, *command, **options) as container:
        code = exit_code(container, timeout)
        out, err = (stream.decode(errors="replace") for stream in container.get_logs())
    result = subprocess.CompletedProcess(["docker", "run", image, *command], code, out, err)
    if check and code != 0:
        raise CommandFailed(result.args, result)
    return result
