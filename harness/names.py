"""The default project's names, derived once from cookiecutter.json the way cookiecutter derives them.

Nothing is rendered: cookiecutter's own `generate_context` and `prompt_for_config(no_input=True)` evaluate the
defaults' Jinja expressions (`swarm_name`, `repo_name`, the private `__registry`) with the template's extensions,
exactly as a bake with every default answer does. The rest follows the generated project's own rules:
- the database is `<project_name>_production` and its superuser `<project_name>` (script/bootstrap writes
  POSTGRES_USER/POSTGRES_DB from project_name), the app's own role `<POSTGRES_USER>_app`
  (Docker/docker-compose.prod.yml);
- swarm resources are `<swarm_name>_<service>`, the monitoring stack `<swarm_name>_monitoring`, node labels
  `<swarm_name>.<role>` (script/functions/swarm).
"""

import sys
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

from cookiecutter.generate import generate_context
from cookiecutter.prompt import prompt_for_config

from harness.combinations import ROOT


@contextmanager
def _template_on_path():
    """The template's directory on sys.path while its `_extensions` (hooks.jinja_guard) are imported, as
    cookiecutter's main does."""
    sys.path.insert(0, str(ROOT))
    try:
        yield
    finally:
        sys.path.remove(str(ROOT))


@cache
def answers(**extra):
    """cookiecutter's answers (private ones included) for the defaults, with `extra` answers given."""
    context = generate_context(str(ROOT / "cookiecutter.json"), extra_context=extra or None)
    with _template_on_path():
        return dict(prompt_for_config(context, no_input=True))


@dataclass(frozen=True)
class Names:
    project: str  # project_name: the database, its superuser, the dev stack
    swarm: str  # swarm_name: the stack, its services, volumes, secrets and node labels
    owner: str  # repo_owner
    repo: str  # repo_name
    registry: str  # where the images go: <registry host>/<owner>/<repo>

    @property
    def registry_host(self):
        return self.registry.split("/")[0]

    @property
    def registry_path(self):
        """The registry's repository path of the project (<owner>/<repo>), as its catalog lists it."""
        return self.registry.split("/", 1)[1]

    @property
    def database(self):
        return f"{self.project}_production"

    @property
    def superuser(self):
        return self.project

    @property
    def app_role(self):
        return f"{self.superuser}_app"

    @property
    def monitoring(self):
        """The monitoring stack's name."""
        return f"{self.swarm}_monitoring"

    def service(self, name, stack=None):
        """The swarm name of the stack's service (default: the app stack)."""
        return f"{stack or self.swarm}_{name}"


def names(**extra):
    """The names of the project rendered with the defaults (and `extra` answers)."""
    given = answers(**extra)
    return Names(project=given["project_name"], swarm=given["swarm_name"], owner=given["repo_owner"],
                 repo=given["repo_name"], registry=given["__registry"])


DEFAULT = names()
