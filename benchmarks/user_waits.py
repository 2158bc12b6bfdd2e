"""Print what a user of the generated project waits for, on this machine (issue 26, "the figures users feel").

    python3 -m benchmarks.user_waits [--production] [ROWS]   # --production: only the production part

Development, on a project rendered under a name of its own, so that Docker's layer cache holds nothing of it (the
base images are there, the kit's, as they are once pulled):
- `script/up` cold (it builds the development images) and warm (again after `script/down`, which keeps them);
- edit -> served: an action edited while `docker compose watch --no-up` runs (what `script/up --watch` starts
  after the stack is up), until Lucky answers with the edit (`lucky watch` recompiles it);
- `script/build` cold, then after an edit to that action (the previous build as cache: shards and the base layers
  are reused, Crystal compiles again), then after an edit to a script only (the compile is reused).
Production, the default project on this host's swarm at production intervals (no harness override), its release
images from the machine's cache (the e2e tier's releases):
- `script/deploy --first`, an additive `script/deploy` (SHA2: two added migrations), `script/rollback --yes` back to
  SHA1 (it backs up first and undoes the migrations);
- `script/backup` and `script/restore --yes` of a database of ROWS notes (default 200000; the database's size and
  the dump's are printed).
Each production script's lines are printed with the second each arrived, so a slow phase shows where it is.
A swarm is created if none runs (and left afterwards); every stack, volume and image made here is removed.
"""

import sys
import tempfile
import time
from pathlib import Path
from subprocess import CompletedProcess

import requests

from benchmarks.first_deploy import run_stamped
from harness.devstack import make_stack
from harness.docker import docker
from harness.swarm import SHA1, SHA2, Swarm, prepare
from harness.wait import until
from kit import kit

ACTION = "src/actions/home/index.cr"
figures = []  # (label, seconds before, seconds now)


def timed(label, action, before=None):
    """Run action(); record and print its wall time under label, beside `before`, the figure issue 26 gave when it
    was filed (2 cores, this machine), if it gave one; return its result."""
    start = time.perf_counter()
    result = action()
    seconds = time.perf_counter() - start
    figures.append((label, before, seconds))
    print(f"{label}: {seconds:.1f} s", flush=True)
    return result


def done(result):
    """A script's CompletedProcess, which must have ended with `✔ All done.`."""
    if result.returncode != 0 or "All done" not in result.stdout:
        raise SystemExit(f"exit {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def stamped(deployment, name, *args):
    """script/NAME ARGS of the deployment, its lines printed with the second each arrived (benchmarks/first_deploy.py
    `run_stamped`); its CompletedProcess (stdout and stderr together in stdout)."""
    code, lines = run_stamped(deployment, name, *args, echo=True)
    return CompletedProcess([name, *args], code, "\n".join(line for _, line in lines), "")


def development(base):
    stack = make_stack(base, project_name=f"waits_{int(time.time()) % 100000}")
    action = stack.project / ACTION
    original = action.read_text()
    try:
        timed("script/up, cold", lambda: done(stack.up()), before=105)
        stack.script("down", check=True)  # keeps the images, as a user's script/down does
        timed("script/up, warm", lambda: done(stack.up()), before=19)

        def edit_served():
            marker = f"edited-{time.time_ns()}"
            action.write_text(original.replace('name: "lucky"', f'name: "{marker}"'))

            def served():
                answer = requests.get(stack.url("LUCKY_PORT", "/"), timeout=5)
                return answer.status_code == 200 and answer.json()["name"] == marker
            until(served, 240, "lucky watch to serve the edit")

        with stack.watching(base / "watch.log"):
            try:
                timed("edit -> served (script/up --watch)", edit_served, before=11.2)
            finally:
                action.write_text(original)
    finally:
        stack.down()
    slug = stack.project.name.replace("_", "-")  # the default registry path ends with it
    builds = []
    try:
        def build(sha):
            builds.append(sha)
            return done(stack.script("build", sha, timeout=3600, check=True))
        timed("script/build, cold", lambda: build("ca7e0001"), before=103)
        action.write_text(original.replace('name: "lucky"', 'name: "lucky, edited"'))
        timed("script/build after an edit to an action", lambda: build("ca7e0002"))
        with (stack.project / "script/deploy").open("a") as script:
            script.write("# an edit to a script, not to the app\n")
        timed("script/build after an edit to a script only", lambda: build("ca7e0003"))
    finally:
        named = docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
        made = [image for image in named if f"/{slug}/" in image and image.rsplit(":", 1)[1] in builds]
        if made:
            docker("image", "rm", "-f", *made, check=False)


def production(base, mode, rows):
    deployment = prepare(base, mode, releases=(SHA1, SHA2), fast=False)  # production intervals
    try:
        deployment.script("bootstrap", "--swarm")
        timed("script/deploy --first", lambda: done(stamped(deployment, "deploy", "--first", SHA1)), before=62)
        timed("script/deploy, additive (two migrations)", lambda: done(stamped(deployment, "deploy", SHA2)))
        timed("script/rollback --yes (undoes them)", lambda: done(stamped(deployment, "rollback", "--yes", SHA1)))
        deployment.sql("INSERT INTO notes (title, body, published) SELECT 'bulk-' || n, repeat(md5(n::text), 4), "
                       f"false FROM generate_series(1, {rows}) AS n")
        size = deployment.sql("SELECT pg_size_pretty(pg_database_size(current_database()))")
        backup = timed(f"script/backup ({rows} notes, a {size} database)", lambda: done(stamped(deployment, "backup")))
        dump = next(word for line in backup.stdout.splitlines() for word in line.split() if word.endswith(".dump"))
        listed = next(line for line in deployment.script("backup", "--list").stdout.splitlines()
                      if line.startswith(Path(dump).name))
        print(f"dump: {listed}")
        deployment.sql("DELETE FROM notes")
        timed(f"script/restore --yes ({rows} notes)",
              lambda: done(stamped(deployment, "restore", "--yes", Path(dump).name)))
        count = int(deployment.sql("SELECT count(*) FROM notes"))
        if count < rows:
            raise SystemExit(f"the restore brought back {count} notes of {rows}")
    finally:
        deployment.close()


def main():
    production_only = "--production" in sys.argv[1:]
    args = [arg for arg in sys.argv[1:] if arg != "--production"]
    rows = int(args[0]) if args else 200_000
    with kit.images_for_run() as (mode, report), tempfile.TemporaryDirectory() as tmp:
        print("\n".join(report))
        if not production_only:
            development(Path(tmp) / "dev")
        with Swarm():
            production(Path(tmp) / "prod", mode, rows)
    print("\nwhat a user waits for (2 cores)            before    now")
    for label, before, seconds in figures:
        print(f"  {label:<44} {f'{before:.1f} s' if before else '-':>8}  {seconds:6.1f} s")


if __name__ == "__main__":
    main()
