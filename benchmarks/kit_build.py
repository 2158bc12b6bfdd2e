"""Print the local image kit's cold build time and warm no-op time.

    python3 -m benchmarks.kit_build          # cold: removes the kit's images first
    python3 -m benchmarks.kit_build --warm   # warm only

Goals (issue tracker): cold < 8 min, warm no-op < 10 s on 2 cores. The kit
includes the real Crystal toolchain (Debian sid) and the shards mirror.
"""

import sys
import time

from harness.proc import run
from kit import kit


def remove_kit():
    """Remove every kit image and the build cache (the kit lends upstream names only during runs)."""
    names = list(kit.BASES) + [image.name for image in kit.images()]
    run(["docker", "image", "rm", "-f", *names], check=False)
    run(["docker", "builder", "prune", "-af"], check=False)


def timed(label):
    start = time.perf_counter()
    spent = kit.build()
    elapsed = time.perf_counter() - start
    print(f"{label}: wall_seconds={elapsed:.1f} images_built={len([t for t in spent if spent[t] > 0.05])}")
    return elapsed


def main():
    if "--warm" not in sys.argv:
        remove_kit()
        timed("cold")
    timed("warm")


if __name__ == "__main__":
    main()
