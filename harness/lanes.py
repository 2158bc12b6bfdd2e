"""Every proof in one run, in lanes that run at once: `nox -s all` (noxfile.py `all_tiers`).

A Docker tier spends most of its time waiting (a stack converging, a health check's interval, an alert's `for:`,
a challenge), so two cores hold more than one at a time. A lane runs its steps one after another; the lanes run
side by side. The lanes split the tiers by what they hold on this machine:

- `swarm`: this host's single-node swarm. Its Traefik publishes ports 80 and 443 in host mode and its node
  carries the stateful roles' labels, so one project's stack owns it at a time: e2e's swarm modules.
- `host`: the compile tier (the gate, below), then containers on this host's engine, each on ports of 127.0.0.1
  the engine picks and labelled with its run (harness/reaper.py): e2e's image contracts and dev stack, then the
  cluster and the pipeline tier's third part, the servers set up from nothing (Docker-in-Docker nodes).
- `pipeline`: the generated CI files' jobs, on engines of their own (the jobs' Docker-in-Docker, the servers'
  nodes), then the drill, then lint and upgrade.
- `acme`: the ACME module on a swarm of its own (a Docker-in-Docker node, harness/acme.py `AcmeNode`), then
  render. acme ran after e2e's swarm modules on this host's swarm until run 30 (2026-12-05), where it made the
  swarm lane the longest by its whole length (run 29: 2349 s, against 2093 s and 2001 s). Run 30 (these lanes)
  ended at 2177 s, e2e's swarm modules last. Runs 31 and 32 spread the host's and pipeline's last steps over
  the acme lane, so that all three ended 190-260 s before e2e's swarm modules: 2162 s, then 2396 s with one
  of e2e's waits timed out under the load (a task start failed in the engine and was retried). With four
  lanes busy to the end, e2e's swarm modules, the floor, had the least room; these lanes keep it.
  Render, lint and upgrade need only the CPU: at a lane's end, where the machine is quieter, they take half as long
  as at its start (render 134-168 s against 256 s, upgrade 68-86 s against 243 s), so they fill the lanes' ends,
  which they follow (a fresh clone, 2 cores). In run 21 (2026-12-05) the lanes ended at 2783 s (pipeline, render
  and upgrade at its end), 2661 s (host, lint second) and 2644 s (swarm); then the GitLab part's first build was
  given main's compile and acme's certificates were due 2 minutes sooner, lint went to the pipeline lane's end and
  render to the host lane's: in run 23 they ended at 2709 s (pipeline), 2630 s (swarm) and 2629 s (host).

What the lanes share is made safe for overlapping runs where it lives: the kit's inputs are fetched and its images
built one at a time (harness/docker.py `turn`), and its images lent their upstream names until the last run on the
engine holding them ends, whichever checkout it runs from (kit/kit.py `upstream_names`); Lucky release builds on the
host take turns so the second finds the first's layers (harness/docker.py `release_build`); the `docker save` files
nodes load images from are written once per machine (harness/cluster_nodes.py `saved_images`); and the drill copies the
release a running e2e session built instead of parking it.

Only the standard library here: noxfile.py imports this module into nox's own interpreter.
"""

import re
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from harness.proc import popen

# Folder = marker = session: each nox session runs its folders of tests/ (tests/conftest.py marks every test by
# its folder, so `pytest -m MARKER` selects the same tests).
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
# Tiers split into steps: their parts run in different lanes, or one after another in the same lane. A part's
# session fixtures are its own (the pipeline's parts each start a registry, a server and a jobs' engine).
PARTS = {
    # e2e's swarm modules hold this host's swarm; the rest only containers.
    "e2e:swarm": ("e2e", ["tests/e2e/swarm"]),
    "e2e:containers": ("e2e", ["tests/contracts", "tests/e2e/stack"]),
    # The GitLab project's pipeline (and the doctor on its prepared server), the GitHub project's, and the servers
    # set up from nothing (provisioned, then the README's production path).
    "pipeline:gitlab": ("pipeline", ["tests/pipeline/test_doctor_live.py", "tests/pipeline/test_gitlab.py"]),
    "pipeline:github": ("pipeline", ["tests/pipeline/test_github.py"]),
    "pipeline:servers": ("pipeline", ["tests/pipeline/test_provision.py", "tests/pipeline/test_provision_deploy.py",
                                      "tests/pipeline/test_runbook.py"]),
}
# The gate: the compile tier, first in its lane. When it fails (a template whose Lucky app does not compile), no
# step starts after it in any lane; the steps already running end on their own (a stopped pytest would leave its
# stacks). It no longer runs alone before the lanes: the image kit it used to build first is built by whichever
# step asks first (one build at a time, harness/docker.py `turn`; the others wait for it), and warm its semantic
# checks left a core idle for 75 s while every lane waited (run 18, 2026-12-05).
GATE = "compile"
LANES = {
    "swarm": ["e2e:swarm"],
    "host": [GATE, "e2e:containers", "cluster", "pipeline:servers"],
    "pipeline": ["pipeline:gitlab", "pipeline:github", "drill", "lint", "upgrade"],
    "acme": ["acme", "render"],
}
# The steps that need only the CPU run at a lower priority (`nice -n NICE`): on 2 cores they would otherwise take
# the CPU from the steps driving stacks, whose waits are bounded and whose end is the run's: e2e's swarm modules,
# the longest step, the run's floor.
CPU_ONLY = ("render", "lint", "upgrade")
NICE = 10
SUMMARY = re.compile(r"^=*\s*(\d+ (passed|failed|error).*?) in [0-9.]+s")


