"""Upstream image mode's preparation, proven here without a registry, root or apt.

`tools/bootstrap` runs as a non-root user (nobody, when the suite runs as
root) with fake `sudo`, `apt-get` and `docker` first on PATH, the way the
template's GitHub workflow runs it on a runner with passwordless sudo. The
fakes record every call, so the tests see what was installed, through what,
and what a missing precondition prints. `bootstrap pipeline` (gitlab-ci-local) runs with fake `node` and `npm`:
a machine's first install is kept and copied into the next clone.
"""

import os
import pwd
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from harness.combinations import ROOT
from harness.proc import run
from kit import kit

NOBODY = 65534
# Real programs the bootstrap script (and the fakes: chmod) call; everything else is a fake or absent.
REAL = ["bash", "sh", "env", "id", "find", "head", "grep", "cut", "dirname", "mkdir", "ln", "timeout", "sleep",
        "tail", "sed", "cat", "chmod", "cp", "rm", "mv", "mktemp", "sha256sum"]
# command a fake package provides, per package name (tools/bootstrap's tables)
PROVIDES = {"git": "git", "prometheus": "promtool", "prometheus-alertmanager": "amtool", "crystal": "crystal",
            "openssl": "openssl", "openssh-server": "sshd", "nodejs": "node", "npm": "npm", "debootstrap": "debootstrap",
            "unzip": "unzip", "rsync": "rsync",
            "docker.io": "dockerd"}

FAKE_SUDO = """#!/bin/sh
echo "sudo $*" >> "$LHD_FAKE_LOG"
[ "$LHD_FAKE_SUDO" = works ] || exit 1
[ "$1" = -n ] && shift
[ "$1" = true ] && exit 0
LHD_VIA_SUDO=1 exec "$@"
"""
FAKE_APT = """#!/bin/sh
echo "apt-get uid=$(id -u) sudo=${LHD_VIA_SUDO:-0} $*" >> "$LHD_FAKE_LOG"
[ "$1" = install ] || exit 0
for arg in "$@"; do
  case "$arg" in
    install|-*) ;;
    *) tool=$(grep "^$arg " "$LHD_FAKE_PROVIDES" | cut -d' ' -f2)
       printf '#!/bin/sh\\nexit 0\\n' > "$LHD_FAKE_BIN/$tool"; chmod +x "$LHD_FAKE_BIN/$tool" ;;
  esac
done
"""
FAKE_DOCKER = """#!/bin/sh
echo "docker $*" >> "$LHD_FAKE_LOG"
case "$1" in
  info) exit 0 ;;
  compose) echo "Docker Compose version v2.40.0"; exit 0 ;;
  version) echo 28.0.0 ;;
esac
"""


def write(path, text, mode=0o755):
    path.write_text(text)
    path.chmod(mode)


@pytest.fixture
def sandbox():
    """A world-readable directory (nobody cannot enter pytest's tmp_path) with the fakes and a copy of the script."""
    base = Path(tempfile.mkdtemp(prefix="lhd-bootstrap-", dir="/tmp"))
    try:
        base.chmod(0o755)
        bin_dir, home = base / "bin", base / "home"
        for directory in (bin_dir, home, base / "repo/tools", base / "repo/requirements"):
            directory.mkdir(parents=True)
        bin_dir.chmod(0o777)
        home.chmod(0o777)
        for name in REAL:
            found = shutil.which(name)
            assert found, f"{name} is needed to run tools/bootstrap"
            (bin_dir / name).symlink_to(found)
        write(bin_dir / "sudo", FAKE_SUDO)
        write(bin_dir / "apt-get", FAKE_APT)
        write(bin_dir / "docker", FAKE_DOCKER)  # a runner has Docker, engine running
        write(base / "provides", "".join(f"{p} {c}\n" for p, c in PROVIDES.items()), 0o644)
        write(base / "log", "", 0o666)
        shutil.copy(ROOT / "tools/bootstrap", base / "repo/tools/bootstrap")
        shutil.copy(ROOT / "requirements/constraints.txt", base / "repo/requirements/constraints.txt")
        for path in base.glob("repo/**/*"):
            path.chmod(0o755)
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def bootstrap(sandbox, command, sudo="works", mode=None, **extra):
    """Run the copied script as a non-root user; return (result, recorded calls). An extra variable given as None
    is unset."""
    env = {"PATH": str(sandbox / "bin"), "HOME": str(sandbox / "home"), "LHD_FAKE_LOG": str(sandbox / "log"),
           "LHD_FAKE_SUDO": sudo, "LHD_FAKE_BIN": str(sandbox / "bin"), "LHD_FAKE_PROVIDES": str(sandbox / "provides")}
    if mode:
        env["LHD_IMAGE_MODE"] = mode
    env.update(extra)
    env = {name: value for name, value in env.items() if value is not None}
    argv = [shutil.which("bash"), str(sandbox / "repo/tools/bootstrap"), command]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot drop to a non-root user")
        argv = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]
    result = run(argv, env=env, timeout=60, check=False)
    return result, (sandbox / "log").read_text().splitlines()


