"""Where the suite's time goes: run nox sessions one after another, with pytest's --durations=0, and print each
session's wall time and result (for `all`, each step's lane, start, wall time and result: harness/lanes.py), then
per session the modules and the single tests that took longest (setup, call and teardown added up), and where the
time went by kind of operation (the project's scripts, bounded waits, the image kit: harness/timing.py), so a
change that saves time can show it.

    python3 -m benchmarks.suite_time                   # every session `nox` runs, in its order
    python3 -m benchmarks.suite_time all               # every tier, in lanes (harness/lanes.py)
    python3 -m benchmarks.suite_time render lint e2e   # these sessions, one after another
    python3 -m benchmarks.suite_time --top 15 e2e      # more lines per session

Figures are printed (and the raw pytest output kept under benchmarks/results/), never asserted. The run is the
README's: each session installs what it needs, so a cold machine measures the cold figures.
"""

import argparse
import ast
import os
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

from harness import lanes, timing
from harness.proc import run

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DURATION = re.compile(r"^\s*([0-9.]+)s (setup|call|teardown)\s+(\S+?)(?:::(\S+))?$")


def default_sessions():
    """The sessions `nox` runs with no arguments (nox.options.sessions in noxfile.py)."""
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    return next(ast.literal_eval(node.value) for node in tree.body
                if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "nox.options.sessions")


def run_session(name):
    """Run one nox session with --durations=0; return (seconds, exit status, output)."""
    env = {**os.environ, "PYTEST_ADDOPTS": "--durations=0 --durations-min=0"}
    start = time.perf_counter()
    result = run([sys.executable, "-m", "nox", "-s", name], cwd=ROOT, env=env, check=False, timeout=None)
    return time.perf_counter() - start, result.returncode, result.stdout + result.stderr


def durations(output):
    """{(module, test): seconds} and {module: seconds} from pytest's durations report."""
    per_test, per_module = defaultdict(float), defaultdict(float)
    for line in output.splitlines():
        match = DURATION.match(line)
        if match:
            seconds, _, module, test = match.groups()
            per_test[(module, test or "(module fixtures)")] += float(seconds)
            per_module[module] += float(seconds)
    return per_test, per_module


def time_by_kind(output):
    """The lines of the run's "where the time went" section (harness/timing.py), as printed."""
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if timing.HEADER in line and line.startswith(("=", "_"))), None)
    if start is None:
        return []
    kept = []
    for line in lines[start + 1:]:
        if not re.match(r"^\s*[0-9.]+s\s+\d+×", line):
            break
        kept.append(line.strip())
    return kept


def summary(output):
    """pytest's last summary line; for `all`, which runs many pytest processes, how many steps passed and failed."""
    steps = dict.fromkeys(line for line in output.splitlines() if line.startswith("step="))
    if steps:
        failed = sum(" exit=0 " not in line for line in steps)
        return f"{len(steps) - failed} steps passed, {failed} failed"
    return lanes.summary(output)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sessions", nargs="*")
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    sessions = args.sessions or default_sessions()
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows, total, worst = [], 0.0, 0
    for name in sessions:
        seconds, status, output = run_session(name)
        (RESULTS / f"suite_time-{name}.log").write_text(output)
        total += seconds
        worst = max(worst, status)
        per_test, per_module = durations(output)
        rows.append((name, seconds, status, summary(output)))
        print(f"session={name} wall_seconds={seconds:.0f} exit={status} result={summary(output)!r}", flush=True)
        # `all` prints each step's line when it ends and again, in start order, at its end: the second set once.
        for line in dict.fromkeys(line for line in output.splitlines() if line.startswith(("step=", "lanes: wall_"))):
            print(f"  {line}")
        for module, spent in sorted(per_module.items(), key=lambda kv: -kv[1])[:args.top]:
            print(f"  module {spent:7.1f}s  {module}")
        for (module, test), spent in sorted(per_test.items(), key=lambda kv: -kv[1])[:args.top]:
            print(f"  test   {spent:7.1f}s  {module}::{test}")
        for line in time_by_kind(output):
            print(f"  kind   {line}")
    print(f"total wall_seconds={total:.0f} ({total / 60:.1f} min) sessions={len(rows)}")
    sys.exit(worst)


if __name__ == "__main__":
    main()
