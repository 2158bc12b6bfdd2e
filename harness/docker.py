"""The Docker CLI under the harness's subprocess convention, and small helpers
for names and loopback ports. Containers and compose projects go through
testcontainers (see devstack.py and the image contract tests)."""

import fcntl
import http.client
import os
import random
import socket
import subprocess
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

from harness.proc import run


def docker(*args, check=True, timeout=300, input=None):
    """Run `docker ARGS`; raise CommandFailed (argv, stdout, stderr) on a non-zero exit when check."""
    return run(["docker", *args], check=check, timeout=timeout, input=input)


def engine_available():
    """True when a Docker engine answers `docker info` within 10 s."""
    try:
        return docker("info", check=False, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextmanager
def turn(name):
    """Hold the machine-wide lock `name` for the block: runs that overlap on one engine (the lanes of
    harness/lanes.py) take turns at what must not run twice at once. The lock is a file in the temp dir, let go
    when the holder ends however it ends (flock)."""
    with open(Path(tempfile.gettempdir()) / f"lhd-{name}-{os.getuid()}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@contextmanager
def release_build():
    """One Lucky release build at a time on this engine. Engine 20.10 builds with the legacy builder (BuildKit
    became the default on Linux in 23.0: moby/moby v23.0.0 release notes, moby/moby#43992), which runs each build's
    steps on its own, a cache hit only for a layer already committed: two builds of the same inputs side by side
    would both compile. One after the other, the second finds the first's compiled layers (Docker/lucky/Dockerfile.prod
    copies only the compiler's inputs) and takes a second."""
    with turn("release-build"):
        yield


EPHEMERAL_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"
PORTS_BELOW_EPHEMERAL = 12000  # free_port draws from the 12000 ports below the ephemeral range


def free_port():
    """A TCP port free on 127.0.0.1 now, for a port the harness must name itself (a process it starts, a dev stack's
    port variables), drawn below the kernel's ephemeral range: the engine picks its `-p 127.0.0.1::PORT` ports in
    that range (libnetwork portallocator/portallocator_linux.go `getDynamicPortRange` reads EPHEMERAL_RANGE, as
    vendored in engine 20.10), and every outgoing connection gets one there, so one of those can never take it before it is
    bound, as one did in CI's stop 41 ("port is already allocated"). Not for `docker run -p`: use
    `loopback_publish` and `published_port` there."""
    low = int(Path(EPHEMERAL_RANGE).read_text().split()[0])
    for _ in range(200):
        port = random.randrange(max(1024, low - PORTS_BELOW_EPHEMERAL), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port on 127.0.0.1 below {low} after 200 tries")


def loopback_publish(ports):
    """`docker run` arguments publishing each container port on 127.0.0.1 at a host port the engine picks: the
    engine's own allocator, not a port chosen here and bound later, so two lanes starting containers at once
    never ask for the same one."""
    return [arg for port in ports for arg in ("-p", f"127.0.0.1::{port}")]


def published_port(container, port):
    """The host port on 127.0.0.1 where container's TCP port is published."""
    lines = docker("port", container, f"{port}/tcp").stdout.split()
    return int(lines[0].rsplit(":", 1)[1])


# The first lines of a fake `docker` script that answer `version` and `info` as a healthy one-node swarm
# manager would, for script/deploy's preflight (script/doctor --for-deploy); the rest of the script follows.
HEALTHY_MANAGER = """case "$1" in
  version) echo "28.5.2 28.5.2"; exit 0 ;;
  info)
    case "$*" in
      *LocalNodeState*) echo active ;;
      *ControlAvailable*) echo true ;;
      *NodeAddr*) echo 10.0.0.5 ;;
      *Nodes*) echo 1 ;;
    esac
    exit 0 ;;
esac
"""


def fake_docker(directory, script):
    """A bin directory in directory holding a fake `docker` (the sh script given); returns {"PATH": ...} with it
    first, for the environment of a script under test."""
    bin_dir = directory / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "docker").write_text("#!/bin/sh\n" + script)
    (bin_dir / "docker").chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def network_hosts(network):
    """["NAME:IP", ...] of every container on `network` now: hosts entries for a job container on it, so the
    server's name resolves without Docker's embedded DNS, which answered "Could not resolve hostname" under
    load (seen in CI inside a deploy job and on the runbook's workstation)."""
    out = docker("network", "inspect", network, "--format",
                 "{{range .Containers}}{{.Name}} {{.IPv4Address}}\n{{end}}").stdout
    entries = (line.split() for line in out.splitlines())
    return [f"{fields[0]}:{fields[1].split('/')[0]}" for fields in entries if len(fields) == 2]


def unique(prefix):
    """prefix-<8 hex>: a name no other run uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket (a Docker API socket), with the usual timeout."""

    def __init__(self, path, timeout=10):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(str(self.socket_path))


def unix_request(path, method, url, timeout=10):
    """(status, body text) of one HTTP request without a body (Content-Length: 0 for POST) to the unix socket
    at path. (A filter that refuses on the headers closes the connection before any body could be sent.)"""
    connection = UnixHTTPConnection(path, timeout)
    try:
        connection.request(method, url)
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


# apt's package files: the packages an install fetched, apt's binary caches, and the package lists.
PACKAGE_FILES = ("/var/cache/apt/archives/*.deb", "/var/cache/apt/*.bin", "/var/lib/apt/lists/*_*")


def package_files(image):
    """The apt package files image keeps (none, with kit/kit.py DOCKER_APT in its base)."""
    listing = f"ls -d {' '.join(PACKAGE_FILES)} 2>/dev/null || true"
    return docker("run", "--rm", "--user", "0", "--entrypoint", "sh", image, "-c", listing).stdout.split()
