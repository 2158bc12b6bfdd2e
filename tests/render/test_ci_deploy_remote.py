"""The server side of a CI deploy checks out exactly the reviewed commit (review finding H2), with real git.

A bare "origin", a developer clone that pushes two commits to main, and a server clone made with
`git clone` before the attack (so it holds no tag yet). An attacker, who may push branches and tags but not main, pushes a
commit on a side branch and names a tag and a branch after main's 8-character SHA (and a tag after the
full SHA), all pointing at it. The repository is the rendered project's `script/` directory with
`script/deploy` replaced by a stub that records its arguments and the HEAD it ran at; the attacker's
commit replaces that stub with one that writes a marker file. The real `script/ci_deploy_remote` runs
on the server clone as the SSH forced command would (SSH_ORIGINAL_COMMAND), or is refused. The last
tests put a real OpenSSH sshd in front of it, with the README's restricted authorized_keys line, and
call it with script/ci_deploy and the real ssh client (review finding L5: the host key).
"""

import getpass
import json
import os
import shutil
import signal
import socket
import sys
from pathlib import Path

import pytest

from harness.proc import run
from harness.rules.ci_checks import calls, fake_commands
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


@pytest.fixture
def repos(default_project, tmp_path):
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


def test_deploys_exactly_the_reviewed_commit(repos):
    """Tag and branch named after main's SHA point at the attacker's commit: the full SHA is checked out
    and its own script/deploy runs with the 8-character image tag; the attacker's code never runs."""
    good = repos["good"]
    result = remote(repos, f"deploy production {good}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert head(repos) == good
    assert deploys(repos) == [f"{good} {good[:8]}"]
    assert not (repos["tmp"] / "EVIL").exists()
    # Nothing of the attacker's came in with the fetch.
    assert git(repos["server"], "tag", "--list") == ""
    assert git(repos["server"], "for-each-ref", "--format=%(refname)", f"refs/remotes/origin/{good[:8]}") == ""


def test_subtractive_deploy_confirms_in_ci(repos):
    """`deploy staging SHA -s` runs script/deploy -s --yes SHA8 for a commit on origin/staging."""
    first = repos["first"]
    result = remote(repos, f"deploy staging {first} -s")
    assert result.returncode == 0, result.stdout + result.stderr
    assert deploys(repos) == [f"{first} -s --yes {first[:8]}"]


def test_even_a_clone_holding_the_attackers_refs_checks_out_the_full_sha(repos):
    """With the attacker's tags and branches already in the server clone (someone ran git fetch --tags),
    the full SHA still names main's commit, never the ref of that name."""
    git(repos["server"], "fetch", "-q", "--tags", "origin", "+refs/heads/*:refs/remotes/origin/*")
    git(repos["server"], "branch", repos["good"][:8], repos["evil"])
    result = remote(repos, f"deploy production {repos['good']}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert head(repos) == repos["good"] and deploys(repos) == [f"{repos['good']} {repos['good'][:8]}"]
    # The attacker's commit is in this clone now, and still not on main.
    result = remote(repos, f"deploy production {repos['evil']}")
    assert result.returncode == 1 and f"{repos['evil']} is not on origin/main" in result.stderr
    assert head(repos) == repos["good"] and len(deploys(repos)) == 1
    assert not (repos["tmp"] / "EVIL").exists()


@pytest.mark.parametrize("environment", ["production", "staging"])
def test_commit_not_on_the_branch_is_refused(repos, environment):
    """The attacker's commit, named by its full SHA, is on neither origin/main nor origin/staging."""
    before = head(repos)
    result = remote(repos, f"deploy {environment} {repos['evil']}")
    branch = {"production": "main", "staging": "staging"}[environment]
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"✖ refused: {repos['evil']} is not on origin/{branch}, so it may not be deployed to {environment}; "
        "nothing was checked out or deployed"]
    assert head(repos) == before and deploys(repos) == [] and not (repos["tmp"] / "EVIL").exists()


def test_local_change_to_a_tracked_file_is_refused(repos):
    """A tracked file edited in the server's checkout would ride along into the new one: refused, nothing moves.
    Untracked, git-ignored files (.env.production, etc/secrets) are no reason to refuse."""
    before = head(repos)
    (repos["server"] / ".env.production").write_text("X=1\n")
    # script/up is the same in both commits, so git checkout alone would keep the edit and go on.
    original = (repos["server"] / "script/up").read_text()
    (repos["server"] / "script/up").write_text(original + "echo edited on the server\n")
    result = remote(repos, f"deploy production {repos['good']}")
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["✖ refused: this checkout has local changes to tracked files ( M script/up): "
                                          "commit or drop them first; nothing was checked out or deployed"]
    assert head(repos) == before and deploys(repos) == []
    (repos["server"] / "script/up").write_text(original)
    assert remote(repos, f"deploy production {repos['good']}").returncode == 0
    assert head(repos) == repos["good"]


def test_main_commit_is_refused_for_staging_until_staging_has_it(repos):
    """production follows main and staging follows staging: main's new commit is not yet on staging."""
    result = remote(repos, f"deploy staging {repos['good']}")
    assert result.returncode == 1 and "is not on origin/staging" in result.stderr
    assert deploys(repos) == []


def test_production_branch_is_configurable(repos):
    """PRODUCTION_BRANCH=feature (set in the forced command) makes the attacker's branch the production one."""
    result = run([repos["server"] / "script/ci_deploy_remote"], check=False, cwd=repos["tmp"], timeout=60,
                 env={**os.environ, **GIT_ENV, "PRODUCTION_BRANCH": "feature", "EVIL_MARKER": str(repos["tmp"] / "EVIL"),
                      "SSH_ORIGINAL_COMMAND": f"deploy production {repos['good']}"})
    assert result.returncode == 1 and "is not on origin/feature" in result.stderr


@pytest.mark.parametrize("command", [
    "", "bash", "deploy production", "deploy qa {good}", "deploy production {short}",
    "deploy production {good}; touch /tmp/pwned", "deploy production {good} -s extra",
    "deploy  production {good}", "deploy production {upper}", "git fetch origin && script/deploy {short}",
    "deploy production {good}\nid", "deploy production {good} lucky@sha256:{good}",
    "deploy production {good} hasura@sha256:{hex} lucky@sha256:{hex}", "deploy production {good} lucky@sha256:{hex}",
])
def test_forced_command_accepts_only_deploy(repos, command):
    """Anything but `deploy staging|production <40-hex> [-s]` is refused in one line; nothing runs."""
    good = repos["good"]
    command = command.format(good=good, short=good[:8], upper=good.upper(), hex="a" * 64)
    before = head(repos)
    result = remote(repos, command)
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(REFUSED), result.stderr
    assert head(repos) == before and deploys(repos) == []


def test_short_sha_given_by_hand_is_refused(repos):
    """Called by hand, an 8-character SHA is refused before git runs."""
    result = remote(repos, None, "production", repos["good"][:8])
    assert result.returncode == 1
    assert result.stderr.strip() == (f"✖ refused: '{repos['good'][:8]}' is not a full 40-character commit SHA "
                                     "(git rev-parse HEAD); nothing was checked out or deployed")
    assert deploys(repos) == []


def test_what_ci_deploy_sends_is_what_the_forced_command_accepts(default_project, repos):
    """script/ci_deploy's remote command, handed to the real forced command, deploys that commit."""
    log = repos["tmp"] / "ssh.log"
    bin_dir = fake_commands(repos["tmp"] / "ci-bin", log, "ssh")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SERVER_IP": "203.0.113.7",
           "SSH_KNOWN_HOSTS": "203.0.113.7 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyForTests"}
    run([default_project / "script/ci_deploy", "production", repos["good"], "-s"], cwd=default_project, env=env)
    (sent,) = [c["argv"][-1] for c in calls(log)]
    assert sent == f"deploy production {repos['good']} -s"
    result = remote(repos, sent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert deploys(repos) == [f"{repos['good']} -s --yes {repos['good'][:8]}"]


def test_ci_deploy_refuses_a_short_sha(default_project, tmp_path):
    """script/ci_deploy refuses an 8-character SHA in one line, before ssh runs."""
    log = tmp_path / "ssh.log"
    bin_dir = fake_commands(tmp_path / "ci-bin", log, "ssh")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SERVER_IP": "203.0.113.7",
           "SSH_KNOWN_HOSTS": "203.0.113.7 ssh-ed25519 AAAA"}
    result = run([default_project / "script/ci_deploy", "production", "aaaa1111"], check=False, cwd=default_project,
                 env=env, timeout=60)
    assert result.returncode == 1 and not Path(log).exists()
    assert result.stderr.strip() == ("✖ 'aaaa1111' is not a full 40-character commit SHA ($CI_COMMIT_SHA, "
                                     "$GITHUB_SHA, git rev-parse HEAD)")


