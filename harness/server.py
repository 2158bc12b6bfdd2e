"""A server as the generated README prepares one: a Debian node with Docker, reached over real SSH.

`Server` is the cluster tier's recipe (harness/cluster.py: the registry with TLS and a login, one
Docker-in-Docker node, everything named `lhd-cluster-<8 hex>-...` and removed by `close()`) with no workers,
plus what CI needs of a server:

- OpenSSH's sshd in the node (kit/dind, started by LHD_SSHD=on), its port 22 published on 127.0.0.1 at a
  free port, its ed25519 host key read back from the node (`known_hosts_line`: the pinned line CI's
  SSH_KNOWN_HOSTS holds, checked against nothing the network said);
- a `deploy` user in the docker group;
- the project cloned into /srv/<project> from a real git remote: a bare repository the test owns, mounted into
  the node read-only at /srv/remote (a file:// URL), and bootstrapped as the README's "1. Server" says
  (`prepare`); the CI key's authorized_keys line restricted to script/ci_deploy_remote exactly as the README's
  "The deploy key" shows (`authorize`).

Provisioning and the runbook tests can reuse it: nothing here is specific to a pipeline.
"""

import os
import re
import subprocess
from pathlib import Path

from harness.certs import make_ca
from harness.cluster_nodes import (  # noqa: F401 - build_images: the pipeline tier imports it from here
    NODE_IMAGE,
    REGISTRY_HOST,
    REGISTRY_IMAGE,
    Cluster,
    build_images,
    upstream_image,
)
from harness.docker import docker
from harness.proc import run
from harness.stack import DOMAIN, STAGING_DOMAIN, SWARM_NAME, harness_overrides, write_override
from harness.wait import until

SERVER_IMAGE = NODE_IMAGE  # kit/dind: the cluster's node image, whose sshd LHD_SSHD=on starts
DEPLOY_USER = "deploy"
PROJECT_DIR = f"/srv/{SWARM_NAME}"
REMOTE_DIR = "/srv/remote"  # the bare repositories, mounted read-only
OVERRIDES = "/srv/overrides/app.yml"  # the server's own compose override (LHD_EXTRA_COMPOSE_FILES)
# The stack's Docker Hub images: no registry here serves them, so in local mode the kit's images (lent these
# names on the host) are loaded into the server.
THIRD_PARTY = ("postgres", "traefik", "tecnativa/docker-socket-proxy")


