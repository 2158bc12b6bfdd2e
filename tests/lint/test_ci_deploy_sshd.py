"""script/ci_deploy -> the real ssh client -> a real OpenSSH sshd with the README's restricted authorized_keys line
-> the forced command script/ci_deploy_remote (review finding L5: the host key). The repositories and the sshd:
harness/ci_deploy_remote.py; the same forced command without sshd: tests/render/test_ci_deploy_remote.py.
sshd is one of the lint tier's tools (tools/bootstrap, LINT_TOOLS: openssh-server): missing, these tests fail.
"""

import getpass

import pytest

from harness.ci_deploy_remote import REFUSED, SshdMissing, ci_deploy_over_ssh, deploys, head, make_repos, running_sshd
from harness.proc import run


@pytest.fixture
def repos(default_project, tmp_path):
    """origin, a server clone at main's first commit, main's second commit `good`, the attacker's `evil`."""
    return make_repos(default_project, tmp_path)


@pytest.fixture
def sshd(repos):
    """(port, client key, host key line) of a real sshd in front of the server clone's forced command."""
    try:
        with running_sshd(repos) as started:
            yield started
    except SshdMissing as error:
        pytest.fail(str(error), pytrace=False)


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