def installed(calls):
    packages = []
    for call in calls:
        if call.startswith("apt-get") and " install " in f"{call} ":
            packages += [word for word in call.split(" install ", 1)[1].split() if not word.startswith("-")]
    return set(packages)


def test_upstream_preparation_installs_through_sudo_as_non_root(sandbox):
    """`bootstrap upstream` as a non-root user installs the conformance tools through sudo and nothing of the kit."""
    result, calls = bootstrap(sandbox, "upstream")
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{calls}"
    apt = [c for c in calls if c.startswith("apt-get")]
    assert apt and all("sudo=1" in c and "uid=0" not in c for c in apt), calls
    assert {"prometheus", "prometheus-alertmanager", "crystal"} <= installed(calls), calls
    assert not installed(calls) & {"debootstrap", "unzip"}, calls
    assert "docker info" in calls and not any("dockerd" in c for c in calls if c.startswith("sudo")), calls


@pytest.mark.parametrize(("command", "mode"), [("local", None), ("tools", "local"), ("tools", None)])
def test_local_preparation_adds_the_kit_tools(sandbox, command, mode):
    """Local image mode (and `auto`, which may resolve to it) also installs what the kit builds with."""
    result, calls = bootstrap(sandbox, command, mode=mode)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{calls}"
    assert {"debootstrap", "unzip"} <= installed(calls), calls


def test_upstream_tools_skip_the_kit(sandbox):
    """`bootstrap tools` with LHD_IMAGE_MODE=upstream (what nox runs in the workflow) installs no kit tool."""
    result, calls = bootstrap(sandbox, "tools", mode="upstream")
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{calls}"
    assert installed(calls) and not installed(calls) & {"debootstrap", "unzip"}, calls


def test_upstream_preparation_without_sudo_fails_in_one_line(sandbox):
    """Without root or passwordless sudo the preparation stops at once with one line saying so."""
    result, calls = bootstrap(sandbox, "upstream", sudo="refused")
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1, (result.stdout, result.stderr)
    assert lines[0].startswith("bootstrap: ") and "passwordless sudo" in lines[0], lines
    assert not any(c.startswith("apt-get") for c in calls), calls


def test_upstream_mode_without_a_registry_fails_fast_in_one_line(monkeypatch):
    """resolve_mode('upstream') with no registry answering raises at once, one line naming the hosts and the way out."""
    def unreachable(*args, **kwargs):
        raise OSError("no route to a registry (test)")

    monkeypatch.setattr(kit.socket, "create_connection", unreachable)
    start = time.monotonic()
    with pytest.raises(RuntimeError) as refused:
        kit.resolve_mode("upstream")
    message = str(refused.value)
    assert time.monotonic() - start < 5
    assert "\n" not in message and "upstream" in message and "LHD_IMAGE_MODE=local" in message, message
    assert all(host in message for host in kit.REGISTRY_HOSTS), message


# gitlab-ci-local's install, for `bootstrap pipeline`: node answers what the script asks it, npm ci "installs" the
# pinned version (or fails, with LHD_FAKE_NPM=fails).
FAKE_NODE = """#!/bin/sh
case "$1" in
  --version) echo v20.19.2 ;;
  -p) [ -f "$3" ] && sed -n 's/.*"version": *"\\(.*\\)".*/\\1/p' "$3" ;;
esac
"""
FAKE_NPM = """#!/bin/sh
echo "npm $*" >> "$LHD_FAKE_LOG"
[ "$LHD_FAKE_NPM" = fails ] && exit 1
while [ "$1" != --prefix ]; do shift; done
want=$(sed -n 's/.*"gitlab-ci-local": "\\(.*\\)".*/\\1/p' "$2/package.json")
mkdir -p "$2/node_modules/gitlab-ci-local" "$2/node_modules/.bin"
printf '{"version": "%s"}\\n' "$want" > "$2/node_modules/gitlab-ci-local/package.json"
printf '#!/bin/sh\\nexit 0\\n' > "$2/node_modules/.bin/gitlab-ci-local"
chmod +x "$2/node_modules/.bin/gitlab-ci-local"
"""


@pytest.fixture
def pipeline_sandbox(sandbox):
    """The sandbox with fake node and npm, and the real requirements/pipeline lock files."""
    write(sandbox / "bin/node", FAKE_NODE)
    write(sandbox / "bin/npm", FAKE_NPM)
    node = sandbox / "repo/requirements/pipeline"
    node.mkdir()
    node.chmod(0o777)
    for name in ("package.json", "package-lock.json"):
        shutil.copy(ROOT / "requirements/pipeline" / name, node / name)
        (node / name).chmod(0o666)
    return sandbox


def npm_calls(calls):
    return [c for c in calls if c.startswith("npm ")]


def fresh_clone(sandbox):
    """What a new clone of the repository has: no installed node_modules."""
    shutil.rmtree(sandbox / "repo/requirements/pipeline/node_modules")


