"""script/ci_deploy quotes every value of the command it sends over SSH (no Docker, no network).

A fake `ssh` on PATH records the argv; the remote command is then run the way
the server's shell runs it (`bash -c`), with fake `git`, `touch` and
`script/deploy` that record their calls instead of acting.
"""

import os
import subprocess
from pathlib import Path

import pytest

from harness.rules.ci_checks import calls, fake_commands, write_recorder

SHA = "aaaa1111"
SERVER = "203.0.113.7"
# A path that ends the quoting of a naive 'cd '${path}'' and runs a command of its own.
INJECTED = "/srv/a b'; touch /tmp/pwned #"


def ci_deploy(project, tmp_path, *args, **env):
    """Run script/ci_deploy with a recording ssh first on PATH; return (result, ssh argv or None)."""
    log = tmp_path / "ssh.log"
    bin_dir = fake_commands(tmp_path / "ci-bin", log, "ssh")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SERVER_IP": SERVER, **env}
    result = subprocess.run([project / "script/ci_deploy", *args], cwd=project, env=env, capture_output=True,
                            text=True, timeout=60, check=False)
    recorded = calls(log)
    assert len(recorded) <= 1, recorded
    return result, (recorded[0]["argv"] if recorded else None)


def sent_command(project, tmp_path, *args, **env):
    """The remote command script/ci_deploy hands to ssh (its last argument), after checking the destination."""
    result, argv = ci_deploy(project, tmp_path, *args, **env)
    assert result.returncode == 0 and argv, result.stdout + result.stderr
    assert argv[-2] == f"deploy@{SERVER}" and "BatchMode=yes" in argv, argv
    return argv[-1]


def run_remotely(command, tmp_path, deploy_path=None):
    """Run command with `bash -c` in a fresh directory, fake git and touch on PATH and a fake
    script/deploy in deploy_path; return (result, recorded calls)."""
    log = tmp_path / "server.log"
    bin_dir = fake_commands(tmp_path / "server-bin", log, "git", "touch")
    if deploy_path is not None:
        write_recorder(Path(deploy_path) / "script" / "deploy", log)
    home = tmp_path / "home"
    home.mkdir()
    result = subprocess.run(["bash", "-c", command], cwd=home, env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(home)},
                            capture_output=True, text=True, timeout=60, check=False)
    return result, calls(log)


def test_injected_path_stays_one_argument_of_cd(default_project, tmp_path):
    """DEPLOY_PATH="/srv/a b'; touch /tmp/pwned #" reaches cd whole, and nothing else runs when it is missing."""
    assert not Path(INJECTED).exists()
    command = sent_command(default_project, tmp_path, "staging", SHA, "-s", DEPLOY_PATH=INJECTED)
    result, recorded = run_remotely(command, tmp_path)
    assert result.returncode != 0
    assert f"cd: {INJECTED}: No such file or directory" in result.stderr, result.stderr
    assert recorded == [], recorded


@pytest.mark.parametrize(("flags", "deploy_argv"), [([], [SHA]), (["-s"], ["-s", "--yes", SHA])],
                         ids=["additive", "subtractive"])
def test_remote_command_runs_in_deploy_path(default_project, tmp_path, flags, deploy_argv):
    """In an existing directory of that awkward name, git and script/deploy run there; the injected touch never runs."""
    deploy_path = tmp_path / "server" / INJECTED.lstrip("/")
    deploy_path.mkdir(parents=True)
    command = sent_command(default_project, tmp_path, "production", SHA, *flags, DEPLOY_PATH=str(deploy_path))
    result, recorded = run_remotely(command, tmp_path, deploy_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [(c["name"], c["argv"]) for c in recorded] == [
        ("git", ["fetch", "--quiet", "origin"]), ("git", ["checkout", "--quiet", SHA]), ("deploy", deploy_argv)]
    assert {Path(c["cwd"]).resolve() for c in recorded} == {deploy_path.resolve()}


@pytest.mark.parametrize("server", ["-oProxyCommand=touch /tmp/pwned", "a b", "host;id"])
def test_server_that_is_no_host_is_refused(default_project, tmp_path, server):
    """A SERVER_IP that is not a host name or address fails naming it, before ssh runs."""
    result, argv = ci_deploy(default_project, tmp_path, "staging", SHA, SERVER_IP=server)
    assert result.returncode == 1 and argv is None
    assert "SERVER_IP is not a host name or IP address" in result.stderr


def test_missing_server_ip_is_named(default_project, tmp_path):
    """Without SERVER_IP, one line names it and the environment it belongs to."""
    result, argv = ci_deploy(default_project, tmp_path, "production", SHA, SERVER_IP="")
    assert result.returncode == 1 and argv is None
    assert result.stderr.strip() == ("✖ SERVER_IP is not set (the production server's address; in CI, a secret of "
                                     "the production environment)")


@pytest.mark.parametrize("args", [["staging", SHA, "--yes"], ["qa", SHA], ["staging", SHA, "-s", "extra"]],
                         ids=["unknown-flag", "unknown-environment", "extra-argument"])
def test_bad_call_prints_usage(default_project, tmp_path, args):
    """A call outside the usage line exits 2 with the usage line, before ssh runs."""
    result, argv = ci_deploy(default_project, tmp_path, *args)
    assert result.returncode == 2 and argv is None
    assert result.stderr.strip() == "usage: script/ci_deploy staging|production SHA [-s]"