# --- image digests (review finding M3) ----------------------------------------------------

LUCKY, HASURA, OTHER = "1" * 64, "2" * 64, "3" * 64


def test_images_the_build_pushed_are_deployed(repos):
    """With the build's digests, both images tagged SHA8 are pulled and checked before the checkout, and
    script/deploy gets them (--digests), so it runs those images by digest, not the tags again."""
    registry(repos, lucky=LUCKY, hasura=HASURA)
    good = repos["good"]
    result = remote(repos, f"deploy production {good} lucky@sha256:{LUCKY} hasura@sha256:{HASURA}")
    assert result.returncode == 0, result.stdout + result.stderr
    pulls = [c["argv"] for c in calls(repos["tmp"] / "docker.log") if c["argv"][:1] == ["pull"]]
    assert pulls == [["pull", "--quiet", f"{REGISTRY}/lucky:{good[:8]}"], ["pull", "--quiet", f"{REGISTRY}/hasura:{good[:8]}"]]
    assert head(repos) == good
    assert deploys(repos) == [f"{good} --digests lucky@sha256:{LUCKY},hasura@sha256:{HASURA} {good[:8]}"]


@pytest.mark.parametrize("image", ["lucky", "hasura"])
def test_image_pushed_over_is_refused(repos, image):
    """A tag someone pushed over after the build (the registry's digest is not the build's) stops the deploy."""
    registry(repos, **{"lucky": LUCKY, "hasura": HASURA, image: OTHER})
    before, good = head(repos), repos["good"]
    result = remote(repos, f"deploy production {good} -s lucky@sha256:{LUCKY} hasura@sha256:{HASURA}")
    wanted = {"lucky": LUCKY, "hasura": HASURA}[image]
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"✖ refused: {REGISTRY}/{image}:{good[:8]} in the registry is not the image the build pushed "
        f"(sha256:{wanted}): was the tag pushed over?; nothing was checked out or deployed"]
    assert head(repos) == before and deploys(repos) == []


