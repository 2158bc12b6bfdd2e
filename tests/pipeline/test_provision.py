"""script/provision against fresh Debian servers (harness/provision.py: containers with sshd and nothing else),
over real SSH from the host, with Debian's real packages installed in them by apt.

In file order: a fresh server provisioned; a second run changes nothing; the firewall read back and a swarm
port refused from another node while SSH is let through; a second server joined as a worker (the manager's
firewall then lets it in); a server already running another container refused in one line.
"""

import shutil
import time

import pytest

from harness.proc import run
from harness.provision import REMOTE_DIR, FreshServers, build_image

PROJECT = "lhd_app"
TIMES = {}


@pytest.fixture(scope="module")
def project(default_project, tmp_path_factory):
    """The default project committed on main, and a bare clone of it the servers clone from (a file:// URL)."""
    work = tmp_path_factory.mktemp("provision-project") / PROJECT
    shutil.copytree(default_project, work, symlinks=True)
    git = ["git", "-C", work, "-c", "user.name=t", "-c", "user.email=t@example.com"]
    run(["git", "init", "-q", "-b", "main", work])
    run([*git, "add", "-A"])
    run([*git, "commit", "-q", "-m", "Start from LHD"])
    remote = tmp_path_factory.mktemp("provision-remote")
    run(["git", "clone", "-q", "--bare", work, remote / "app.git"])
    run(["chmod", "-R", "a+rX", remote])
    return work, remote


@pytest.fixture(scope="module")
def servers(project, tmp_path_factory):
    build_image()
    fleet = FreshServers(tmp_path_factory.mktemp("provision"), remote=project[1])
    try:
        fleet.add("alpha")
        fleet.add("beta")
        yield fleet
    finally:
        fleet.close()


@pytest.fixture(scope="module")
def ci_key(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ci-key")
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ci", "-f", directory / "ci"])
    return directory / "ci"


def provision(project, servers, ci_key, *args, check=True):
    """script/provision from the project on the host, over SSH, as root of the server."""
    return run([project[0] / "script/provision", "-F", servers.ssh_config, "--key", f"{ci_key}.pub",
                "--repo", f"file://{REMOTE_DIR}/app.git", *args], check=check, timeout=1500, cwd=project[0])


def alpha(servers):
    return servers.servers[0]


def test_a_fresh_server_is_provisioned(project, servers, ci_key):
    """Docker, the deploy user with the restricted CI key, sshd, the clone without tags and the bootstrapped swarm."""
    started = time.perf_counter()
    result = provision(project, servers, ci_key, "root@alpha")
    TIMES["first"] = time.perf_counter() - started
    print(result.stdout, result.stderr, f"provisioned in {TIMES['first']:.0f} s", sep="\n")
    assert "✔ Provisioned:" in result.stdout
    node = alpha(servers)
    assert servers.on(node, "docker", "compose", "version").returncode == 0
    assert "docker" in servers.on(node, "id", "-nG", "deploy").stdout.split()
    keys = servers.on(node, "cat", "/home/deploy/.ssh/authorized_keys").stdout
    assert keys.startswith(f'restrict,command="/srv/{PROJECT}/script/ci_deploy_remote" ssh-ed25519 ')
    effective = servers.on(node, "sshd", "-T").stdout.lower().replace("without-password", "prohibit-password")
    assert "passwordauthentication no" in effective and "permitrootlogin prohibit-password" in effective
    # As deploy, the clone's owner: root's git ignores another user's repository config (safe.directory).
    assert servers.on(node, "runuser", "-u", "deploy", "--", "git", "-C", f"/srv/{PROJECT}", "config",
                      "remote.origin.tagOpt").stdout.strip() == "--no-tags"
    assert servers.on(node, "docker", "info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip() == "active"
    assert servers.on(node, "test", "-s", f"/srv/{PROJECT}/.env.production").returncode == 0
    # The CI key reaches script/ci_deploy_remote and nothing else, over real SSH.
    denied = run(["ssh", "-F", servers.ssh_config, "-o", "BatchMode=yes", "-i", ci_key, "deploy@alpha", "id"],
                 check=False, timeout=60)
    assert denied.returncode != 0 and "the CI key only runs 'deploy" in denied.stderr, denied.stderr


def test_a_second_run_changes_nothing(project, servers, ci_key):
    """Every step says "already" and the last line says nothing changed."""
    started = time.perf_counter()
    result = provision(project, servers, ci_key, "root@alpha")
    TIMES["second"] = time.perf_counter() - started
    print(result.stdout, f"second run in {TIMES['second']:.0f} s", sep="\n")
    assert result.stdout.rstrip().endswith("✔ Nothing changed: this server was already provisioned.")
    assert "→" not in result.stdout.replace("→ Provisioning", "")


def reach(servers, source, target, port):
    """Whether a TCP connection from server `source` to `target`:port opens within 3 s."""
    probe = f"timeout 3 bash -c 'exec 3<>/dev/tcp/{target}/{port}'"
    return servers.on(source, "bash", "-c", probe, check=False).returncode == 0


def test_the_firewall_reads_back_and_refuses_swarm_ports_to_strangers(servers):
    """nftables holds the table; from another node SSH opens but the manager's 2377 (listening) does not."""
    node, other = servers.servers
    table = servers.on(node, "nft", "list", "table", "inet", "lhd_firewall").stdout
    assert "policy drop" in table and "tcp dport { 22, 80, 443 } accept" in table
    assert "ip saddr @swarm_peers4 tcp dport { 2377, 7946 } accept" in table
    assert reach(servers, other, "alpha", 22)
    assert not reach(servers, other, "alpha", 2377)
    assert reach(servers, node, "127.0.0.1", 2377) or reach(servers, node, servers.ip(node), 2377)


def test_a_second_node_joins_and_the_manager_lets_it_in(project, servers, ci_key):
    """--join: beta is provisioned as a worker of alpha, and alpha's firewall now admits beta on 2377."""
    started = time.perf_counter()
    result = provision(project, servers, ci_key, "--join", "root@alpha", "root@beta")
    TIMES["join"] = time.perf_counter() - started
    print(result.stdout, result.stderr, f"joined in {TIMES['join']:.0f} s", sep="\n")
    node, other = servers.servers
    nodes = servers.on(node, "docker", "node", "ls", "--format", "{{.Hostname}} {{.Status}}").stdout.split("\n")
    assert "beta Ready" in nodes, nodes
    assert reach(servers, other, "alpha", 2377)


def test_a_server_running_another_container_is_refused_in_one_line(project, servers, ci_key):
    """A container that is not the stack's: one line, exit 1, nothing changed (the sshd drop-in untouched)."""
    node = alpha(servers)
    servers.on(node, "bash", "-c", "mkdir -p /tmp/empty && tar -C /tmp/empty -c . | docker import - lhd-other:1 "
                                   "&& docker create --name someone-elses lhd-other:1 /x")
    before = servers.on(node, "stat", "-c", "%Y", "/etc/ssh/sshd_config.d/10-lhd-hardening.conf").stdout
    try:
        result = provision(project, servers, ci_key, "root@alpha", check=False)
    finally:
        servers.on(node, "docker", "rm", "-f", "someone-elses", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "✖ refused: this server already has containers that are not lhd_app's (someone-elses): provision a server "
        "that runs nothing else; nothing was changed"], result.stderr
    assert servers.on(node, "stat", "-c", "%Y", "/etc/ssh/sshd_config.d/10-lhd-hardening.conf").stdout == before
    print("times:", TIMES)
