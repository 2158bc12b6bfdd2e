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


def run_stamped(deployment, name, *args, echo=False):
    """script/NAME ARGS of the deployment, each output line stamped with the second it arrived (printed as it comes
    when echo); (exit status, [(seconds, line)])."""
    log = deployment.workdir / f"{name}.log"
    argv = [deployment.project / "script" / name, *args]
    started, stamped = time.perf_counter(), []
    with popen(argv, log=log, env=deployment.env(), cwd=deployment.project, stdin=DEVNULL) as proc:
        while True:
            running = proc.poll() is None
            for line in log.read_text().splitlines()[len(stamped):]:
                stamped.append((time.perf_counter() - started, line))
                if echo:
                    print(f"  {stamped[-1][0]:6.1f} s  {line}", flush=True)
            if not running:  # everything it wrote before it ended has been read
                return proc.returncode, stamped
            time.sleep(0.2)


def timed_first_deploy(deployment):
    """script/bootstrap --swarm, then script/deploy --first SHA1 with each output line stamped; (seconds, lines)."""
    deployment.release(SHA1)
    deployment.script("bootstrap", "--swarm")
    started = time.perf_counter()
    code, stamped = run_stamped(deployment, "deploy", "--first", SHA1)
    seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"script/deploy --first exited {code}:\n" + "\n".join(line for _, line in stamped))
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
