"""The generated development stack, brought up and down by the project's own
`script/up` and `script/down` (what is under test), and looked at through
testcontainers' `DockerCompose` (ps, logs, exec) on the same compose files.

Used by tests/e2e/stack (its fixtures) and benchmarks/dev_stack.py.

What this module relies on in testcontainers 4.15.0 (compose/compose.py):
- `DockerCompose(context, compose_file_name=[...], env_file=[...])` builds
  `docker compose -f ... --env-file ...` (compose_command_property) and runs
  every command with `subprocess.run(cmd, capture_output=True, check=True,
  cwd=context)` (`_run_command`): no `env=`, so compose sees this process's
  environment. It has no project-name parameter, and the project's .env names
  the default project; COMPOSE_PROJECT_NAME (and the harness's ports) are put
  into os.environ for the length of each call (`DevStack.compose_call`), and
  the environment beats --env-file in compose.
- `get_containers(include_all)` parses `ps --format json` into
  ComposeContainer (Service, State, Health, Publishers); `get_logs()` runs
  `logs`; `exec_in_container()` runs `exec -T` and, since `_run_command`
  checks, raises CalledProcessError on a non-zero exit (turned into
  CommandFailed here, with argv, stdout and stderr); `stop()` runs
  `down --volumes`.
"""

import os
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

from testcontainers.compose import DockerCompose

from harness.bake import bake
from harness.docker import docker, free_port, unique
from harness.proc import CommandFailed, failed, popen, run
from harness.wait import until

UP_TIMEOUT = 300  # seconds script/up may take here (warm images: about 25 s)
PORTS = ["LUCKY_PORT", "HASURA_PORT", "HASURA_CONSOLE_PORT", "HASURA_CONSOLE_API_PORT", "POSTGRES_PORT"]
COMPOSE_FILES = ["Docker/docker-compose.yml", "Docker/docker-compose.dev.yml"]


def _text(stream):
    return stream.decode(errors="replace") if isinstance(stream, bytes) else (stream or "")


@dataclass
class DevStack:
    """A rendered project, its compose project name and the ports the harness gives it."""

    project: Path
    name: str
    env: dict = field(default_factory=dict)
    last_up: subprocess.CompletedProcess = None
    notes: list = field(default_factory=list)

    def __post_init__(self):
        self.compose = DockerCompose(context=self.project,
                                     compose_file_name=[str(self.project / f) for f in COMPOSE_FILES],
                                     env_file=str(self.project / ".env"))

    def url(self, port_var, path=""):
        """http://127.0.0.1:<the port the harness gave port_var><path>."""
        return f"http://127.0.0.1:{self.env[port_var]}{path}"

    def script(self, name, *args, timeout=UP_TIMEOUT, extra_env=None, check=False):
        """Run the project's script/<name> with the harness's settings; the CompletedProcess, checked when check."""
        env = {**os.environ, **self.env, **(extra_env or {})}
        return run([self.project / "script" / name, *args], cwd=self.project, env=env, timeout=timeout, check=check)

    def up(self, **extra_env):
        """script/up (its result is kept for failure reports)."""
        self.last_up = self.script("up", extra_env=extra_env)
        return self.last_up

    def down(self):
        """script/down; if it fails, `docker compose down --volumes` so nothing is left behind. Then the images
        this throwaway project built (script/down keeps a user's images; a test's are of no further use)."""
        result = self.script("down", timeout=180)
        if result.returncode != 0:
            try:
                self.compose_call(self.compose.stop)
            except CommandFailed as error:
                self.notes.append(f"forced down failed too:\n{error}")
        docker("image", "rm", f"{self.name}-lucky:dev", f"{self.name}-hasura:dev", check=False)
        return result

    def compose_call(self, method, *args, **kwargs):
        """Call a DockerCompose method with COMPOSE_PROJECT_NAME and the ports in the environment; a failed
        compose command raises CommandFailed (argv, stdout, stderr)."""
        with mock.patch.dict(os.environ, self.env):
            try:
                return method(*args, **kwargs)
            except subprocess.CalledProcessError as error:
                result = subprocess.CompletedProcess(error.cmd, error.returncode, _text(error.stdout), _text(error.stderr))
                raise CommandFailed([str(a) for a in error.cmd], result) from None

    def services(self, include_all=False):
        """The project's containers as testcontainers ComposeContainers (`ps --format json`)."""
        return self.compose_call(self.compose.get_containers, include_all=include_all)

    def exec(self, service, *argv):
        """`exec -T service argv` through DockerCompose; (stdout, stderr); raises CommandFailed on a non-zero exit."""
        out, err, _ = self.compose_call(self.compose.exec_in_container, [str(a) for a in argv], service)
        return out, err

    def logs(self, tail_chars=8000):
        """Every service's log (DockerCompose.get_logs), the last tail_chars characters."""
        try:
            out, err = self.compose_call(self.compose.get_logs)
        except CommandFailed as error:
            return f"(no logs: {error})"
        return (out + err)[-tail_chars:]

    def failure_sections(self):
        """Report sections for a failed test: script/up's output and the services' logs."""
        sections = []
        if self.last_up is not None:
            sections.append(("script/up output", self.last_up.stdout[-4000:] + self.last_up.stderr[-4000:]))
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
        argv = [*self.compose.compose_command_property, "watch", "--no-up"]
        with popen(argv, log=log, stop_timeout=15, cwd=self.project, env={**os.environ, **self.env}) as watch:
            until(lambda: "watch enabled" in log.read_text().lower() or watch.poll() is not None, timeout,
                  lambda: f"compose watch to start:\n{log.read_text()}")
            if watch.poll() is not None:
                raise failed(argv, watch.returncode, log.read_text())
            yield watch


def make_stack(base, **answers):
    """Render the project under base with answers; a DevStack with a unique project name and free loopback ports."""
    project = bake(base, **answers)
    name = unique("lhde2e").replace("-", "")
    env = {"COMPOSE_PROJECT_NAME": name, "UP_TIMEOUT": str(UP_TIMEOUT - 30)}
    env.update({var: str(free_port()) for var in PORTS})
    return DevStack(project, name, env)
