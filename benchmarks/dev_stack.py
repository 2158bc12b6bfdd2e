"""Print how long the generated project's script/up takes to `✔ All done.` with
warm images, and how long script/down takes. Goal: up < 60 s on 2 cores.

    python3 -m benchmarks.dev_stack [RUNS]

Uses the image mode LHD_IMAGE_MODE picks (local: the image kit, built first).
"""

import sys
import tempfile
import time
from pathlib import Path

from harness.devstack import make_stack
from kit import kit


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    with kit.images_for_run() as (_, report), tempfile.TemporaryDirectory() as tmp:
        print("\n".join(report))
        stack = make_stack(Path(tmp))
        try:
            stack.script("up", check=True)  # the first run builds the project's images
            stack.down()
            for run in range(1, runs + 1):
                start = time.perf_counter()
                up = stack.up()
                up_seconds = time.perf_counter() - start
                start = time.perf_counter()
                down = stack.down()
                down_seconds = time.perf_counter() - start
                ok = up.returncode == 0 and "All done" in up.stdout and down.returncode == 0
                print(f"run={run} up_seconds={up_seconds:.1f} down_seconds={down_seconds:.1f} ok={ok}")
                if not ok:
                    print(up.stdout[-2000:], up.stderr[-2000:])
                    sys.exit(1)
        finally:
            stack.down()


if __name__ == "__main__":
    main()
