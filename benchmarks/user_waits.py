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

import requests

from harness.devstack import make_stack
from harness.docker import docker
from harness.proc import DEVNULL, popen
from harness.swarm import SHA1, SHA2, Swarm, prepare
from harness.wait import until
from kit import kit

ACTION = "src/actions/home/index.cr"
# The figures issue 26 gave when it was filed (2 cores, this machine): what "before" means below.
BEFORE = {"script/up, cold": 105, "script/up, warm": 19, "edit -> served (script/up --watch)": 11.2,
          "script/build, cold": 103, "script/deploy --first": 62}
figures = []


def timed(label, action):
    """Run action(); record and print its wall time under label; return its result."""
    start = time.perf_counter()
    result = action()
    seconds = time.perf_counter() - start
    figures.append((label, seconds))
    print(f"{label}: {seconds:.1f} s", flush=True)
    return result


def done(result):
    """A script's CompletedProcess, which must have ended with `✔ All done.`."""
    if result.returncode != 0 or "All done" not in result.stdout:
        raise SystemExit(f"exit {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def stamped(deployment, name, *args):
    """script/NAME ARGS of the deployment, its output lines printed with the second each arrived; a
    CompletedProcess-like result (returncode, stdout)."""
    log = deployment.workdir / f"{name}.log"
    started, seen, lines = time.perf_counter(), 0, []
    with popen([deployment.project / "script" / name, *args], log=log, env=deployment.env(), cwd=deployment.project,
               stdin=DEVNULL) as proc:
        while proc.poll() is None or seen < len(log.read_text().splitlines()):
            for line in log.read_text().splitlines()[seen:]:
                lines.append(line)
                print(f"  {time.perf_counter() - started:6.1f} s  {line}", flush=True)
            seen = len(lines)
            time.sleep(0.2)
    return type("Result", (), {"returncode": proc.returncode, "stdout": "\n".join(lines), "stderr": ""})()


def development(base):
    stack = make_stack(base, project_name=f"waits_{int(time.time()) % 100000}")
    action = stack.project / ACTION
    original = action.read_text()
    try:
        timed("script/up, cold", lambda: done(stack.up()))
        stack.script("down", check=True)  # keeps the images, as a user's script/down does
        timed("script/up, warm", lambda: done(stack.up()))

        def edit_served():
            marker = f"edited-{time.time_ns()}"
            action.write_text(original.replace('name: "lucky"', f'name: "{marker}"'))

            def served():
                answer = requests.get(stack.url("LUCKY_PORT", "/"), timeout=5)
                return answer.status_code == 200 and answer.json()["name"] == marker
            until(served, 240, "lucky watch to serve the edit")

        with stack.watching(base / "watch.log"):
            try:
                timed("edit -> served (script/up --watch)", edit_served)
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
        timed("script/build, cold", lambda: build("ca7e0001"))
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
        timed("script/deploy --first", lambda: done(stamped(deployment, "deploy", "--first", SHA1)))
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
    args = [arg for arg in sys.argv[1:] if arg != "--production"]
    rows = int(args[0]) if args else 200_000
    with kit.images_for_run() as (mode, report), tempfile.TemporaryDirectory() as tmp:
        print("\n".join(report))
        if "--production" not in sys.argv[1:]:
            development(Path(tmp) / "dev")
        with Swarm():
            production(Path(tmp) / "prod", mode, rows)
    print("\nwhat a user waits for (2 cores)            before    now")
    for label, seconds in figures:
        before = BEFORE.get(label)
        print(f"  {label:<44} {f'{before:.1f} s' if before else '-':>8}  {seconds:6.1f} s")


if __name__ == "__main__":
    main()
