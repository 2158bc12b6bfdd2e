"""The generated development stack, under test through its own scripts.

pytest-docker owns the stack's lifecycle: tests/e2e/stack/conftest.py overrides its `docker_compose_command`,
`docker_compose_file`, `docker_compose_project_name`, `docker_setup` and `docker_cleanup` fixtures and enters its
`get_docker_services()` (pytest_docker/plugin.py at the version pinned in requirements/constraints.txt), whose
setup and cleanup run `<compose command> -f FILE... -p NAME up` / `down`. The compose command given is
harness/compose_via_scripts, which runs the project's own `script/up` and `script/down` for those two and Docker
Compose for anything else, so what pytest-docker starts and stops is exactly what a user's scripts do.

The running stack is looked at with `docker compose ps --format json`, `logs` and `exec -T` through
harness.proc. Used by tests/e2e/stack (its fixtures) and benchmarks/dev_stack.py.
"""

import json
import os
import shlex
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import CompletedProcess
from types import SimpleNamespace

from harness import reaper
from harness.bake import bake
from harness.docker import docker, free_port
from harness.proc import CommandFailed, failed, popen, run
from harness.timing import timed
from harness.wait import until

UP_TIMEOUT = 300  # seconds script/up may take here (warm images: about 25 s)
PORTS = ["LUCKY_PORT", "HASURA_PORT", "HASURA_CONSOLE_PORT", "HASURA_CONSOLE_API_PORT", "POSTGRES_PORT"]
COMPOSE_FILES = ["Docker/docker-compose.yml", "Docker/docker-compose.dev.yml"]
SHIM = Path(__file__).resolve().with_name("compose_via_scripts")


def namespace(value):
    """JSON objects as attribute namespaces (ps --format json keeps Docker's names: Service, Health, Publishers)."""
    if isinstance(value, dict):
        return SimpleNamespace(**{key: namespace(item) for key, item in value.items()})
    if isinstance(value, list):
        return [namespace(item) for item in value]
    return value


