"""One run label and one reaper for everything a test run leaves on the Docker engine.

Every container, network and volume the harness creates carries two labels: `org.lhd.run=<RUN_ID>` (this test
session) and `org.lhd.owner=<pid>` (the process that made it). `reap(run_id)` removes what one run labelled (the
session's end, tests/conftest.py); `reap_stale()` removes what runs whose owner pid is gone left behind (a run
killed before its teardown), and never what a live run owns.

Two kinds of resource cannot carry the labels, and are handled by the names the harness gives them:
- compose projects the generated scripts start (the dev stack): their project name is `compose_name()`,
  `lhdrun<pid>x<hex>`, so the owner pid is in the name; their containers, networks and volumes carry
  `com.docker.compose.project=<name>`, and the images the throwaway project built are `<name>-lucky:dev` and
  `<name>-hasura:dev`.
- directories on this host a run's containers use (the ACME node's engine socket, Pebble's files):
  `owned_temp_dir()` names them `lhd-<purpose>-pid<pid>-...` in the temp directory, and `reap_stale` removes
  those whose owner is gone.
- swarm stacks `docker stack deploy` creates (the swarm tier's `<swarm_name>` and `<swarm_name>_monitoring`):
  `remove_stacks` removes them and every service, network, volume, secret and config named `<swarm_name>_...`.
"""

import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

from harness.docker import docker
from harness.wait import until

RUN = "org.lhd.run"
OWNER = "org.lhd.owner"
# <pid>x<hex>: the session id, set once per process (not inherited: a child run reaps only its own).
RUN_ID = f"{os.getpid()}x{uuid.uuid4().hex[:6]}"
COMPOSE_PREFIX = "lhdrun"
COMPOSE_NAME = re.compile(rf"^{COMPOSE_PREFIX}(\d+)x[0-9a-f]+$")
TEMP_DIR = re.compile(r"^lhd-[a-z]+-pid(\d+)-")  # owned_temp_dir's names
KINDS = ("container", "volume", "network")  # removed in this order (a volume or network in use cannot go)


def labels(run_id=None, owner=None):
    """The run's labels as a dict (docker-py, testcontainers); owner (a pid) defaults to this process."""
    return {RUN: run_id or RUN_ID, OWNER: str(owner or os.getpid())}


def label_args(run_id=None, owner=None):
    """The run's labels as `docker create/run` arguments."""
    return [arg for key, value in labels(run_id, owner).items() for arg in ("--label", f"{key}={value}")]


def compose_name(owner=None):
    """A compose project name for a throwaway project of this run: lhdrun<pid>x<hex> (lowercase letters and digits,
    as the generated scripts accept), the owner pid readable by `reap_stale`."""
    return f"{COMPOSE_PREFIX}{owner or os.getpid()}x{uuid.uuid4().hex[:8]}"


def owned_temp_dir(purpose, owner=None, base=None):
    """A new directory `lhd-<purpose>-pid<pid>-XXXXXXXX` in the temp directory (base): short (a unix socket's path
    is at most 107 bytes), its owner pid in the name for `reap_stale_dirs`."""
    return Path(tempfile.mkdtemp(prefix=f"lhd-{purpose}-pid{owner or os.getpid()}-", dir=base))


def reap_stale_dirs(base=None):
    """Remove the owned_temp_dir directories in base (the temp directory) whose owner pid is gone; their names."""
    base = Path(base or tempfile.gettempdir())
    stale = sorted(path for path in base.iterdir()
                   if (match := TEMP_DIR.match(path.name)) and path.is_dir() and not _owner_alive(match.group(1)))
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return [path.name for path in stale]


def dead_pid():
    """A pid no process has (above every pid in use), for tests of the reaper."""
    return max(int(p) for p in os.listdir("/proc") if p.isdigit()) + 100_000


