"""Fresh servers for script/provision: Debian containers with sshd and nothing else, reached over real SSH.

`FreshServer` is a container of kit/provision-node (Debian sid minbase + openssh-server, iproute2, procps, tini;
no Docker, no git, no firewall) started with the Docker-in-Docker capabilities shared/ENVIRONMENT.md lists
(harness.cluster_nodes.NODE_OPTIONS) and a volume at /var/lib/docker, so the Docker engine script/provision
installs in it runs. Root logs in with a fresh ed25519 key (as on a cloud image); port 22 is published on
127.0.0.1 at a free port and an ssh_config (`ssh_config`) names it, the key and a known_hosts file of the test's own.

systemd is not PID 1 (it does not run under these capabilities): tini is, and Debian's init.d scripts (`service
docker start`, `service ssh reload`) stand in; script/provision uses systemd where it is PID 1 and them otherwise.

Every container, volume and network carries the run's labels (harness/reaper.py) and is named
`lhd-prov-<8 hex>-...`; `close()` removes them.
"""

from pathlib import Path

from harness import reaper
from harness.cluster_nodes import NODE_OPTIONS
from harness.docker import docker, free_port, unique
from harness.proc import run
from harness.server import keypair
from harness.wait import until
from kit import kit

PREFIX = "lhd-prov"
IMAGE = "lhd-provision/server:sid"
REMOTE_DIR = "/srv/remote"  # the bare repository a test clones from, mounted read-only


def build_image():
    """kit/provision-node on the kit's debootstrapped sid (content-hashed like every kit image)."""
    parent = kit.build_base(kit.BASE_SID)
    kit.build_image(kit.Image(IMAGE, "provision-node", parent=kit.BASE_SID), parent)
    return IMAGE


class FreshServers:
    """Fresh servers on one bridge network of their own; `add()` starts one."""

    def __init__(self, workdir, remote=None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = unique(PREFIX)
        self.labels = reaper.label_args()
        self.remote = Path(remote) if remote else None
        self.servers = []
        self.private_key = self.workdir / "root-key"
        _, self.public_key = keypair(self.workdir, "root-key")
        self.known_hosts = self.workdir / "known_hosts"
        self.known_hosts.touch()
        self.ssh_config = self.workdir / "ssh_config"
        self.ssh_config.write_text("")
        docker("network", "create", *self.labels, self.name)

    def add(self, short):
        """Start server `<name>-<short>`; return its container name once sshd answers over SSH."""
        container = f"{self.name}-{short}"
        port = free_port()
        mounts = ["-v", f"{self.remote}:{REMOTE_DIR}:ro"] if self.remote else []
        docker("volume", "create", *self.labels, f"{container}-docker")
        docker("run", "-d", "--name", container, "--hostname", short, "--network", self.name,
               "--network-alias", short, *self.labels,
               *NODE_OPTIONS, "-p", f"127.0.0.1:{port}:22", "-e", f"ROOT_KEY={self.public_key}",
               "-v", f"{container}-docker:/var/lib/docker", *mounts, IMAGE)
        self.servers.append(container)
        # One Host block per server: script/provision's SSH_USER@HOST names it (root@<short>).
        with self.ssh_config.open("a") as handle:
            handle.write(f"Host {short}\n  HostName 127.0.0.1\n  Port {port}\n  IdentityFile {self.private_key}\n"
                         f"  IdentitiesOnly yes\n  UserKnownHostsFile {self.known_hosts}\n"
                         f"  GlobalKnownHostsFile /dev/null\n  HostKeyAlias {container}\n\n")
        until(lambda: self.ssh(short, "true", check=False).returncode == 0, 30, f"sshd in {container} to answer")
        return container

    def ssh(self, short, *command, check=True, timeout=60):
        return run(["ssh", "-F", self.ssh_config, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new",
                    f"root@{short}", *command], check=check, timeout=timeout)

    def on(self, container, *argv, check=True, timeout=120):
        """argv in the server (docker exec), for reading state back; never for provisioning."""
        return run(["docker", "exec", container, *argv], check=check, timeout=timeout)

    def ip(self, container):
        return docker("inspect", "--format", f'{{{{ (index .NetworkSettings.Networks "{self.name}").IPAddress }}}}',
                      container).stdout.strip()

    def close(self):
        """Remove every server (the engines inside stop with them), its volume, and the network. Idempotent."""
        for container in self.servers:
            docker("rm", "-f", "-v", container, check=False, timeout=180)
            docker("volume", "rm", "-f", f"{container}-docker", check=False)
        docker("network", "rm", self.name, check=False)
