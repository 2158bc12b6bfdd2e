"""Print the wall time of one test tier: python3 -m benchmarks.tier_time render|lint|upgrade.

Goals (issue tracker): render < 60 s, lint < 180 s on 2 cores. Figures are
printed, never asserted.
"""

import sys
import time
from pathlib import Path

from harness.proc import run

ROOT = Path(__file__).resolve().parent.parent


def main():
    tier = sys.argv[1] if len(sys.argv) > 1 else "render"
    start = time.perf_counter()
    result = run([sys.executable, "-m", "pytest", "-m", tier, "-q", "-p", "no:cacheprovider"], cwd=ROOT,
                 check=False, timeout=None)
    elapsed = time.perf_counter() - start
    summary = (result.stdout.strip().splitlines() or ["(no output)"])[-1]
    print(f"tier={tier} wall_seconds={elapsed:.1f} exit={result.returncode} result={summary!r}")
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
