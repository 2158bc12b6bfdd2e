"""Fresh servers for script/provision: Debian containers with sshd and nothing else, reached over real SSH.

`FreshServer` is a container of kit/provision-node (Debian sid minbase + openssh-server, iproute2, procps, tini;
no Docker, no git, no firewall) started with the Docker-in-Docker capabilities shared/ENVIRONMENT.md lists
(harness.cluster_nodes.NODE_OPTIONS) and a volume at /var/lib/docker, so the Docker engine script/provision
installs in it runs. Root logs in with a fresh ed25519 key (as on a cloud image); port 22 is published on
127.0.0.1 at a free port and an ssh_config (`ssh_config`) names it, the key and a known_hosts file of the test's own.

systemd is not PID 1 (it does not run under these capabilities): tini is, and Debian's init.d scripts (`service
docker start`, `service ssh reload`) stand in; script/provision uses systemd where it is PID 1 and them otherwise.

For a deploy after provisioning (tests/pipeline/test_provision_deploy.py) the servers join the pipeline
session's network (`network`: the `server` fixture's, where its registry answers) instead of one of their own, and
reach that registry as the real one's host name: `--add-host registry.gitlab.com:<registry address>` and the
registry's CA at /etc/docker/certs.d/registry.gitlab.com/ca.crt. That CA file is the stand-in for the public CA a
real registry's certificate chains to (a real server trusts it through ca-certificates, with nothing added);
script/provision itself adds nothing for the registry. `ready_for_first_deploy` then does on the server what
docs/provisioning.md's "After it" leaves to the operator (docker login as deploy, the origin certificate) plus
this machine's tuning (harness/server.py `Server.tune`: the dnsrr override, no overlay encryption) and, in local
mode, the stack's Docker Hub images loaded as `Server.prepare` loads them; `push_images` builds and pushes a
commit's images from the jobs' engine (harness/pipeline.py `Runner`) as the pipeline's `build` job does.
The runbook test (tests/pipeline/test_runbook.py) starts its server the same way, `hosts` resolving gitlab.com
to the test's git host, and provisions it from its workstation container with the README's own command; it
uses `tune` (this machine's settings) and nothing else of `ready_for_first_deploy`, since the README's blocks
do the rest.

Every container, volume and network carries the run's labels (harness/reaper.py) and is named
`lhd-prov-<8 hex>-...`; `close()` removes them (a network it was given stays).
"""

import os
import time
from pathlib import Path

