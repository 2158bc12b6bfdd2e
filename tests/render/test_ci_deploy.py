"""script/ci_deploy: what it sends over SSH and how it trusts the server (no Docker, no network).

A fake `ssh` on PATH records its argv and the known_hosts file it was told to
use. The remote side (script/ci_deploy_remote, the key's forced command) is
tested with real git in test_ci_deploy_remote.py.
"""

import os
import sys
from pathlib import Path

import pytest

from harness.proc import run
from harness.rules.ci_checks import calls

SHA = "aaaa1111bbbb2222cccc3333dddd4444eeee5555"
SERVER = "203.0.113.7"
KNOWN_HOSTS = f"{SERVER} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyForTests"

# A fake ssh: records argv and the content of the UserKnownHostsFile it names (ci_deploy removes it after).
FAKE_SSH = """#!{python}
import json, sys
argv = sys.argv[1:]
files = [a.split("=", 1)[1] for a in argv if a.startswith("UserKnownHostsFile=")]
known = [open(f).read() for f in files]
with open({log!r}, "a") as log:
    log.write(json.dumps({{"argv": argv, "known_hosts": known}}) + "\\n")
"""


def ci_deploy(project, tmp_path, *args, **env):
    """Run script/ci_deploy with the fake ssh first on PATH; return (result, the ssh call or None)."""
    log = tmp_path / "ssh.log"
    ssh = tmp_path / "ci-bin" / "ssh"
    ssh.parent.mkdir(exist_ok=True)
    ssh.write_text(FAKE_SSH.format(python=sys.executable, log=str(log)))
    ssh.chmod(0o755)
    env = {**os.environ, "PATH": f"{ssh.parent}:{os.environ['PATH']}", "SERVER_IP": SERVER,
           "SSH_KNOWN_HOSTS": KNOWN_HOSTS, **env}
    result = run([project / "script/ci_deploy", *args], check=False, cwd=project, env=env, timeout=60)
    recorded = calls(log)
    assert len(recorded) <= 1, recorded
    return result, (recorded[0] if recorded else None)


def option(argv, name):
    """The values of `-o NAME=VALUE` options."""
    return [b.split("=", 1)[1] for a, b in zip(argv, argv[1:], strict=False) if a == "-o" and b.startswith(f"{name}=")]


@pytest.mark.parametrize(("flags", "sent"), [([], f"deploy production {SHA}"), (["-s"], f"deploy production {SHA} -s")],
                         ids=["additive", "subtractive"])
def test_sends_only_the_forced_command_line(default_project, tmp_path, flags, sent):
    """The remote command is `deploy ENVIRONMENT SHA [-s]` with the full SHA: the line the server's forced
    command accepts, and nothing a shell would run on its own (no cd, no git)."""
    result, call = ci_deploy(default_project, tmp_path, "production", SHA, *flags)
    assert result.returncode == 0, result.stdout + result.stderr
    assert call["argv"][-2:] == [f"deploy@{SERVER}", sent]


def test_trusts_only_the_given_host_key(default_project, tmp_path):
    """L5: ssh checks the host key strictly against SSH_KNOWN_HOSTS alone; accept-new is never used."""
    result, call = ci_deploy(default_project, tmp_path, "staging", SHA, SSH_KNOWN_HOSTS=KNOWN_HOSTS + "\r\n")
    assert result.returncode == 0, result.stdout + result.stderr
    argv = call["argv"]
    assert option(argv, "StrictHostKeyChecking") == ["yes"] and option(argv, "BatchMode") == ["yes"]
    assert option(argv, "GlobalKnownHostsFile") == ["/dev/null"]
    (content,) = call["known_hosts"]
    assert "\r" not in content and [line for line in content.splitlines() if line] == [KNOWN_HOSTS]
    assert "accept-new" not in " ".join(argv)
    (known_hosts,) = option(argv, "UserKnownHostsFile")
    assert not Path(known_hosts).exists(), "the known_hosts file is left behind"


def test_missing_known_hosts_is_named(default_project, tmp_path):
    """Without SSH_KNOWN_HOSTS, one line names it, before ssh runs."""
    result, call = ci_deploy(default_project, tmp_path, "production", SHA, SSH_KNOWN_HOSTS="")
    assert result.returncode == 1 and call is None
    assert result.stderr.strip() == ("✖ SSH_KNOWN_HOSTS is not set (the production server's host key line, from "
                                     "ssh-keyscan; in CI, a secret of the production environment)")


@pytest.mark.parametrize("sha", [SHA[:8], SHA.upper(), SHA + "0", "origin/main", f"{SHA[:39]};"])
def test_sha_that_is_not_a_full_sha_is_refused(default_project, tmp_path, sha):
    """H2: only a full 40-character lowercase SHA is sent; an 8-character one is a name a tag can take."""
    result, call = ci_deploy(default_project, tmp_path, "production", sha)
    assert result.returncode == 1 and call is None
    assert result.stderr.strip() == (f"✖ '{sha}' is not a full 40-character commit SHA ($CI_COMMIT_SHA, "
                                     "$GITHUB_SHA, git rev-parse HEAD)")


@pytest.mark.parametrize("server", ["-oProxyCommand=touch /tmp/pwned", "a b", "host;id"])
def test_server_that_is_no_host_is_refused(default_project, tmp_path, server):
    """A SERVER_IP that is not a host name or address fails naming it, before ssh runs."""
    result, call = ci_deploy(default_project, tmp_path, "staging", SHA, SERVER_IP=server)
    assert result.returncode == 1 and call is None
    assert "SERVER_IP is not a host name or IP address" in result.stderr


def test_missing_server_ip_is_named(default_project, tmp_path):
    """Without SERVER_IP, one line names it and the environment it belongs to."""
    result, call = ci_deploy(default_project, tmp_path, "production", SHA, SERVER_IP="")
    assert result.returncode == 1 and call is None
    assert result.stderr.strip() == ("✖ SERVER_IP is not set (the production server's address; in CI, a secret of "
                                     "the production environment)")


@pytest.mark.parametrize("args", [["staging", SHA, "--yes"], ["qa", SHA], ["staging", SHA, "-s", "extra"]],
                         ids=["unknown-flag", "unknown-environment", "extra-argument"])
def test_bad_call_prints_usage(default_project, tmp_path, args):
    """A call outside the usage line exits 2 with the usage line, before ssh runs."""
    result, call = ci_deploy(default_project, tmp_path, *args)
    assert result.returncode == 2 and call is None
    assert result.stderr.strip() == "usage: script/ci_deploy [--digests FILE] staging|production SHA [-s]"


def test_digests_file_without_an_image_is_named(default_project, tmp_path):
    """--digests FILE must name this registry's lucky and hasura digests; a missing one is one line, before ssh."""
    digests = tmp_path / "images.digests"
    digests.write_text(f"registry.gitlab.com/my-group/lhd-app/lucky@sha256:{'1' * 64}\n"
                       f"elsewhere.example.com/my-group/lhd-app/hasura@sha256:{'2' * 64}\n")
    result, call = ci_deploy(default_project, tmp_path, "--digests", str(digests), "production", SHA)
    assert result.returncode == 1 and call is None
    assert result.stderr.strip() == (f"✖ {digests} has no digest of registry.gitlab.com/my-group/lhd-app/hasura "
                                     "(script/build --push --digests FILE writes it)")
    result, call = ci_deploy(default_project, tmp_path, "--digests", str(tmp_path / "none"), "production", SHA)
    assert result.returncode == 1 and call is None
    assert result.stderr.strip() == (f"✖ {tmp_path / 'none'} does not exist (script/build --push --digests FILE "
                                     "writes it)")
