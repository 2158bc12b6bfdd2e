"""script/provision without a server: its help, its argument refusals (one line, no SSH), the SSH command it runs,
and the remote program's refusals, run on this machine by a fake `ssh` with fake mutating commands (apt-get,
useradd, nft, ...) that record any call: a refused server sees no change. shellcheck of the remote program is the
lint tier's (tests/lint/test_generated.py checks script/functions/*)."""

import os
import subprocess

import pytest

from harness.proc import run

MUTATING = ["apt-get", "useradd", "usermod", "install", "nft", "sshd", "service", "systemctl", "runuser", "mv",
            "touch", "chmod", "git"]


def fake(directory, name, body):
    directory.mkdir(exist_ok=True)
    (directory / name).write_text("#!/bin/bash\n" + body)
    (directory / name).chmod(0o755)


@pytest.fixture
def env(tmp_path):
    """PATH with a fake ssh that records its argv and stdin, then runs the program (`bash -s`) here, and fakes
    for every command that would change this machine (each records the call and fails)."""
    bin_dir = tmp_path / "bin"
    log = tmp_path / "calls.log"
    fake(bin_dir, "ssh", f'printf "ssh %s\\n" "$*" >>"{log}"\ncat >"{tmp_path}/program"\n'
                         f'exec bash "{tmp_path}/program"\n')
    for name in MUTATING:
        fake(bin_dir, name, f'printf "MUTATED {name} %s\\n" "$*" >>"{log}"\nexit 97\n')
    fake(bin_dir, "id", 'if [[ "$1" == -u && $# == 1 ]]; then echo 0; else exec /usr/bin/id "$@"; fi\n')
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}, log, bin_dir


def provision(project, env, *args):
    return run([project / "script/provision", *args], cwd=project, env=env, check=False,
               stdin=subprocess.DEVNULL, timeout=60)


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_explains_without_side_effects(default_project, env, flag):
    """The usage line, a sentence, every option and examples; nothing reaches ssh."""
    environment, log, _ = env
    result = provision(default_project, environment, flag)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("usage: script/provision ") and lines[1] == ""
    for option in ["--join", "--user", "--key", "--repo", "--docker-from", "-F", "-h, --help", "Examples:",
                   "StrictHostKeyChecking=accept-new"]:
        assert option in result.stdout, option
    assert not log.exists()


@pytest.mark.parametrize(("args", "status", "message"), [
    ([], 2, "usage: script/provision "),
    (["--no-such-option", "root@h"], 2, "usage: script/provision "),
    (["root@a", "root@b"], 2, "usage: script/provision "),
    (["--user"], 2, "usage: script/provision "),
    (["root@bad host"], 1, "✖ 'root@bad host' is not SSH_USER@HOST"),
    (["-o", "ProxyCommand=x"], 2, "usage: script/provision "),
    (["--join", "x;reboot", "root@h"], 1, "✖ --join 'x;reboot' is not [user@]HOST"),
    (["--user", "Root!", "root@h"], 1, "✖ --user 'Root!' is not a user name"),
    (["--docker-from", "snap", "root@h"], 1, "✖ --docker-from 'snap' is not auto, distribution or docker"),
    (["--key", "/nonexistent.pub", "root@h"], 1, "✖ --key /nonexistent.pub does not exist"),
    (["--repo", "--upload-pack=x", "root@h"], 1, "✖ --repo '--upload-pack=x' is not a repository URL"),
])
def test_bad_arguments_are_refused_in_one_line_before_ssh(default_project, env, args, status, message):
    environment, log, _ = env
    result = provision(default_project, environment, *args)
    assert result.returncode == status
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(message), result.stderr
    assert not log.exists()


def test_a_private_key_is_refused(default_project, env, tmp_path):
    """--key given the private key file: refused, and the private key never sent."""
    environment, log, _ = env
    key = tmp_path / "ci"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key])
    result = provision(default_project, environment, "--key", key, "root@h")
    assert result.returncode == 1 and "is it the private key?" in result.stderr
    assert not log.exists()


def docker_fake(bin_dir, ps=(), ours=(), state="inactive", client="28.5.2"):
    """A docker whose engine answers as `docker info`/`version`/`ps` print (text, no --format): containers ps
    (names; those in ours are the stack's tasks) and the swarm state given."""
    table = "".join(f"id-{name} image cmd 1 minute ago Created {name}\\n" for name in ps)
    ids = " ".join(f"id-{name}" for name in ours)
    fake(bin_dir, "docker", f"""case "$*" in
  info) printf ' Swarm: {state}\\n NodeID: x\\n' ;;
  version) printf 'Client:\\n Version:           {client}\\n' ;;
  "ps -aq --no-trunc --filter label=com.docker.stack.namespace=lhd_app") printf '%s\\n' {ids} ;;
  "ps -a --no-trunc") printf 'CONTAINER ID IMAGE COMMAND CREATED STATUS NAMES\\n{table}' ;;
  *) echo "MUTATED docker $*" >>"$(dirname "$0")/../calls.log"; exit 97 ;;
esac
""")