def step_tier(step):
    """(tier, folders) of a step: a whole tier, or a part of one (PARTS)."""
    return PARTS[step] if step in PARTS else (step, TIERS[step])


def steps():
    """Every step `all` runs, in lane order."""
    return [step for lane in LANES.values() for step in lane]


@dataclass
class Step:
    """One step's run: its lane, when it started (seconds after the lanes did), how long it took, its exit status
    and pytest's summary line."""

    name: str
    lane: str
    log: Path
    started: float = 0.0
    seconds: float = 0.0
    status: int | None = None
    result: str = "(no pytest summary)"

    @property
    def skipped(self):
        """Never started (the gate had failed)."""
        return self.status is None

    @property
    def failed(self):
        return not self.skipped and self.status != 0

    def line(self):
        return (f"step={self.name} lane={self.lane} start={self.started:.0f} wall_seconds={self.seconds:.0f} "
                f"exit={self.status} result={self.result!r}")


def summary(text):
    """pytest's last summary line in text ("12 passed, 1 skipped"), or a placeholder."""
    found = [m.group(1) for line in text.splitlines() if (m := SUMMARY.match(line.strip("= ")))]
    return found[-1] if found else "(no pytest summary)"


def run_lanes(lanes, command, log_dir, echo=print, poll=2.0, gate=None, nice=()):
    """Run each lane's steps one after another and the lanes at once. command(step) -> (argv, env) for a step;
    the steps named in `nice` run under `nice -n NICE`;
    its output goes to log_dir/<step>.log and is echoed whole when it ends, then its `step=` line, so the
    output reads as the steps' outputs one after another. A failed step does not stop its lane, except the
    gate: once it has failed, no step starts any more (each is reported as not run). Returns the Steps in the
    order they ended."""
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    queues = {lane: list(names) for lane, names in lanes.items()}
    running, done = {}, []
    start = time.monotonic()
    with ExitStack() as stack:  # a step still running when this ends (an interrupt) is stopped
        while any(queues.values()) or running:
            if any(step.name == gate and step.failed for step in done):
                for lane, queue in queues.items():
                    for name in queue:
                        step = Step(name, lane, log_dir / f"{name.replace(':', '-')}.log",
                                    result=f"(not run: {gate} failed)")
                        echo(step.line())
                        done.append(step)
                    queue.clear()
            for lane, queue in queues.items():
                if lane not in running and queue:
                    name = queue.pop(0)
                    step = Step(name, lane, log_dir / f"{name.replace(':', '-')}.log")
                    argv, env = command(step.name)
                    if step.name in nice:
                        argv = ["nice", "-n", str(NICE), *argv]
                    step.started = time.monotonic() - start
                    echo(f"lanes: {lane}: {step.name} started at {step.started:.0f} s")
                    running[lane] = (step, stack.enter_context(popen(argv, log=step.log, env=env)))
            for lane, (step, proc) in list(running.items()):
                if proc.poll() is None:
                    continue
                step.seconds = time.monotonic() - start - step.started
                step.status = proc.returncode
                text = step.log.read_text(errors="replace")
                step.result = summary(text)
                echo(f"\n{'=' * 30} {step.name} ({lane} lane) {'=' * 30}\n{text.rstrip()}")
                echo(step.line())
                done.append(step)
                del running[lane]
            if running:
                time.sleep(poll)
    return done


def report(done, wall):
    """The closing lines: each step's `step=` line in the order they started, and the wall time."""
    lines = [step.line() for step in sorted(done, key=lambda s: s.started)]
    failed = [step.name for step in done if step.failed]
    skipped = [step.name for step in done if step.skipped]
    lines.append(f"lanes: wall_seconds={wall:.0f} ({wall / 60:.1f} min), the steps' own {sum(s.seconds for s in done):.0f} s"
                 + (f"; failed: {', '.join(failed)}" if failed else "" if skipped else "; every step passed")
                 + (f"; not run: {', '.join(skipped)}" if skipped else ""))
    return lines
