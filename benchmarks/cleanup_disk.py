"""Print the disk the image cleanup after each deploy frees on a node, with real releases.

    python3 -m benchmarks.cleanup_disk [RELEASES]

A local swarm is created if none runs (and left afterwards). RELEASES (default 7: KEEP_RELEASES + 2) real Lucky
releases are built by the generated script/build, each differing from the one before in one source line (the name
src/actions/home/index.cr answers with), so each has its own static binaries; then script/deploy deploys them in
turn (the first with --first), and its cleanup keeps the images of the last KEEP_RELEASES (5, the default) releases
on the node. Built but not yet deployed images are never removed (the release log does not name them), so every
release's images are on the node before the first deploy.

Printed: the node's image bytes (the engine's /system/df LayersSize: every image layer once, exact) once every
release is built and after each deploy; the bytes freed by the cleanups, per release removed; and what each
release's images hold alone (their unique layers, measured before any is removed). The harness builds on the node,
so its build artefacts (the untagged build stage, the build cache) stay the same throughout and cancel out in the
difference; a server that pulls the images has none of them.

Measured 2026-12-03 on 2 cores (7 releases, builds 136-170 s, deploys 14-21 s): 2 releases removed, 67.6 MB freed,
33.8 MB per release beyond KEEP_RELEASES, exactly the removed lucky images' unique layers (the static server and
task binaries); a release's hasura and lucky-base images share every layer with the others' (0 MB alone).
"""

import json
import sys
import tempfile
import time
from pathlib import Path

from harness.docker import docker, unix_request
from harness.swarm import Swarm, prepare
from kit import kit

KEEP = 5  # KEEP_RELEASES as script/bootstrap writes it
SOURCE = "src/actions/home/index.cr"
LINE = 'json({name: "lucky", '
MB = 1e6


def system_df():
    status, body = unix_request("/var/run/docker.sock", "GET", "/system/df", timeout=300)
    if status != 200:
        raise SystemExit(f"GET /system/df answered {status}: {body[:200]}")
    return json.loads(body)


def layers_bytes():
    """Bytes of every image layer on this engine, each counted once."""
    return system_df()["LayersSize"]


def unique_bytes(deployment, shas):
    """sha -> {image name: bytes of its layers no other image has}, for the project's images of each sha."""
    prefix = deployment.registry + "/"
    found = {sha: {} for sha in shas}
    for image in system_df()["Images"]:
        for tag in image.get("RepoTags") or []:
            name, _, sha = tag.removeprefix(prefix).rpartition(":")
            if tag.startswith(prefix) and sha in found:
                found[sha][name] = image["Size"] - max(image["SharedSize"], 0)
    return found


def project_releases(deployment, shas):
    """The shas whose lucky image is still on the node."""
    return [sha for sha in shas if docker("image", "inspect", f"{deployment.registry}/lucky:{sha}",
                                          check=False).returncode == 0]


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else KEEP + 2
    if count <= KEEP:
        raise SystemExit(f"usage: python3 -m benchmarks.cleanup_disk [RELEASES]: RELEASES must exceed {KEEP}")
    shas = [f"c1ea{n:04d}" for n in range(1, count + 1)]
    with kit.images_for_run() as (mode, report), Swarm(), tempfile.TemporaryDirectory() as tmp:
        print("\n".join(report))
        deployment = prepare(Path(tmp), mode, releases=())
        source = deployment.project / SOURCE
        text = source.read_text()
        if LINE not in text:
            raise SystemExit(f"{SOURCE} has no line with {LINE!r} to change")
        try:
            builds = []
            for n, sha in enumerate(shas, 1):
                source.write_text(text.replace(LINE, f'json({{name: "lucky release {n}", '))
                started = time.perf_counter()
                deployment.build(sha)
                builds.append(time.perf_counter() - started)
                print(f"built {sha} in {builds[-1]:.0f} s", flush=True)
            alone = unique_bytes(deployment, shas)
            for sha in shas:
                print(f"{sha} alone: " + " ".join(f"{name}={size / MB:.1f}MB" for name, size in sorted(alone[sha].items())))
            before = layers_bytes()
            print(f"node image bytes, every release built: {before} ({before / MB:.1f} MB)", flush=True)
            deploys = []
            for n, sha in enumerate(shas):
                started = time.perf_counter()
                out = deployment.script("deploy", *(["--first"] if n == 0 else []), sha).stdout
                deploys.append(time.perf_counter() - started)
                cleanup = [line for line in out.splitlines() if "Image cleanup" in line]
                now = layers_bytes()
                print(f"deployed {sha} in {deploys[-1]:.0f} s: node image bytes {now} ({now / MB:.1f} MB), "
                      f"releases on the node {len(project_releases(deployment, shas))}; {' '.join(cleanup)}", flush=True)
            after = layers_bytes()
            kept = project_releases(deployment, shas)
            removed = [sha for sha in shas if sha not in kept]
            freed = before - after
            expected = sum(sum(alone[sha].values()) for sha in removed)
            print(f"releases: {count}, KEEP_RELEASES={KEEP}, kept {len(kept)} ({' '.join(kept)}), "
                  f"removed {len(removed)} ({' '.join(removed)})")
            print(f"node image bytes before/after the cleanups: {before} / {after} "
                  f"({before / MB:.1f} / {after / MB:.1f} MB)")
            print(f"freed: {freed / MB:.1f} MB in all, {freed / MB / max(len(removed), 1):.1f} MB per release beyond "
                  f"KEEP_RELEASES (the removed releases' unique layers: {expected / MB:.1f} MB)")
            print(f"build seconds: {[round(b) for b in builds]}; deploy seconds: {[round(d) for d in deploys]}")
        finally:
            deployment.close()
            names = [f"{deployment.registry}/{name}:{sha}" for name in ("lucky", "hasura", "lucky-base") for sha in shas]
            docker("image", "rm", "--force", *names, check=False)
            deployment.park_images()


if __name__ == "__main__":
    main()
