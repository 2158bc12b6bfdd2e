"""The development stack, brought up by the generated project's own scripts."""

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import bake
from tests.dockerlib import docker, free_port, unique

UP_TIMEOUT = 300  # seconds script/up may take here (warm images: about 25 s)
PORTS = ["LUCKY_PORT", "HASURA_PORT", "HASURA_CONSOLE_PORT", "HASURA_CONSOLE_API_PORT", "POSTGRES_PORT"]


@dataclass
class DevStack:
    project: Path
    name: str
    env: dict = field(default_factory=dict)
    last_up: subprocess.CompletedProcess = None

    def url(self, port_var, path=""):
        return f"http://127.0.0.1:{self.env[port_var]}{path}"

    def script(self, name, *args, timeout=UP_TIMEOUT, extra_env=None):
        env = {**os.environ, **self.env, **(extra_env or {})}
        return subprocess.run([self.project / "script" / name, *args], cwd=self.project, env=env,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def up(self, **extra_env):
        self.last_up = self.script("up", extra_env=extra_env)
        return self.last_up

    def compose(self, *args, check=True):
        files = ["-f", self.project / "Docker/docker-compose.yml", "-f", self.project / "Docker/docker-compose.dev.yml"]
        return docker("compose", "-p", self.name, "--env-file", self.project / ".env", *files, *args, check=check)

    def logs(self, tail=40):
        result = self.compose("logs", "--no-color", "--tail", tail, check=False)
        return result.stdout + result.stderr

    def failure_sections(self):
        sections = []
        if self.last_up is not None:
            sections.append(("script/up output", self.last_up.stdout[-4000:] + self.last_up.stderr[-4000:]))
        return sections + [("service logs (last 40 lines each)", self.logs())]

    def down(self):
        result = self.script("down", timeout=180)
        if result.returncode != 0:  # never leave anything behind
            self.compose("down", "-v", "--remove-orphans", check=False)
        return result

    def leftovers(self):
        label = f"label=com.docker.compose.project={self.name}"
        return {
            "containers": docker("ps", "-aq", "--filter", label).stdout.split(),
            "networks": docker("network", "ls", "-q", "--filter", label).stdout.split(),
            "volumes": docker("volume", "ls", "-q", "--filter", label).stdout.split(),
        }


def make_stack(base, **answers):
    project = bake(base, **answers)
    name = unique("lhde2e").replace("-", "")
    env = {"COMPOSE_PROJECT_NAME": name, "UP_TIMEOUT": str(UP_TIMEOUT - 30)}
    env.update({var: str(free_port()) for var in PORTS})
    return DevStack(project, name, env)


@pytest.fixture(scope="module")
def dev_stack(image_mode, tmp_path_factory):
    """script/up on a default project; script/down (and a forced down) afterwards."""
    stack = make_stack(tmp_path_factory.mktemp("dev"))
    try:
        stack.up()
        yield stack
    finally:
        stack.down()