@dataclass
class DevStack:
    """A rendered project, its compose project name and the ports the harness gives it."""

    project: Path
    name: str
    env: dict = field(default_factory=dict)
    last_up: CompletedProcess = None
    notes: list = field(default_factory=list)

    @property
    def up_log(self):
        return self.project.parent / f"{self.name}.up.log"

    # --- what pytest-docker is given --------------------------------------------------------------------------

    def compose_files(self):
        return [str(self.project / f) for f in COMPOSE_FILES]

    def compose_argv(self, *args):
        """`docker compose` on the project's files, its .env (what script/up loads) and its name."""
        files = [w for f in self.compose_files() for w in ("-f", f)]
        return ["docker", "compose", *files, "--env-file", str(self.project / ".env"), "-p", self.name, *args]

    def compose_command(self):
        """pytest-docker's compose command (a shell string, as its executor runs it): the ports, timeouts and the
        up log set by `env`, then the shim on this project."""
        settings = [f"{key}={value}" for key, value in {**self.env, "LHD_UP_LOG": self.up_log}.items()]
        return shlex.join(["env", *settings, str(SHIM), str(self.project)])

    def set_up_by_pytest_docker(self):
        """After pytest-docker's setup ran script/up (through the shim): its output, as last_up."""
        self.last_up = CompletedProcess(["script/up"], 0, self.up_log.read_text(), "")

    # --- the project's scripts, run directly -------------------------------------------------------------------

    def url(self, port_var, path=""):
        """http://127.0.0.1:<the port the harness gave port_var><path>."""
        return f"http://127.0.0.1:{self.env[port_var]}{path}"

    def script(self, name, *args, timeout=UP_TIMEOUT, extra_env=None, check=False):
        """Run the project's script/<name> with the harness's settings; the CompletedProcess, checked when check."""
        env = {**os.environ, **self.env, **(extra_env or {})}
        with timed(f"script/{name} (development stack)"):
            return run([self.project / "script" / name, *args], cwd=self.project, env=env, timeout=timeout,
                       check=check)

    def up(self, **extra_env):
        """script/up (its result is kept for failure reports)."""
        self.last_up = self.script("up", extra_env=extra_env)
        return self.last_up

    def down(self):
        """script/down; if it fails, `docker compose down --volumes` so nothing is left behind. Then the images
        this throwaway project built."""
        result = self.script("down", timeout=180)
        if result.returncode != 0:
            self.force_down()
        self.remove_images()
        return result

    def force_down(self):
        try:
            self.compose("down", "--volumes", "--remove-orphans", timeout=180)
        except CommandFailed as error:
            self.notes.append(f"forced down failed too:\n{error}")

    def remove_images(self):
        """The images this throwaway project built (script/down keeps a user's images; a test's are of no use)."""
        docker("image", "rm", f"{self.name}-lucky:dev", f"{self.name}-hasura:dev", check=False)

    # --- looking at the stack ------------------------------------------------------------------------------------

    def compose(self, *args, check=True, timeout=300):
        """`docker compose -f FILE... -p NAME ARGS` with the harness's settings; raises CommandFailed when check."""
        return run(self.compose_argv(*args), cwd=self.project, env={**os.environ, **self.env}, check=check, timeout=timeout)

    def services(self, include_all=False):
        """The project's containers (`ps --format json`, one object a line), with Docker's field names."""
        out = self.compose("ps", "--format", "json", *(["--all"] if include_all else [])).stdout
        return [namespace(json.loads(line)) for line in out.splitlines() if line.strip()]

    def exec(self, service, *argv):
        """`exec -T service argv`; (stdout, stderr); raises CommandFailed on a non-zero exit."""
        result = self.compose("exec", "-T", service, *argv)
        return result.stdout, result.stderr

    def logs(self, tail_chars=8000):
        """Every service's log, the last tail_chars characters."""
        result = self.compose("logs", "--no-color", check=False)
        return (result.stdout + result.stderr)[-tail_chars:]

    def failure_sections(self):
        """Report sections for a failed test: script/up's output and the services' logs."""
        sections = []
        if self.last_up is not None:
            sections.append(("script/up output", self.last_up.stdout[-4000:] + self.last_up.stderr[-4000:]))
        elif self.up_log.exists():
            sections.append(("script/up output (pytest-docker's setup)", self.up_log.read_text()[-8000:]))
        if self.notes:
            sections.append(("dev stack notes", "\n".join(self.notes)))
        return sections + [("service logs (last 8000 characters)", self.logs())]

    def leftovers(self):
        """Containers, networks and volumes still labelled with this compose project."""
        label = f"label=com.docker.compose.project={self.name}"
        return {
            "containers": docker("ps", "-aq", "--filter", label).stdout.split(),
            "networks": docker("network", "ls", "-q", "--filter", label).stdout.split(),
            "volumes": docker("volume", "ls", "-q", "--filter", label).stdout.split(),
        }

    @contextmanager
    def watching(self, log, timeout=60):
        """`docker compose watch --no-up` on the stack (output to the file log), yielded once it watches; stopped after."""
        argv = self.compose_argv("watch", "--no-up")
        with popen(argv, log=log, stop_timeout=15, cwd=self.project, env={**os.environ, **self.env}) as watch:
            until(lambda: "watch enabled" in log.read_text().lower() or watch.poll() is not None, timeout,
                  lambda: f"compose watch to start:\n{log.read_text()}")
            if watch.poll() is not None:
                raise failed(argv, watch.returncode, log.read_text())
            yield watch


def make_stack(base, **answers):
    """Render the project under base with answers; a DevStack with a unique project name (reaper.compose_name(): the
    reaper removes it at the session's end, or in a later run when this one was killed) and free loopback ports."""
    project = bake(base, **answers)
    name = reaper.compose_name()
    env = {"COMPOSE_PROJECT_NAME": name, "UP_TIMEOUT": str(UP_TIMEOUT - 30)}
    env.update({var: str(free_port()) for var in PORTS})
    return DevStack(project, name, env)