from harness import reaper
from harness.certs import make_ca
from harness.cluster_nodes import NODE_OPTIONS, REGISTRY_HOST
from harness.docker import docker, loopback_publish, published_port, unique
from harness.proc import run
from harness.server import DEPLOY_USER, OVERRIDES, PROJECT_DIR, THIRD_PARTY, keypair, upstream_image
from harness.stack import DOMAIN, STAGING_DOMAIN, harness_overrides, write_override
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

    def __init__(self, workdir, remote=None, network=None, registry=None, hosts=None):
        """remote: a host folder of bare repositories, mounted read-only at REMOTE_DIR; network: an existing
        network to start the servers on (left in place by close()); registry: (address, CA file) of the registry
        the servers' Docker reaches as REGISTRY_HOST; hosts: name -> address the servers resolve name to (the
        runbook's git host as gitlab.com)."""
        self.hosts = dict(hosts or {})
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = unique(PREFIX)
        self.labels = reaper.label_args()
        self.remote = Path(remote) if remote else None
        self.registry = registry
        self.servers = []
        self.ports = {}  # container -> {container port: host port on 127.0.0.1}
        self.private_key = self.workdir / "root-key"
        _, self.public_key = keypair(self.workdir, "root-key")
        self.known_hosts = self.workdir / "known_hosts"
        self.known_hosts.touch()
        self.ssh_config = self.workdir / "ssh_config"
        self.ssh_config.write_text("")
        self.own_network = network is None
        self.network = network or self.name
        if self.own_network:
            docker("network", "create", *self.labels, self.network)

    def add(self, short, publish=()):
        """Start server `<name>-<short>` (publish: more of its ports on 127.0.0.1, see `ports`); return its
        container name once sshd answers over SSH."""
        container = f"{self.name}-{short}"
        mounts = ["-v", f"{self.remote}:{REMOTE_DIR}:ro"] if self.remote else []
        if self.registry:
            address, ca = self.registry
            mounts += ["--add-host", f"{REGISTRY_HOST}:{address}", "-v", f"{ca}:/etc/docker/certs.d/{REGISTRY_HOST}/ca.crt:ro"]
        mounts += [arg for name, address in self.hosts.items() for arg in ("--add-host", f"{name}:{address}")]
        docker("volume", "create", *self.labels, f"{container}-docker")
        docker("run", "-d", "--name", container, "--hostname", short, "--network", self.network,
               "--network-alias", short, *self.labels,
               *NODE_OPTIONS, *loopback_publish((22, *publish)), "-e", f"ROOT_KEY={self.public_key}",
               "-v", f"{container}-docker:/var/lib/docker", *mounts, IMAGE)
        self.ports[container] = {target: published_port(container, target) for target in (22, *publish)}
        self.servers.append(container)
        port = self.ports[container][22]
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

    def as_deploy(self, container, *argv, check=True, timeout=900, input=None, cwd=PROJECT_DIR):
        """argv in the server as the deploy user (a login's HOME), in cwd (the project by default): what an
        operator logged in as deploy runs (the CI key cannot: it only runs script/ci_deploy_remote)."""
        flags = ["-u", DEPLOY_USER, "-w", cwd, "-e", f"HOME=/home/{DEPLOY_USER}", *(["-i"] if input is not None else [])]
        return run(["docker", "exec", *flags, container, *argv], check=check, timeout=timeout, input=input)

    def ip(self, container):
        return docker("inspect", "--format", f'{{{{ (index .NetworkSettings.Networks "{self.network}").IPAddress }}}}',
                      container).stdout.strip()

    def known_hosts_line(self, container, name):
        """`NAME ssh-ed25519 AAAA...`: the server's host key as its sshd has it, read in the server (what CI's
        SSH_KNOWN_HOSTS holds once checked by hand against `ssh-keygen -lf` there)."""
        kind, key = self.on(container, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[:2]
        return f"{name} {kind} {key}"

    def ready_for_first_deploy(self, container, registry, mode):
        """On a provisioned server, what docs/provisioning.md's "After it" leaves to the operator: `docker login`
        as deploy with the registry's read-only login, the origin certificate and key in etc/certs (the README's
        "DNS and TLS"); then this machine's tuning in .env.production (as `Server.tune`) and, in local mode, the
        stack's Docker Hub images loaded into the server's engine (as `Server.prepare`). registry: the pipeline
        session's `Server` (its login and `load`). Returns (the site's CA file, notes for the run's report)."""
        self.as_deploy(container, "docker", "login", REGISTRY_HOST, "-u", registry.registry_user, "--password-stdin",
                       input=registry.registry_password)
        site_ca, cert, key = make_ca(self.workdir / f"site-certs-{container}", DOMAIN, STAGING_DOMAIN)
        for source, name in ((cert, "origin.crt"), (key, "origin.key")):
            docker("cp", source, f"{container}:{PROJECT_DIR}/etc/certs/{name}")
        self.on(container, "chown", "-R", f"{DEPLOY_USER}:{DEPLOY_USER}", f"{PROJECT_DIR}/etc/certs")
        notes = self.tune(container, mode)
        if mode == "local":
            registry.load([upstream_image(name) for name in THIRD_PARTY], [container])
        return site_ca, notes

    def tune(self, container, mode):
        """This machine's settings in the bootstrapped server's .env.production, as `Server.tune` writes them
        (the dnsrr override: no IPVS here; no overlay encryption: no IPsec between these engines); returns the
        override's notes for the run's report."""
        app, _, notes = harness_overrides(mode)
        local = write_override(self.workdir / f"{container}-app.yml", app, "The server's own override (harness/provision.py).")
        self.on(container, "mkdir", "-p", os.path.dirname(OVERRIDES))
        docker("cp", local, f"{container}:{OVERRIDES}")
        self.on(container, "chmod", "a+r", OVERRIDES)
        env_file = f"{PROJECT_DIR}/.env.production"
        self.as_deploy(container, "sed", "-i", "s/^OVERLAY_ENCRYPTION=on$/OVERLAY_ENCRYPTION=off/", env_file)
        self.as_deploy(container, "sh", "-c", f'printf "%s\\n" "LHD_EXTRA_COMPOSE_FILES={OVERRIDES}" >>"$0"', env_file)
        return notes

    def close(self):
        """Remove every server (the engines inside stop with them), its volume, and the network. Idempotent."""
        for container in self.servers:
            docker("rm", "-f", "-v", container, check=False, timeout=180)
            docker("volume", "rm", "-f", f"{container}-docker", check=False)
        if self.own_network:
            docker("network", "rm", self.network, check=False)


def push_images(runner, repository, registry, workdir):
    """The `build` job's `script/build --push --digests FILE --cache-from main SHA8` (the default branch's
    images are the cache, .gitlab-ci.yml) for the repository's HEAD, run from the host with the jobs' engine
    (the runner's socket, logged in to the registry as CI_REGISTRY_USER): the images pushed to the registry as
    the pipeline pushes them. Returns (the digests file, seconds)."""
    workdir = Path(workdir)
    config = workdir / "docker-config"
    config.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DOCKER_HOST": f"unix://{runner.socket_dir}/docker.sock", "DOCKER_CONFIG": str(config)}
    run(["docker", "login", REGISTRY_HOST, "-u", registry.registry_user, "--password-stdin"],
        input=registry.registry_password, env=env, timeout=120)
    sha8 = repository.sha[:8]
    digests = workdir / f"{sha8}.digests"  # outside the checkout: script/build refuses an untracked file
    started = time.perf_counter()
    run([repository.path / "script/build", "--push", "--digests", digests, "--cache-from", "main", sha8],
        cwd=repository.path, env=env, timeout=2400)
    return digests, time.perf_counter() - started
