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
from harness.cluster_nodes import (  # noqa: F401 - build_images, seedable: the pipeline tier imports them from here
    NODE_IMAGE,
    REGISTRY_HOST,
    REGISTRY_IMAGE,
    Cluster,
    build_images,
    seedable,
    upstream_image,
)
from harness.docker import docker
from harness.proc import run
from harness.stack import (
    DOMAIN,
    STAGING_DOMAIN,
    SWARM_NAME,
    StackDriver,
    harness_overrides,
    host_header_session,
    write_override,
)
from harness.wait import until

SERVER_IMAGE = NODE_IMAGE  # kit/dind: the cluster's node image, whose sshd LHD_SSHD=on starts
DEPLOY_USER = "deploy"
PROJECT_DIR = f"/srv/{SWARM_NAME}"
REMOTE_DIR = "/srv/remote"  # the bare repositories, mounted read-only
OVERRIDES = "/srv/overrides/app.yml"  # the server's own compose override (LHD_EXTRA_COMPOSE_FILES)
# The stack's Docker Hub images: no registry here serves them, so in local mode the kit's images (lent these
# names on the host) are loaded into the server.
THIRD_PARTY = ("postgres", "traefik", "tecnativa/docker-socket-proxy")


def third_party_seed():
    """The stack's Docker Hub images under their upstream names, for a server's node to start with
    (harness/cluster_nodes.py `seeded_store`), when the host has them all (local mode: the kit lends the names);
    else none, and the server gets them as it would without."""
    return seedable([upstream_image(name) for name in THIRD_PARTY])


def keypair(directory, name="ci-deploy"):
    """A fresh ed25519 key pair in directory (ssh-keygen); returns (private key text, public key line)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / name
    for path in (key, key.with_suffix(".pub")):
        path.unlink(missing_ok=True)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", key])
    return key.read_text(), key.with_suffix(".pub").read_text().strip()


def served_version(port, site_ca, domain=DOMAIN):
    """/version through a server's 443 published on 127.0.0.1:port, as api.<domain>, verified against the site's
    CA."""
    answer = host_header_session().get(f"https://127.0.0.1:{port}/version", timeout=5,
                                       headers={"Host": f"api.{domain}"}, verify=str(site_ca))
    answer.raise_for_status()
    return answer.json()["version"]


class Server(Cluster):
    """The registry and one node, `self.manager`, that is the server: sshd, a deploy user, the project."""

    def __init__(self, workdir, remote, registry_hosts=(REGISTRY_HOST,)):
        """remote: a host directory holding bare repositories, mounted read-only at /srv/remote; registry_hosts:
        the names the registry answers as (Cluster). The node starts with the stack's third-party images
        (`third_party_seed`)."""
        super().__init__(workdir, workers=0, publish=(80, 443, 22), registry_hosts=registry_hosts,
                         seed=third_party_seed())
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
    def prepare(self, clone_url, mode, domain=None, registry_host=REGISTRY_HOST):
        """Make the deploy user, clone and bootstrap the project as the README says (plus this machine's tuning
        in .env.production, where the README sends per-server settings); load the stack's Docker Hub images in
        local mode. domain: `script/bootstrap --domain DOMAIN` (a staging server). Returns the CA the site's
        certificate is signed by (for requests from the host). registry_host: the registry the project's images
        are in, which the README has the operator log in to (ghcr.io for a GitHub-rendered project)."""
        self.add_deploy_user()
        self.as_root("install", "-d", "-o", DEPLOY_USER, "-g", DEPLOY_USER, self.project)
        home = f"/home/{DEPLOY_USER}"
        self.as_deploy("git", "clone", "--quiet", "--no-tags", clone_url, self.project, cwd=home)
        self.as_deploy("git", "config", "remote.origin.tagOpt", "--no-tags")
        self.as_deploy("docker", "login", registry_host, "-u", self.registry_user, "--password-stdin",
                       input=self.registry_password)
        site_ca, cert, key = make_ca(self.workdir / "site-certs", DOMAIN, STAGING_DOMAIN)
        for source, name in ((cert, "origin.crt"), (key, "origin.key")):
            docker("cp", source, f"{self.manager}:{self.project}/etc/certs/{name}")
        self.as_root("chown", "-R", f"{DEPLOY_USER}:{DEPLOY_USER}", f"{self.project}/etc/certs")
        self.bootstrap_output = self.script("bootstrap", "--swarm", *(["--domain", domain] if domain else [])).stdout
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

    def authorize(self, public_key, forced=True):
        """The key's line appended to ~deploy/.ssh/authorized_keys: the CI key restricted to
        script/ci_deploy_remote as the README's "The deploy key" gives it, or (forced=False) an operator's own
        login key, as the README's "1. Server" has the operator log in as deploy."""
        line = f'restrict,command="{self.project}/script/ci_deploy_remote" {public_key}' if forced else public_key
        ssh = f"/home/{DEPLOY_USER}/.ssh"
        self.as_deploy("sh", "-c", 'umask 077 && mkdir -p "$0" && printf "%s\\n" "$1" >>"$0/authorized_keys"', ssh, line,
                       cwd=f"/home/{DEPLOY_USER}")
        return line

    def ssh(self, key_file, command, check=True, timeout=900):
        """`ssh deploy@SERVER COMMAND` from the host, as an operator at a workstation: real OpenSSH through the
        server's published port 22, with key_file (an operator's key, `authorize(..., forced=False)`) and the
        host key pinned (StrictHostKeyChecking=yes against known_hosts_line), no terminal."""
        known = Path(key_file).with_name("known_hosts")
        port = self.ports[22]
        known.write_text(self.known_hosts_line(f"[127.0.0.1]:{port}") + "\n")
        return run(["ssh", "-p", str(port), "-i", key_file, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                    "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes",
                    "-o", "ConnectTimeout=10", f"{DEPLOY_USER}@127.0.0.1", command],
                   check=check, timeout=timeout, stdin=subprocess.DEVNULL)

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

    def version(self, domain=DOMAIN):
        """/version through the server's published 443 (`served_version`), against `site_ca` (what `prepare`
        returned)."""
        return served_version(self.ports[443], self.site_ca, domain)

    def registry_digest(self, repository, image, tag):
        """The registry's digest of repository/image:tag (repository: HOST/PATH, as the project's registry), a
        HEAD of its manifest asked on the server through the login and the CA it trusts for HOST."""
        host, path = repository.split("/", 1)
        out = self.as_root("curl", "-fsSI", "--cacert", f"/etc/docker/certs.d/{host}/ca.crt",
                           "-u", f"{self.registry_user}:{self.registry_password}",
                           "-H", "Accept: application/vnd.docker.distribution.manifest.v2+json",
                           f"https://{host}/v2/{path}/{image}/manifests/{tag}").stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines()
                    if line.lower().startswith("docker-content-digest:"))


