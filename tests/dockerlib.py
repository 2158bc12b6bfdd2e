"""Small Docker helpers for the `docker` tier: bounded waits, guaranteed cleanup.

Tests reach containers only through ports published on 127.0.0.1.
"""

import json
import socket
import subprocess
import time
import uuid

import pytest


def docker(*args, check=True, timeout=300, input=None):
    """Run `docker ARGS`; on failure, fail the test with stdout and stderr."""
    result = subprocess.run(["docker", *map(str, args)], capture_output=True, text=True, timeout=timeout,
                            input=input, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"docker {' '.join(map(str, args))} failed ({result.returncode}):\n"
                    f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}", pytrace=False)
    return result


def engine_available():
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc, timeout=10):
    """Terminate a child process, killing it if it has not exited within timeout seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_until(check, timeout, what, interval=0.5):
    """Call check() until it returns a truthy value; fail naming `what` after timeout seconds.

    `what` may be a callable, evaluated only on failure (e.g. to include logs).
    """
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - keep polling, remember why
            last = exc
        time.sleep(interval)
    what = what() if callable(what) else what
    pytest.fail(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last})" if last else ""),
                pytrace=False)


class Container:
    """A detached container removed on exit; `logs()` for failure messages."""

    def __init__(self, image, *args, name=None, env=None, ports=(), network=None, volumes=(), entrypoint=None):
        self.name = name or unique("lhd-test")
        self.image = image
        self.args = args
        self.env = env or {}
        self.ports = {p: free_port() for p in ports}
        self.network = network
        self.volumes = volumes
        self.entrypoint = entrypoint

    def __enter__(self):
        cmd = ["run", "-d", "--name", self.name, "--label", "org.lhd.test=1"]
        for key, value in self.env.items():
            cmd += ["-e", f"{key}={value}"]
        for inside, outside in self.ports.items():
            cmd += ["-p", f"127.0.0.1:{outside}:{inside}"]
        if self.network:
            cmd += ["--network", self.network]
        for volume in self.volumes:
            cmd += ["-v", volume]
        if self.entrypoint:
            cmd += ["--entrypoint", self.entrypoint]
        docker(*cmd, self.image, *self.args)
        return self

    def __exit__(self, *exc):
        docker("rm", "-f", "-v", self.name, check=False)

    def url(self, port, path=""):
        return f"http://127.0.0.1:{self.ports[port]}{path}"

    def state(self):
        out = docker("inspect", "--format", "{{json .State}}", self.name, check=False).stdout
        return json.loads(out) if out.strip() else {}

    def health(self):
        return (self.state().get("Health") or {}).get("Status")

    def logs(self, tail=60):
        result = docker("logs", "--tail", tail, self.name, check=False)
        return result.stdout + result.stderr

    def exec(self, *args, check=True):
        return docker("exec", self.name, *args, check=check)

    def wait_healthy(self, timeout=120):
        def ready():
            state = self.state()
            if not state.get("Running", False) and state.get("Status") == "exited":
                pytest.fail(f"{self.image} exited ({state.get('ExitCode')}):\n{self.logs()}", pytrace=False)
            return self.health() == "healthy"
        wait_until(ready, timeout, f"{self.image} to be healthy")
        return self

    def wait_exit(self, timeout):
        state = wait_until(lambda: (s := self.state()).get("Status") == "exited" and s, timeout,
                           f"{self.image} to exit")
        return state["ExitCode"]


class Network:
    def __init__(self):
        self.name = unique("lhd-net")

    def __enter__(self):
        docker("network", "create", "--label", "org.lhd.test=1", self.name)
        return self.name

    def __exit__(self, *exc):
        docker("network", "rm", self.name, check=False)
