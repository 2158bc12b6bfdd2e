"""Print how long the generated `script/deploy --first` takes, and where its time goes, at production intervals.

    python3 -m benchmarks.first_deploy [RUNS]

A local swarm is created if none runs (and left afterwards). Each run renders nothing new: the project and its
release images are prepared once (cached by content), then `script/bootstrap --swarm` and `script/deploy --first`
run, timed, and the stack is removed with its volumes before the next run. Healthchecks and update monitors keep
the production values (no harness override), since a first deploy waits for every service's first healthy check.
The deploy's own lines are timed as they arrive, so the phases (stack deployed, PostgreSQL up, migrated, every
service running) are printed with the second each began. Goal (issue 26): under 45 s.
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness.proc import DEVNULL, popen
from harness.swarm import SHA1, Swarm, prepare
from kit import kit


def timed_first_deploy(deployment):
    """script/bootstrap --swarm, then script/deploy --first SHA1 with each output line stamped; (seconds, lines)."""
    deployment.release(SHA1)
    deployment.script("bootstrap", "--swarm")
    log = deployment.workdir / "first-deploy.log"
    argv = [deployment.project / "script/deploy", "--first", SHA1]
    started = time.perf_counter()
    stamped = []
    with popen(argv, log=log, env=deployment.env(), cwd=deployment.project, stdin=DEVNULL) as proc:
        seen = 0
        while proc.poll() is None or seen < len(log.read_text().splitlines()):
            lines = log.read_text().splitlines()
            for line in lines[seen:]:
                stamped.append((time.perf_counter() - started, line))
            seen = len(lines)
            time.sleep(0.2)
        code = proc.returncode
    seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"script/deploy --first exited {code}:\n{log.read_text()}")
    return seconds, stamped


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    with kit.images_for_run() as (mode, report), Swarm(), tempfile.TemporaryDirectory() as tmp:
        print("\n".join(report))
        deployment = prepare(Path(tmp), mode, releases=(SHA1,), fast=False)  # production intervals
        times = []
        try:
            for run in range(1, runs + 1):
                seconds, stamped = timed_first_deploy(deployment)
                times.append(seconds)
                print(f"run {run}: script/deploy --first {seconds:.1f} s", flush=True)
                for at, line in stamped:
                    print(f"  {at:6.1f} s  {line}")
                deployment.close()
        finally:
            deployment.close()
    print(f"first deploy seconds: min={min(times):.1f} median={statistics.median(times):.1f} "
          f"max={max(times):.1f} runs={len(times)}")


if __name__ == "__main__":
    main()
