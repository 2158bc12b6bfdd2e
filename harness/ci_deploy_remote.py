"""The server side of a CI deploy (the generated script/ci_deploy_remote) on throwaway git repositories, with real
git and, for the SSH tests, a real OpenSSH sshd on 127.0.0.1 (review findings H2, M3, L5).

`make_repos`: a bare "origin", a developer clone that pushes two commits to main, and a server clone made with
`git clone` before the attack (so it holds no tag yet). An attacker, who may push branches and tags but not main,
pushes a commit on a side branch and names a tag and a branch after main's 8-character SHA (and a tag after the
full SHA), all pointing at it. The repository is the rendered project's `script/` directory with `script/deploy`
replaced by a stub that records its arguments and the HEAD it ran at; the attacker's commit replaces that stub
with one that writes a marker file. `remote` runs the real `script/ci_deploy_remote` on the server clone as the
SSH forced command would (SSH_ORIGINAL_COMMAND). `running_sshd` puts a real sshd in front of it with the README's
restricted authorized_keys line; `ci_deploy_over_ssh` calls it with script/ci_deploy and the real ssh client.
Used by tests/render/test_ci_deploy_remote.py (no sshd) and tests/lint/test_ci_deploy_sshd.py (sshd).
"""

import getpass
import json
import os
import shutil
import signal
import socket
import sys
from contextlib import contextmanager
from pathlib import Path

from harness.proc import run
from harness.wait import until

STUB = """#!/usr/bin/env bash
# Test stub: record the arguments and the commit this deploy runs at.
printf '%s %s\\n' "$(git rev-parse HEAD)" "$*" >>"${DEPLOY_LOG:?}"
"""
EVIL = """#!/usr/bin/env bash
touch "${EVIL_MARKER:?}"
"""
REFUSED = ("✖ refused: the CI key only runs 'deploy staging|production <40-character SHA> [-s] "
           "[lucky@sha256:<hex> hasura@sha256:<hex>]', not: ")
REGISTRY = "registry.gitlab.com/my-group/lhd-app"
# A fake docker for the server: `pull` records; `image inspect` answers with the RepoDigests of what the
# registry (a JSON file {repository: hex}) holds for the repository, as docker image inspect prints them.
FAKE_DOCKER = """#!{python}
import json, sys
argv = sys.argv[1:]
with open({log!r}, "a") as log:
    log.write(json.dumps({{"name": "docker", "argv": argv}}) + "\\n")
if argv[:2] == ["image", "inspect"]:
    repo = argv[-1].rsplit(":", 1)[0]
    registry = json.load(open({registry!r}))
    print(json.dumps([{{"RepoTags": [argv[-1]], "RepoDigests": [repo + "@sha256:" + registry[repo]]}}], indent=4))
"""
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_CONFIG_GLOBAL": os.devnull}


def git(cwd, *args):
    return run(["git", "-C", cwd, *args], env={**os.environ, **GIT_ENV}).stdout.strip()


def commit(clone, message, deploy=STUB):
    (clone / "script" / "deploy").write_text(deploy)
    (clone / "script" / "deploy").chmod(0o755)
    (clone / "VERSION").write_text(message)
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", message)
    return git(clone, "rev-parse", "HEAD")


def make_repos(default_project, tmp_path):
    """origin, a server clone at main's first commit, main's second commit `good`, the attacker's `evil`."""
    origin, dev, server = tmp_path / "origin.git", tmp_path / "dev", tmp_path / "server"
    run(["git", "init", "-q", "--bare", "-b", "main", origin], env={**os.environ, **GIT_ENV})
    run(["git", "init", "-q", "-b", "main", dev], env={**os.environ, **GIT_ENV})
    shutil.copytree(default_project / "script", dev / "script")
    first = commit(dev, "first")
    git(dev, "remote", "add", "origin", str(origin))
    git(dev, "push", "-q", "origin", "main", "main:staging")
    # The server's clone, made before the attack (so no tag is in it), with git's default settings: a
    # plain `git fetch origin` there would auto-follow the attacker's tags.
    run(["git", "clone", "-q", "-b", "main", origin, server], env={**os.environ, **GIT_ENV})
    good = commit(dev, "second")
    git(dev, "push", "-q", "origin", "main")
    # The attacker: a side branch from the first commit, a tag and a branch named like main's SHA.
    git(dev, "checkout", "-q", "-b", "feature", first)
    evil = commit(dev, "evil", deploy=EVIL)
    git(dev, "tag", good[:8], evil)
    git(dev, "tag", good, evil)
    git(dev, "branch", good[:8], evil)
    git(dev, "push", "-q", "origin", "feature", f"refs/tags/{good[:8]}", f"refs/tags/{good}",
        f"refs/heads/{good[:8]}")
    return {"server": server, "first": first, "good": good, "evil": evil, "tmp": tmp_path}


