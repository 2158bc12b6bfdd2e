"""Sessions that prove the template: `nox` runs render, lint, upgrade, compile, e2e, acme, drill, cluster.

`pipeline` runs only when asked (`nox -s pipeline`: about 30 minutes more, CONTRIBUTING.md "Where the time goes");
`cookie` and `bench` are tools, not proofs. The Docker sessions after e2e reuse its cached release build.

Options come from cookiecutter.json (the one source of answers); harness
packages are pinned in requirements/constraints.txt.
"""

import json
import os
import shutil
from pathlib import Path

import nox

nox.needs_version = ">=2024.4.15"
nox.options.sessions = ["render", "lint", "upgrade", "compile", "e2e", "acme", "drill", "cluster"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

ROOT = Path(__file__).parent
OPTIONS = json.loads((ROOT / "cookiecutter.json").read_text())
REQUIREMENTS = ["-r", "requirements/test.in", "-c", "requirements/constraints.txt"]
# Folder = marker = session: each session runs its folders of tests/ (tests/conftest.py marks every
# test by its folder, so `pytest -m MARKER` selects the same tests).
TIERS = {
    "render": ["tests/render"],
    "lint": ["tests/lint"],
    "upgrade": ["tests/upgrade"],
    "compile": ["tests/compile"],
    "e2e": ["tests/contracts", "tests/e2e"],
    "cluster": ["tests/cluster"],
    "pipeline": ["tests/pipeline"],
    "acme": ["tests/acme"],
    "drill": ["tests/drill"],
}


def install(session):
    """Install the pinned harness packages into the session."""
    session.install(*REQUIREMENTS)


def pytest_tier(session, tier, env=None, parallel=False):
    """pytest on the tier's folders (or on what was given after `--`); parallel: on every core (pytest-xdist), for
    a tier of many short tests that share no state outside their tmp dirs."""
    session.run("pytest", *(session.posargs or [*TIERS[tier], "-q", *(["-n", "auto"] if parallel else [])]), env=env)


# The render tier needs Python only (and git). While it runs, `docker` on PATH is
# this stand-in, so a render test that reaches for an engine or Compose fails
# here, loudly, instead of on the next fresh machine.
NO_DOCKER = """#!/bin/sh
echo "docker $* was called in the render session, which must not need Docker (use a fake, or move the test to lint or e2e)" >&2
exit 97
"""


def without_docker(session):
    """Environment for the session's commands with `docker` masked by a stand-in that fails loudly."""
    bin_dir = Path(session.create_tmp()) / "no-docker"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "docker").write_text(NO_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    return {"PATH": os.pathsep.join([str(bin_dir), session.bin, os.environ.get("PATH", "")])}


def lint_tools(session):
    """Install the system tools and the npm package the conformance tier runs."""
    session.run("bash", "tools/bootstrap", "tools", external=True)
    session.run("bash", "tools/bootstrap", "compose", external=True)
    session.run("npm", "ci", "--silent", "--no-audit", "--no-fund", "--prefix", "harness/rules/node", external=True)


def make_cookie(session, **answers):
    """Render the template into the session's tmp dir; return the project path."""
    out = Path(session.create_tmp()) / "cookie"
    shutil.rmtree(out, ignore_errors=True)
    extra = [f"{k}={v}" for k, v in answers.items()]
    session.run("cookiecutter", "--no-input", "-o", str(out), str(ROOT), *extra)
    name = answers.get("project_name", OPTIONS["project_name"])
    return out / name


@nox.session
def render(session):
    """Render every supported combination and check the result (no Docker)."""
    install(session)
    pytest_tier(session, "render", env=without_docker(session), parallel=True)


@nox.session
def lint(session):
    """Check every generated file with the real tool for its format."""
    lint_tools(session)
    install(session)
    pytest_tier(session, "lint")


@nox.session
def upgrade(session):
    """Regenerate a project from a newer template with cruft, keeping edits."""
    install(session)
    pytest_tier(session, "upgrade")


def docker_tier(session, tier):
    """Start the engine, install the harness, run pytest, then check no kit image kept an upstream name."""
    session.run("bash", "tools/bootstrap", "engine", external=True)
    session.run("bash", "tools/bootstrap", "tools", external=True)
    install(session)
    pytest_tier(session, tier, env={"TESTCONTAINERS_RYUK_DISABLED": "true"})
    session.run("python", "-m", "kit.kit", "leftovers")


@nox.session(name="compile")
def compile_check(session):
    """Check the rendered Lucky app with the real Crystal compiler before any stack starts."""
    docker_tier(session, "compile")


@nox.session
def e2e(session):
    """Run the Docker tier (image contracts, dev stack, swarm) in the image mode LHD_IMAGE_MODE picks."""
    docker_tier(session, "e2e")


@nox.session
def cluster(session):
    """Run the three-node swarm tier (registry, workers, node loss, monitoring) in containers."""
    docker_tier(session, "cluster")


@nox.session(default=False)
def pipeline(session):
    """Run the generated .gitlab-ci.yml's jobs with gitlab-ci-local against a real registry and a real SSH server."""
    session.run("bash", "tools/bootstrap", "pipeline", external=True)
    docker_tier(session, "pipeline")
    session.run("python", "-m", "kit.job_images", "leftovers")


@nox.session
def acme(session):
    """Let's Encrypt against Pebble: a tls=letsencrypt project with monitoring issued, restarted, redeployed,
    renewed and alerted on."""
    docker_tier(session, "acme")


@nox.session
def drill(session):
    """The disaster drill: a server lost and rebuilt from offsite backups by docs/offsite-backups.md's steps."""
    docker_tier(session, "drill")


@nox.session(default=False)
@nox.parametrize("monitoring", OPTIONS["monitoring"])
def cookie(session, monitoring):
    """Render one project for a look (path printed), by monitoring option."""
    install(session)
    project = make_cookie(session, monitoring=monitoring)
    session.log(f"rendered {project}")


@nox.session(default=False)
def bench(session):
    """Print the wall time of each test tier."""
    args = session.posargs or ["render", "lint", "upgrade"]
    lint_tools(session)
    install(session)
    for tier in args:
        session.run("python", "-m", "benchmarks.tier_time", tier)