class SecondServer(Server):
    """Another server (staging) on the first one's network, pulling from its registry: one more kit/dind node
    with sshd and its own published 80, 443 and 22, named <first>-staging so the first's close() removes it."""

    def __init__(self, first, workdir, role="staging", hosts=None):
        """hosts: name -> container of the first's network whose address the node resolves name to (the
        runbook's git host as gitlab.com)."""
        super().__init__(workdir, first.remote)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.first = first
        self.hosts = hosts or {}
        self.name, self.network, self.registry, self.labels = first.name, first.network, first.registry, first.labels
        self.registry_user, self.registry_password = first.registry_user, first.registry_password
        self.registry_hosts = first.registry_hosts
        self.manager = f"{first.name}-{role}"
        self.nodes, self.workers = [self.manager], []

    def start(self):
        self.ca, self.registry_ip = self.first.ca, self.first.registry_ip
        self.start_node(self.manager)
        until(lambda: self.docker_on(self.manager, "info", "--format", "{{.ServerVersion}}").stdout.strip(), 90,
              f"the engine of {self.manager} to answer")
        return self

    def node_options(self, node):
        return [*super().node_options(node),
                *[arg for host, container in self.hosts.items() for arg in ("--add-host", f"{host}:{self.first.ip(container)}")]]

    def close(self):
        """Nothing of its own: the first server's close() removes this node and its volume."""

    def leftovers(self):
        return {kind: [n for n in names if n.startswith(self.manager)]
                for kind, names in self.first.leftovers().items()}


class ServerStack(StackDriver):
    """The server's production stack seen from the host as the other tiers see theirs (StackDriver): Traefik
    through the server's published 443 (as api.DOMAIN, verified against the site's CA), `docker` on the
    server's engine, the stack's secrets read from the files its env file names. For streams of requests
    (harness/stream.py), the database's migrations and GraphQL with a user JWT; it deploys nothing itself."""

    def __init__(self, server, site_ca, mode):
        self.server = server
        self.project = Path(server.project)
        self.mode = mode
        self.swarm_name = self.names.swarm
        self.registry = self.names.registry
        self.https = "on"
        self.first = None
        self.notes = []
        self.ca = Path(site_ca)

    def docker(self, *args, **kw):
        return self.server.docker_on(self.server.manager, *args, **kw)

    def base_url(self, scheme):
        return f"{scheme}://127.0.0.1:{self.server.ports[443 if scheme == 'https' else 80]}"

    def run_script(self, name, args, env, check, timeout):
        return self.server.script(name, *args, check=check, timeout=timeout, env=env)

    def settings(self):
        """The server's env file as a dict."""
        text = self.server.as_deploy("cat", f"{self.server.project}/.env.production").stdout
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))

    def secret(self, name):
        """The secret NAME's value, read on the server from the file its env file names."""
        return self.server.as_deploy("cat", self.settings()[f"{name}_FILE"]).stdout.strip()