def keypair(directory, name="ci-deploy"):
    """A fresh ed25519 key pair in directory (ssh-keygen); returns (private key text, public key line)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / name
    for path in (key, key.with_suffix(".pub")):
        path.unlink(missing_ok=True)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", key])
    return key.read_text(), key.with_suffix(".pub").read_text().strip()


class Server(Cluster):
    """The registry and one node, `self.manager`, that is the server: sshd, a deploy user, the project."""

    def __init__(self, workdir, remote):
        """remote: a host directory holding bare repositories, mounted read-only at /srv/remote."""
        super().__init__(workdir, workers=0, publish=(80, 443, 22))
        self.remote = Path(remote)
        self.remote.chmod(0o755)  # the mount point: the deploy user must reach the repositories in it
        self.project = PROJECT_DIR
        self.bootstrap_output = ""

    def start(self):
        """The cluster's start (network, registry, node), then the node leaves the swarm Cluster.start made:
        on a server, the README's `script/bootstrap --swarm` makes it."""
        super().start()
        self.docker_on(self.manager, "swarm", "leave", "--force")
        return self

    def node_options(self, node):
        # The cluster's node (its only one, the manager: ports 80, 443 and 22 on 127.0.0.1), plus sshd
        # (LHD_SSHD=on) and the remote.
        return ["-e", "LHD_SSHD=on", "-v", f"{self.remote}:{REMOTE_DIR}:ro"]

    @property
    def host(self):
        """The server's name on the cluster network (what a job there puts in SERVER_IP)."""
        return self.manager

    # -- commands on the server ----------------------------------------------------------
    def as_root(self, *argv, **kw):
        return self.on(self.manager, *argv, **kw)

    def as_deploy(self, *argv, check=True, timeout=900, input=None, env=None, cwd=None):
        """argv as the deploy user (a login's HOME), in cwd (the project by default), no terminal."""
        flags = ["-u", DEPLOY_USER, "-w", cwd or self.project, "-e", f"HOME=/home/{DEPLOY_USER}"]
        for key, value in (env or {}).items():
            flags += ["-e", f"{key}={value}"]
        if input is not None:
            flags.append("-i")
        return run(["docker", "exec", *flags, self.manager, *argv], check=check, timeout=timeout, input=input,
                   stdin=None if input is not None else subprocess.DEVNULL)

    def script(self, name, *args, **kw):
        """script/NAME ARGS in the project, as the deploy user."""
        return self.as_deploy(f"{self.project}/script/{name}", *args, **kw)

    # -- sshd -----------------------------------------------------------------------------
    def sshd_ready(self):
        return self.as_root("test", "-s", "/etc/ssh/ssh_host_ed25519_key.pub", check=False).returncode == 0 and \
            self.as_root("pgrep", "-x", "sshd", check=False).returncode == 0

    def known_hosts_line(self, name=None):
        """`NAME ssh-ed25519 AAAA...`: the server's host key as sshd has it, read in the node (the README's
        check of ssh-keyscan's answer against `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` there)."""
        until(self.sshd_ready, 30, "sshd to start in the server with its host keys")
        kind, key = self.as_root("cat", "/etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[:2]
        return f"{name or self.host} {kind} {key}"

    # -- the README's "1. Server" --------------------------------------------------------
    def prepare(self, clone_url, mode):
        """Make the deploy user, clone and bootstrap the project as the README says (plus this machine's tuning
        in .env.production, where the README sends per-server settings); load the stack's Docker Hub images in
        local mode. Returns the CA the site's certificate is signed by (for requests from the host)."""
        self.add_deploy_user()
        self.as_root("install", "-d", "-o", DEPLOY_USER, "-g", DEPLOY_USER, self.project)
        home = f"/home/{DEPLOY_USER}"
        self.as_deploy("git", "clone", "--quiet", "--no-tags", clone_url, self.project, cwd=home)
        self.as_deploy("git", "config", "remote.origin.tagOpt", "--no-tags")
        self.as_deploy("docker", "login", REGISTRY_HOST, "-u", self.registry_user, "--password-stdin",
                       input=self.registry_password)
        site_ca, cert, key = make_ca(self.workdir / "site-certs", DOMAIN, STAGING_DOMAIN)
        for source, name in ((cert, "origin.crt"), (key, "origin.key")):
            docker("cp", source, f"{self.manager}:{self.project}/etc/certs/{name}")
        self.as_root("chown", "-R", f"{DEPLOY_USER}:{DEPLOY_USER}", f"{self.project}/etc/certs")
        self.bootstrap_output = self.script("bootstrap", "--swarm").stdout
        self.tune(mode)
        if mode == "local":
            self.load([upstream_image(name) for name in THIRD_PARTY], [self.manager])
        return site_ca

    def tune(self, mode):
        """This machine's settings in .env.production: the dnsrr override (no IPVS here) and no overlay
        encryption (no IPsec state between Docker-in-Docker engines; harness/cluster.py says how it was seen)."""
        app, _, self.notes = harness_overrides(mode)
        local = self.workdir / "server-app.yml"
        write_override(local, app, "The server's own override (harness/server.py).")
        self.as_root("mkdir", "-p", os.path.dirname(OVERRIDES))
        docker("cp", local, f"{self.manager}:{OVERRIDES}")
        self.as_root("chmod", "a+r", OVERRIDES)
        env_file = f"{self.project}/.env.production"
        self.as_deploy("sed", "-i", "s/^OVERLAY_ENCRYPTION=on$/OVERLAY_ENCRYPTION=off/", env_file)
        self.as_deploy("sh", "-c", f'printf "%s\\n" "LHD_EXTRA_COMPOSE_FILES={OVERRIDES}" >>"$0"', env_file)

    def add_deploy_user(self):
        """`deploy`, in the docker group, no password (keys only); its uid. Idempotent."""
        if self.as_root("id", "-u", DEPLOY_USER, check=False).returncode != 0:
            self.as_root("useradd", "--create-home", "--shell", "/bin/bash", "--groups", "docker", DEPLOY_USER)
            self.as_root("usermod", "-p", "*", DEPLOY_USER)  # not locked, so sshd lets its keys in
        return int(self.as_root("id", "-u", DEPLOY_USER).stdout)

    def authorize(self, public_key):
        """The CI key's line in ~deploy/.ssh/authorized_keys, as the README's "The deploy key" gives it."""
        line = f'restrict,command="{self.project}/script/ci_deploy_remote" {public_key}'
        ssh = f"/home/{DEPLOY_USER}/.ssh"
        self.as_deploy("sh", "-c", 'umask 077 && mkdir -p "$0" && printf "%s\\n" "$1" >"$0/authorized_keys"', ssh, line,
                       cwd=f"/home/{DEPLOY_USER}")
        return line

    def dashboard_password(self):
        match = re.search(r"login: admin / (\S+)", self.bootstrap_output)
        return match.group(1) if match else None

    def checkout(self):
        """The commit the server's clone has checked out."""
        return self.as_deploy("git", "rev-parse", "HEAD").stdout.strip()

    def releases(self):
        """var/releases.log, as lines."""
        out = self.as_deploy("cat", f"{self.project}/var/releases.log", check=False).stdout
        return out.splitlines()
