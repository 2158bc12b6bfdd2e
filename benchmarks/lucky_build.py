"""Print how long the real Lucky builds take: the development image (shards,
healthcheck, lucky_cli) and one production release build (script/build), both
without Docker's layer cache for the project, on the images the mode picks; then
the next release after an edit to a script (script/deploy), which a user makes
as often as to the code: it should reuse the cached Crystal build; and the same
release of a project rendered with other answers (what another test tier builds).

    python3 -m benchmarks.lucky_build             # all four builds
    python3 -m benchmarks.lucky_build --release   # the three release builds only
    python3 -m benchmarks.lucky_build --dev       # the development image only

Local mode builds the kit first (real Crystal and shards, Lucky from the
shards mirror); the kit's own build time is benchmarks/kit_build.py's.
"""

import sys
import tempfile
import time
from pathlib import Path

from cookiecutter.main import cookiecutter  # noqa: E402

from harness.proc import run
from kit import kit


def timed(label, argv, cwd):
    start = time.perf_counter()
    run(argv, cwd=cwd, timeout=3600)
    seconds = time.perf_counter() - start
    print(f"{label}: wall_seconds={seconds:.1f}", flush=True)
    return seconds


def main():
    with kit.images_for_run() as (_, report), tempfile.TemporaryDirectory() as tmp:
        print("\n".join(report))
        project = Path(cookiecutter(str(kit.ROOT), no_input=True, output_dir=tmp, extra_context={"project_name": "bench_app"}))
        dev = f"bench-{int(time.time())}-lucky:dev"
        registry = "registry.gitlab.com/my-group/bench-app"
        try:
            if "--release" not in sys.argv[1:]:
                timed("dev image (no cache)", ["docker", "build", "--no-cache", "--target", "development",
                                               "-f", "Docker/lucky/Dockerfile", "-t", dev, "."], project)
            if "--dev" in sys.argv[1:]:
                return
            timed("release build (script/build, base cached)", [project / "script/build", "feed0001"], project)
            size = run(["docker", "image", "inspect", "--format", "{{.Size}}", f"{registry}/lucky:feed0001"]).stdout
            print(f"production image: size_mb={int(size) / 1e6:.1f}")
            with (project / "script/deploy").open("a") as script:
                script.write("# an edit to a script, not to the app\n")
            timed("next release after a script edit (script/build, previous build cached)",
                  [project / "script/build", "feed0002"], project)
            # Other answers, the same compiler inputs: another tier's project (acme's answers) shares the compile.
            other = Path(cookiecutter(str(kit.ROOT), no_input=True, output_dir=f"{tmp}/other", extra_context={
                "project_name": "bench_app", "tls": "letsencrypt", "monitoring": "yes", "ci": "none"}))
            timed("the same release of a project with other answers (tls=letsencrypt, ci=none)",
                  [other / "script/build", "feed0003"], other)
        finally:
            images = [dev] + [f"{registry}/{name}:{sha}" for name in ("lucky", "lucky-base", "hasura")
                              for sha in ("feed0001", "feed0002", "feed0003")]
            run(["docker", "image", "rm", "-f", *images], check=False)


if __name__ == "__main__":
    main()