def registry(repos, **digests):
    """A fake docker first on the server's PATH, whose registry holds sha256:<hex> for each image name given."""
    (repos["tmp"] / "registry.json").write_text(json.dumps({f"{REGISTRY}/{k}": v for k, v in digests.items()}))
    docker = repos["tmp"] / "server-bin" / "docker"
    docker.parent.mkdir(exist_ok=True)
    docker.write_text(FAKE_DOCKER.format(python=sys.executable, log=str(repos["tmp"] / "docker.log"),
                                         registry=str(repos["tmp"] / "registry.json")))
    docker.chmod(0o755)
    return docker.parent


def remote(repos, command=None, *args):
    """Run the server's script/ci_deploy_remote from the deploy user's home, as sshd runs a forced command."""
    home = repos["tmp"] / "home"
    home.mkdir(exist_ok=True)
    path = os.environ["PATH"]
    if (repos["tmp"] / "server-bin").exists():
        path = f"{repos['tmp'] / 'server-bin'}:{path}"
    env = {"PATH": path, "HOME": str(home), "DEPLOY_LOG": str(repos["tmp"] / "deploy.log"),
           "EVIL_MARKER": str(repos["tmp"] / "EVIL"), **GIT_ENV}
    if command is not None:
        env["SSH_ORIGINAL_COMMAND"] = command
    return run([repos["server"] / "script/ci_deploy_remote", *args], check=False, cwd=home, env=env, timeout=60)


def deploys(repos):
    log = repos["tmp"] / "deploy.log"
    return log.read_text().splitlines() if log.exists() else []


def head(repos):
    return git(repos["server"], "rev-parse", "HEAD")


SSHD = Path("/usr/sbin/sshd")


class SshdMissing(RuntimeError):
    pass


@contextmanager
def running_sshd(repos):
    """A real OpenSSH sshd on 127.0.0.1 whose authorized_keys holds the README's restricted line for a fresh
    key: `restrict,command="... script/ci_deploy_remote"`; yields (port, client key, host key line).
    SshdMissing (one line) when sshd is not installed or cannot run as this user."""
    if not SSHD.exists():
        raise SshdMissing("OpenSSH's sshd is not installed: run tools/bootstrap tools (Debian: openssh-server)")
    if os.geteuid() != 0:
        raise SshdMissing("sshd needs root here for its privilege separation directory: run the lint tier as root")
    d = repos["tmp"] / "sshd"
    d.mkdir()
    for key in ("host_key", "ci_key"):
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", key, "-f", d / key])
    # The forced command runs through the user's shell (sshd(8), AUTHORIZED_KEYS FILE FORMAT, "command="),
    # so variables can be set before it, as the README does with PRODUCTION_BRANCH.
    forced = (f'restrict,command="DEPLOY_LOG={repos["tmp"] / "deploy.log"} EVIL_MARKER={repos["tmp"] / "EVIL"} '
              f'{repos["server"] / "script/ci_deploy_remote"}" {(d / "ci_key.pub").read_text().strip()}')
    (d / "authorized_keys").write_text(forced + "\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (d / "sshd_config").write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {d / 'host_key'}", f"AuthorizedKeysFile {d / 'authorized_keys'}",
        f"PidFile {d / 'sshd.pid'}", "StrictModes no", "UsePAM no", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", f"AllowUsers {getpass.getuser()}", ""]))
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    run([SSHD, "-f", d / "sshd_config", "-E", d / "sshd.log"])  # forks into the background once listening
    pid = int(until(lambda: (d / "sshd.pid").read_text().strip(), 10, "sshd's pid file"))
    try:
        host_key = " ".join((d / "host_key.pub").read_text().split()[:2])
        yield port, d / "ci_key", f"[127.0.0.1]:{port} {host_key}"
    finally:
        os.kill(pid, signal.SIGTERM)


def real_ssh_wrapper(bin_dir, port, key):
    """`ssh` first on PATH: the real /usr/bin/ssh, told only the port and the key (CI has the key in its agent)."""
    bin_dir.mkdir(exist_ok=True)
    wrapper = bin_dir / "ssh"
    wrapper.write_text(f'#!/bin/sh\nexec /usr/bin/ssh -F /dev/null -p {port} -i {key} -o IdentitiesOnly=yes '
                       '-o IdentityAgent=none "$@"\n')
    wrapper.chmod(0o755)
    return bin_dir


def ci_deploy_over_ssh(default_project, repos, sshd, known_hosts, *args):
    port, key, _ = sshd
    bin_dir = real_ssh_wrapper(repos["tmp"] / "real-ssh", port, key)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SERVER_IP": "127.0.0.1",
           "DEPLOY_USER": getpass.getuser(), "SSH_KNOWN_HOSTS": known_hosts}
    return run([default_project / "script/ci_deploy", *args], check=False, cwd=default_project, env=env, timeout=60)
