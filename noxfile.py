"""Sessions that prove the template, every tier at once in lanes, pipeline and cluster included: `nox` runs all.

`nox -s all` runs every tier, in lanes that run at once (harness/lanes.py, CONTRIBUTING.md "Lanes"); when the compile
tier (the gate) fails, no further step starts. Each tier is also a session of its own (`nox -s e2e`), for running
part of the suite. `cookie` and `bench` are tools, not proofs.

Options come from cookiecutter.json (the one source of answers); harness
packages are pinned in requirements/constraints.txt.
"""

import json
import os
import shutil
import sys
import time
from pathlib import Path

import nox

sys.path.insert(0, str(Path(__file__).parent))  # harness.lanes (standard library only), whichever way nox started
from harness import lanes  # noqa: E402

nox.needs_version = ">=2024.4.15"
nox.options.sessions = ["all"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

ROOT = Path(__file__).parent
OPTIONS = json.loads((ROOT / "cookiecutter.json").read_text())
REQUIREMENTS = ["-r", "requirements/test.in", "-c", "requirements/constraints.txt"]
TIERS = lanes.TIERS  # folders of tests/ by session
TIER_ARGS = {"render": ["-n", "auto"]}  # on every core (pytest-xdist): many short tests sharing nothing but tmp dirs


def install(session):
    """Install the pinned harness packages into the session."""
    session.install(*REQUIREMENTS)


def pytest_tier(session, tier, env=None):
    """pytest on the tier's folders (or on what was given after `--`)."""
    session.run("pytest", *(session.posargs or [*TIERS[tier], "-q", *TIER_ARGS.get(tier, [])]), env=env)


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
    pytest_tier(session, "render", env=without_docker(session))


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


DOCKER_ENV = {"TESTCONTAINERS_RYUK_DISABLED": "true"}  # harness/reaper.py removes what a run leaves


def docker_tools(session, pipeline=False):
    """Start the engine and install the system tools (and gitlab-ci-local for the pipeline tier) and the harness."""
    session.run("bash", "tools/bootstrap", "engine", external=True)
    session.run("bash", "tools/bootstrap", "tools", external=True)
    if pipeline:
        session.run("bash", "tools/bootstrap", "pipeline", external=True)
    install(session)


def no_leftovers(session, pipeline=False):
    """No kit image (nor, after the pipeline tier, job image stand-in) kept an upstream name."""
    session.run("python", "-m", "kit.kit", "leftovers")
    if pipeline:
        session.run("python", "-m", "kit.job_images", "leftovers")


def docker_tier(session, tier):
    """Start the engine, install the harness, run pytest, then check no kit image kept an upstream name."""
    docker_tools(session, pipeline=tier == "pipeline")
    pytest_tier(session, tier, env=DOCKER_ENV)
    no_leftovers(session, pipeline=tier == "pipeline")


@nox.session(name="all")
def all_tiers(session):
    """Every proof: every tier in lanes that run at once (harness/lanes.py; a failed compile tier starts no further
    step); each step's output is printed whole when it ends, then its `step=` line and the wall time."""
    if session.posargs:
        session.error("`all` takes no pytest arguments: give them to one tier's session (nox -s e2e -- -k restore)")
    lint_tools(session)
    docker_tools(session, pipeline=True)
    # The lanes start their own processes, which --install-only would not stop: a skipped session.run (None,
    # where a silent run gives its output) says nox was asked to install only.
    if session.run("python", "-c", "", silent=True) is None:
        return
    quiet = without_docker(session)

    def command(step):
        tier, folders = lanes.step_tier(step)
        argv = [Path(session.bin) / "python", "-m", "pytest", *folders, "-q", "-p", "no:cacheprovider",
                *TIER_ARGS.get(tier, [])]
        path = quiet if tier == "render" else {"PATH": os.pathsep.join([session.bin, os.environ.get("PATH", "")])}
        return argv, {**os.environ, **DOCKER_ENV, **path}

    start = time.monotonic()
    done = lanes.run_lanes(lanes.LANES, command, Path(session.create_tmp()) / "lanes",
                           echo=lambda text: print(text, flush=True), gate=lanes.GATE, nice=lanes.CPU_ONLY)
    for line in lanes.report(done, time.monotonic() - start):
        print(line, flush=True)
    no_leftovers(session, pipeline=True)
    failed = [step.name for step in done if step.failed]
    skipped = [step.name for step in done if step.skipped]
    if failed:
        session.error(f"failed: {', '.join(failed)} (each step's output is above, under its name)"
                      + (f"; not run: {', '.join(skipped)}" if skipped else ""))


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


@nox.session
def pipeline(session):
    """Run the generated .gitlab-ci.yml's jobs with gitlab-ci-local against a real registry and a real SSH server."""
    docker_tier(session, "pipeline")


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