def pid_alive(pid):
    """True when a process with this pid exists (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner_alive(owner):
    return owner.isdigit() and pid_alive(int(owner))


def labelled(kind, *filters):
    """(name, run, owner) of every `kind` (container, volume, network) carrying the run label, matching filters
    (`label=...` strings)."""
    fmt = f'{{{{.Names}}}}\t{{{{.Label "{RUN}"}}}}\t{{{{.Label "{OWNER}"}}}}' if kind == "container" else \
        f'{{{{.Name}}}}\t{{{{.Label "{RUN}"}}}}\t{{{{.Label "{OWNER}"}}}}'
    argv = ["ps", "-a"] if kind == "container" else [kind, "ls"]
    rows = docker(*argv, "--filter", f"label={RUN}", *[w for f in filters for w in ("--filter", f)],
                  "--format", fmt).stdout.splitlines()
    return [tuple(row.split("\t")) for row in rows if row.strip()]


def remove(kind, names):
    """Remove containers (with their anonymous volumes, stopped first), volumes or networks; quiet about the gone."""
    if not names:
        return
    if kind == "container":
        docker("rm", "-f", "-v", *names, check=False, timeout=300)
    else:
        docker(kind, "rm", *(["-f"] if kind == "volume" else []), *names, check=False, timeout=300)


def compose_projects():
    """Compose project names of throwaway projects (compose_name()) with a container, network or volume here."""
    found = set()
    for argv in (["ps", "-a"], ["network", "ls"], ["volume", "ls"]):
        found.update(docker(*argv, "--filter", "label=com.docker.compose.project",
                            "--format", '{{.Label "com.docker.compose.project"}}').stdout.split())
    return sorted(name for name in found if COMPOSE_NAME.match(name))


def remove_compose_project(name):
    """Remove a throwaway compose project: its containers, networks, volumes and the images it built."""
    label = f"label=com.docker.compose.project={name}"
    remove("container", docker("ps", "-aq", "--filter", label).stdout.split())
    remove("volume", docker("volume", "ls", "-q", "--filter", label).stdout.split())
    remove("network", docker("network", "ls", "-q", "--filter", label).stdout.split())
    docker("image", "rm", f"{name}-lucky:dev", f"{name}-hasura:dev", check=False)


def reap(run_id=RUN_ID):
    """Remove everything labelled with run_id, and the compose projects its owner started; returns what it
    removed as {kind: names}."""
    removed = {}
    for kind in KINDS:
        names = [name for name, *_ in labelled(kind, f"label={RUN}={run_id}")]
        remove(kind, names)
        removed[kind] = names
    owner = run_id.split("x", 1)[0]
    removed["compose"] = [p for p in compose_projects() if COMPOSE_NAME.match(p).group(1) == owner]
    for project in removed["compose"]:
        remove_compose_project(project)
    return removed


def reap_stale():
    """Remove every labelled resource, throwaway compose project and owned temp directory whose owner pid is gone;
    a live owner's stay. Returns what it removed as {kind: names}."""
    removed = {}
    for kind in KINDS:
        names = [name for name, _run, owner in labelled(kind) if not _owner_alive(owner)]
        remove(kind, names)
        removed[kind] = names
    removed["compose"] = [p for p in compose_projects() if not _owner_alive(COMPOSE_NAME.match(p).group(1))]
    for project in removed["compose"]:
        remove_compose_project(project)
    removed["dirs"] = reap_stale_dirs()
    return removed


def leftovers(run_id=RUN_ID):
    """{kind: names} still labelled with run_id."""
    return {kind: [name for name, *_ in labelled(kind, f"label={RUN}={run_id}")] for kind in KINDS}


# -- swarm stacks: the stack name is the handle -------------------------------------------------------------

def stack_resources(prefix, run=docker):
    """kind -> ids of services, networks, volumes, secrets and configs named `<prefix>_...` (run: how docker is
    reached)."""
    return {f"{kind}s": run(kind, "ls", "-q", "--filter", f"name={prefix}_").stdout.split()
            for kind in ("service", "network", "volume", "secret", "config")}


def remove_stacks(stacks, prefix, run=docker, timeout=120):
    """`docker stack rm` each stack, wait until their containers and the networks named `<prefix>_...` are gone,
    then remove the volumes, secrets and configs named so (also when the wait ran out, which is then raised)."""
    for stack in stacks:
        run("stack", "rm", stack, check=False)

    def gone():
        left = [c for stack in stacks for c in run(
            "ps", "-aq", "--filter", f"label=com.docker.stack.namespace={stack}").stdout.split()]
        return not left and not run("network", "ls", "-q", "--filter", f"name={prefix}_").stdout.split()
    try:
        until(gone, timeout, f"the containers and networks of {' and '.join(stacks)} to go", pause=2)
    finally:
        for kind in ("volume", "secret", "config"):
            names = run(kind, "ls", "-q", "--filter", f"name={prefix}_").stdout.split()
            if names:
                run(kind, "rm", *names, check=False)