def test_a_fresh_clone_copies_the_gitlab_ci_local_this_machine_installed(pipeline_sandbox):
    """npm ci compiles re2 from C++ (about 100 CPU-seconds here): the first install is kept in the user's cache, and
    the next clone's `bootstrap pipeline` copies it instead of running npm again."""
    first, calls = bootstrap(pipeline_sandbox, "pipeline")
    assert first.returncode == 0, f"{first.stdout}\n{first.stderr}\n{calls}"
    assert len(npm_calls(calls)) == 1, calls
    fresh_clone(pipeline_sandbox)
    second, calls = bootstrap(pipeline_sandbox, "pipeline")
    assert second.returncode == 0, f"{second.stdout}\n{second.stderr}\n{calls}"
    assert len(npm_calls(calls)) == 1, calls  # still the first run's only
    assert "gitlab-ci-local copied from " in second.stdout, second.stdout
    assert (pipeline_sandbox / "repo/requirements/pipeline/node_modules/.bin/gitlab-ci-local").exists()


def test_a_changed_lock_file_installs_again(pipeline_sandbox):
    """The cache is keyed by the lock file: a new pin is installed by npm, never taken from an older tree."""
    bootstrap(pipeline_sandbox, "pipeline")
    fresh_clone(pipeline_sandbox)
    lock = pipeline_sandbox / "repo/requirements/pipeline/package-lock.json"
    lock.write_text(lock.read_text() + "\n")
    result, calls = bootstrap(pipeline_sandbox, "pipeline")
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{calls}"
    assert len(npm_calls(calls)) == 2 and "copied from" not in result.stdout, (calls, result.stdout)


def test_a_failed_install_stops_in_one_line_and_caches_nothing(pipeline_sandbox):
    """npm ci failing stops the bootstrap with one line, and leaves no tree in the cache for the next clone."""
    result, calls = bootstrap(pipeline_sandbox, "pipeline", LHD_FAKE_NPM="fails")
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 and "npm ci of gitlab-ci-local" in lines[0], result.stderr
    cache = pipeline_sandbox / "home/.cache/lhd/gitlab-ci-local"
    assert not cache.exists() or not any(cache.iterdir()), list(cache.iterdir())
    again, calls = bootstrap(pipeline_sandbox, "pipeline")
    assert again.returncode == 0 and len(npm_calls(calls)) == 2, (again.stderr, calls)


def test_an_interrupted_copy_from_the_cache_leaves_no_half_installed_tree(pipeline_sandbox):
    """A copy out of the cache that stops half-way (here a file it cannot read) fails the bootstrap and leaves the
    clone without node_modules, which a later run would otherwise take as installed (it reads the version only)."""
    bootstrap(pipeline_sandbox, "pipeline")
    fresh_clone(pipeline_sandbox)
    package = next((pipeline_sandbox / "home/.cache/lhd/gitlab-ci-local").rglob("gitlab-ci-local/package.json"))
    unreadable = package.parent / "zz-unreadable"
    unreadable.write_text("")
    unreadable.chmod(0)
    result, calls = bootstrap(pipeline_sandbox, "pipeline")
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 and lines[0].startswith("bootstrap: could not copy"), lines
    node = pipeline_sandbox / "repo/requirements/pipeline"
    assert sorted(p.name for p in node.iterdir()) == ["package-lock.json", "package.json"]
    unreadable.unlink()
    again, calls = bootstrap(pipeline_sandbox, "pipeline")
    assert again.returncode == 0 and "copied from" in again.stdout, (again.stdout, again.stderr)
    assert (node / "node_modules/.bin/gitlab-ci-local").exists()


def test_a_cache_that_cannot_be_written_still_installs(pipeline_sandbox):
    """Keeping the tree is a saving, not a precondition: with no cache directory to write, npm's install stands and
    the bootstrap says in one line that the next clone installs again."""
    write(pipeline_sandbox / "home/.cache", "", 0o444)  # a file where the cache directory would go
    result, calls = bootstrap(pipeline_sandbox, "pipeline")
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "could not keep gitlab-ci-local in " in result.stdout and len(npm_calls(calls)) == 1, (result.stdout, calls)
    node = pipeline_sandbox / "repo/requirements/pipeline"
    assert (node / "node_modules/.bin/gitlab-ci-local").exists()
    assert sorted(p.name for p in node.iterdir()) == ["node_modules", "package-lock.json", "package.json"]


def test_without_home_the_cache_is_under_the_users_passwd_home(pipeline_sandbox):
    """HOME unset (a systemd unit, a cron job) is no unbound variable: the cache goes where `~` is, the passwd entry's
    home, as Python and the Docker CLI take it. The user here is nobody, whose home (/nonexistent) cannot be written:
    npm's install stands and the one line names that directory."""
    if os.geteuid() != 0:
        pytest.skip("as another user than root the script would write the fake install into that user's own cache")
    home = pwd.getpwuid(NOBODY).pw_dir
    result, calls = bootstrap(pipeline_sandbox, "pipeline", HOME=None)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "unbound variable" not in result.stderr, result.stderr
    assert len(npm_calls(calls)) == 1, calls
    assert f"could not keep gitlab-ci-local in {home}/.cache/lhd/gitlab-ci-local/" in result.stdout, result.stdout
    assert (pipeline_sandbox / "repo/requirements/pipeline/node_modules/.bin/gitlab-ci-local").exists()