def test_ci_deploy_sends_the_digests_the_build_wrote(default_project, repos):
    """script/ci_deploy --digests FILE (script/build's file) sends them; the forced command checks them."""
    registry(repos, lucky=LUCKY, hasura=HASURA)
    digests = repos["tmp"] / "images.digests"
    digests.write_text("".join(f"{REGISTRY}/{name}@sha256:{hex_}\n"
                               for name, hex_ in (("lucky-base", OTHER), ("lucky", LUCKY), ("hasura", HASURA))))
    log = repos["tmp"] / "ssh.log"
    bin_dir = fake_commands(repos["tmp"] / "ci-bin", log, "ssh")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SERVER_IP": "203.0.113.7",
           "SSH_KNOWN_HOSTS": "203.0.113.7 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyForTests"}
    run([default_project / "script/ci_deploy", "--digests", digests, "staging", repos["first"]], cwd=default_project,
        env=env)
    (sent,) = [c["argv"][-1] for c in calls(log)]
    assert sent == f"deploy staging {repos['first']} lucky@sha256:{LUCKY} hasura@sha256:{HASURA}"
    result = remote(repos, sent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert deploys(repos) == [f"{repos['first']} --digests lucky@sha256:{LUCKY},hasura@sha256:{HASURA} "
                              f"{repos['first'][:8]}"]


# --- through a real sshd ------------------------------------------------------------------

SSHD = Path("/usr/sbin/sshd")


@pytest.fixture
def sshd(repos):
    """A real OpenSSH sshd on 127.0.0.1 whose authorized_keys holds the README's restricted line for a fresh
    key: `restrict,command="... script/ci_deploy_remote"`; yields (port, client key, host key line)."""
    if not SSHD.exists():
        pytest.skip("OpenSSH's sshd is not installed (Debian: openssh-server)")
    if os.geteuid() != 0:
        pytest.skip("sshd needs root here for its privilege separation directory")
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


def test_real_ssh_deploys_through_the_forced_command(default_project, repos, sshd):
    """ci_deploy -> real ssh (host key from SSH_KNOWN_HOSTS) -> real sshd -> forced ci_deploy_remote -> deploy."""
    result = ci_deploy_over_ssh(default_project, repos, sshd, sshd[2], "production", repos["good"], "-s")
    assert result.returncode == 0, result.stdout + result.stderr
    assert head(repos) == repos["good"]
    assert deploys(repos) == [f"{repos['good']} -s --yes {repos['good'][:8]}"]
    assert not (repos["tmp"] / "EVIL").exists()


@pytest.mark.parametrize("known", ["another key for this server", "the right key, for another server"])
def test_real_ssh_refuses_a_host_key_it_was_not_given(default_project, repos, sshd, tmp_path, known):
    """L5: a server whose key is not in SSH_KNOWN_HOSTS is never logged in to: a changed key is refused, and
    so is a server SSH_KNOWN_HOSTS does not name (accept-new would trust it on first use)."""
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp_path / "other"])
    other = " ".join((tmp_path / "other.pub").read_text().split()[:2])
    right = sshd[2].split(" ", 1)[1]
    line = {"another key for this server": f"[127.0.0.1]:{sshd[0]} {other}",
            "the right key, for another server": f"[192.0.2.1]:{sshd[0]} {right}"}[known]
    before = head(repos)
    result = ci_deploy_over_ssh(default_project, repos, sshd, line, "production", repos["good"])
    assert result.returncode != 0
    assert "Host key verification failed." in result.stderr, result.stderr
    assert head(repos) == before and deploys(repos) == []


def test_real_ssh_key_runs_no_other_command(repos, sshd, tmp_path):
    """The restricted key asked for a shell command gets the forced command's one-line refusal instead."""
    port, key, known = sshd
    (tmp_path / "known_hosts").write_text(known + "\n")
    command = f"touch {tmp_path / 'pwned'}; git -C {repos['server']} checkout {repos['evil']}"
    result = run(["/usr/bin/ssh", "-F", "/dev/null", "-p", port, "-i", key, "-o", "IdentitiesOnly=yes", "-o",
                  "IdentityAgent=none", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o",
                  f"UserKnownHostsFile={tmp_path / 'known_hosts'}", f"{getpass.getuser()}@127.0.0.1", command],
                 check=False, timeout=60)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"{REFUSED}{command[:200]}; nothing was checked out or deployed"]
    assert not (tmp_path / "pwned").exists() and deploys(repos) == []