@pytest.mark.parametrize(("docker", "message"), [
    ({"ps": ["web-1", "lhd_app_db.1.x"], "ours": ["lhd_app_db.1.x"]},
     "✖ refused: this server already has containers that are not lhd_app's (web-1): provision a server that runs "
     "nothing else; nothing was changed"),
    ({"state": "active"}, "✖ refused: this server is already in a swarm script/provision did not make "
                          "(node x): leave it (docker swarm leave) or use another server; "
                          "nothing was changed"),
    ({"client": "20.10.24+dfsg1"}, "✖ refused: this server's Docker CLI is 20.10.24+dfsg1, too old to read the "
                                   "stack's compose files (23 or later): remove docker.io and run script/provision "
                                   "again; nothing was changed"),
])
def test_a_server_in_use_is_refused_in_one_line_before_any_change(default_project, env, docker, message):
    """Through the fake ssh the real remote program runs its checks: one line, exit 1, no mutating command."""
    environment, log, bin_dir = env
    docker_fake(bin_dir, **docker)
    result = provision(default_project, environment, "root@server.example.org")
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.splitlines() == [message]
    calls = log.read_text().splitlines()
    assert not [c for c in calls if c.startswith("MUTATED")], calls


def test_the_ssh_command_and_the_program_it_sends(default_project, env, tmp_path):
    """BatchMode, the host key trusted on first use, `sudo -n bash -s` for a non-root user, and every setting
    as one %q-quoted assignment ahead of the program."""
    environment, log, bin_dir = env
    docker_fake(bin_dir, ps=["other"])
    key = tmp_path / "ci"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ci runner", "-f", key])
    provision(default_project, environment, "--key", f"{key}.pub", "--user", "ship", "admin@203.0.113.7")
    (call,) = [c for c in log.read_text().splitlines() if c.startswith("ssh ")]
    assert call == ("ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new -o ConnectTimeout=20 "
                    "admin@203.0.113.7 sudo -n bash -s")
    program = (tmp_path / "program").read_text()
    public = (tmp_path / "ci.pub").read_text().strip().replace(" ", "\\ ")
    assert f"CI_KEY={public}\n" in program and "DEPLOY_USER=ship\n" in program
    assert "ROOT_LOGIN=no\n" in program and "MODE=provision\n" in program
    assert "PRIVATE KEY" not in program


def getent_fake(bin_dir, misses):
    """A getent whose first `misses` lookups find nothing (exit 2: getent(1), "one or more supplied key could not
    be found"), then every name is 10.0.0.5; each call is counted in getent.calls."""
    fake(bin_dir, "getent", f"""calls="$(dirname "$0")/getent.calls"
echo "$*" >>"$calls"
[ "$(wc -l <"$calls")" -gt {misses} ] || exit 2
echo "10.0.0.5        STREAM $2"
""")


@pytest.mark.parametrize(("misses", "message"), [
    (4, "✖ the manager is not in a swarm: provision it first"),
    (5, "✖ root@server.example.org cannot resolve manager.example.org or has no route to it: nothing was changed"),
], ids=["passing-miss", "unresolvable"])
def test_join_resolves_the_manager_or_says_it_cannot(default_project, env, misses, message):
    """--join: the new node resolves the manager's name, trying 5 times over 10 s; four misses are passed over (the
    run goes on to the manager, which this fake says is in no swarm), five are one line naming it. Before, the
    first miss ended the remote program under set -e with status 2 and no word (seen in CI), and three tries 1 s
    apart were not enough either (a swarm peer's name missed for longer, seen in a full run)."""
    environment, log, bin_dir = env
    docker_fake(bin_dir)
    getent_fake(bin_dir, misses)
    result = provision(default_project, environment, "--join", "root@manager.example.org", "root@server.example.org")
    assert (result.returncode, result.stderr.splitlines()) == (1, [message]), result.stdout
    assert (bin_dir / "getent.calls").read_text().splitlines()[:5] == ["ahosts manager.example.org"] * 5
    calls = log.read_text().splitlines()
    assert not [c for c in calls if c.startswith("MUTATED")], calls
