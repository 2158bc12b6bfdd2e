"""A multi-node swarm in containers: a real registry and Docker-in-Docker engine nodes (the cluster tier).

Used by harness/cluster.py (the project on it), tests/cluster and benchmarks/cluster.py. Everything this module
creates on the host's engine is named `lhd-cluster-<8 hex>-...` (one bridge network, the registry, the nodes and
their volumes), carries the run's labels (harness/reaper.py: org.lhd.run and org.lhd.owner), and is removed by
`Cluster.close()`, or by the reaper at the session's end or in a later run when this one was killed; nothing
touches the host's own swarm or its ports 80/443.

- The registry is Debian's docker-registry (distribution 2.8) behind TLS and an
  htpasswd login (htpasswd needs TLS), with a certificate from a throwaway CA
  (harness/certs.py). Nodes trust that CA in their dockerd
  (/etc/docker/certs.d/<host>/ca.crt) and resolve the project's registry host
  (registry.gitlab.com for the default render) to the registry container.
- Nodes are Debian's docker.io in a container (kit/dind): not
  --privileged (refused here) but the explicit capabilities
  shared/ENVIRONMENT.md lists. One manager, the rest workers. The manager's
  ports 80 and 443 are published on 127.0.0.1 at free high ports of the host.
"""

import fcntl
import hashlib
import json
import os
import secrets
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness import reaper
from harness.certs import make_ca
from harness.docker import docker, loopback_publish, published_port, unique
from harness.names import DEFAULT
from harness.proc import run
from harness.wait import until
from kit import kit

PREFIX = "lhd-cluster"
# The `docker save` files of images loaded into nodes are the machine's (`image_tars`), kept across runs:
# a warm run saves none (run 27: 3.7 GB, about 19 CPU-seconds of the host's dockerd, in its first two minutes).
# LHD_IMAGE_TARS names another directory for them.
IMAGE_TARS = "LHD_IMAGE_TARS"
# A set no run has asked for in this long is removed by the next save (each template change makes new release
# images, so new sets).
TARS_KEPT_FOR = 2 * 24 * 3600
NODE_IMAGE = "lhd-cluster/node:bookworm"
REGISTRY_IMAGE = "lhd-cluster/registry:bookworm"
REGISTRY_HOST = DEFAULT.registry_host
# What shared/ENVIRONMENT.md measured a Docker-in-Docker node needs, --privileged being refused here.
NODE_OPTIONS = [
    *[arg for cap in ("SYS_ADMIN", "NET_ADMIN", "SYS_MODULE", "SYS_PTRACE", "MKNOD", "NET_RAW", "SYS_CHROOT",
                      "IPC_LOCK", "SYS_NICE") for arg in ("--cap-add", cap)],
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run",
]


def log(message):
    print(f"cluster: {message}", flush=True)


def build_images():
    """Build the node and registry images on the kit's debootstrapped Debian base, unless current
    (content-hashed like every kit image); return their names."""
    parent = kit.build_base(kit.BASE)
    kit.build_image(kit.Image(NODE_IMAGE, "dind", parent=kit.BASE, extra=[(kit.docker_cli(), "docker-cli")]), parent)
    kit.build_image(kit.Image(REGISTRY_IMAGE, "registry", parent=kit.BASE), parent)
    return NODE_IMAGE, REGISTRY_IMAGE


def upstream_image(repository):
    """The pinned upstream name of a third-party image (repository:tag from cookiecutter.json via the kit)."""
    for image in kit.images():
        if image.upstream.rsplit(":", 1)[0] == repository:
            return image.upstream
    raise KeyError(repository)


def cluster_resources(name):
    """kind -> names of the containers, volumes and networks of the cluster called name."""
    return {"containers": docker("ps", "-a", "--filter", f"name=^{name}-", "--format", "{{.Names}}").stdout.split(),
            "volumes": docker("volume", "ls", "-q", "--filter", f"name=^{name}-").stdout.split(),
            "networks": docker("network", "ls", "--filter", f"name=^{name}$", "--format", "{{.Name}}").stdout.split()}


def remove_cluster(name):
    """Stop the cluster's nodes (their engines stop what they run), then remove its containers, volumes
    and network. Idempotent."""
    found = cluster_resources(name)
    nodes = [c for c in found["containers"] if c != f"{name}-registry"]
    if nodes:
        docker("stop", "-t", "30", *nodes, check=False, timeout=180)
    if found["containers"]:
        docker("rm", "-f", "-v", *found["containers"], check=False, timeout=180)
    if found["volumes"]:
        docker("volume", "rm", "-f", *found["volumes"], check=False, timeout=180)
    if found["networks"]:
        docker("network", "rm", *found["networks"], check=False)


def image_tars():
    """The directory of the `docker save` files nodes load: LHD_IMAGE_TARS, else the machine's
    ${XDG_CACHE_HOME:-~/.cache}/lhd/image-tars."""
    if os.environ.get(IMAGE_TARS):
        return Path(os.environ[IMAGE_TARS])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lhd" / "image-tars"


def images_key(images):
    """16 hex of a hash of the host's images by name and id: the same names on the same images, the same key."""
    ids = docker("image", "inspect", "--format", "{{.Id}}", *images).stdout.split()
    return hashlib.sha256("\n".join(f"{name}={id_}" for name, id_ in zip(images, ids, strict=True)).encode()
                          ).hexdigest()[:16]


def saved_images(images, directory):
    """A `docker save` file of images in directory, named by the images' names and ids: written once (under a lock,
    then renamed into place, so a save cut short leaves no file of that name) and read by every cluster of any
    process asking for the same images while it is there, in this run or a later one. The three third-party images
    a server runs make 1.2 GB, and a run loads them into eight servers. Asking marks the file used; a new save
    removes the sets unused for TARS_KEPT_FOR (`prune_tars`)."""
    directory.mkdir(parents=True, exist_ok=True)
    tar = directory / f"images-{images_key(images)}.tar"
    with open(tar.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if tar.exists():
            os.utime(tar)
        else:
            part = tar.with_suffix(".part")
            docker("save", "-o", part, *images, timeout=900)
            part.rename(tar)
            prune_tars(directory, keep=tar)
    return tar


def prune_tars(directory, keep, now=None):
    """Remove the saved sets in directory (and saves cut short) unused for TARS_KEPT_FOR (`remove_unused`)."""
    for old in [*directory.glob("images-*.tar"), *directory.glob("images-*.part")]:
        if old != keep:
            remove_unused(old, old.with_suffix(".lock"), old.unlink, now)


def remove_unused(mark, lock_path, remove, now=None):
    """remove() when mark (a file whose mtime says when it was last used) is older than TARS_KEPT_FOR, under the
    lock at lock_path taken without waiting: what someone is making or marking used stays. The lock file stays (an
    asker may be waiting on it)."""
    now = time.time() if now is None else now
    with open(lock_path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        try:
            if now - mark.stat().st_mtime > TARS_KEPT_FOR:
                remove()
        except FileNotFoundError:
            pass


SEED_LABEL = "org.lhd.seed"  # a seeded store's key; no run label, so no reaper removes it


def seeded_store(images):
    """A volume holding a node engine's /var/lib/docker with `images` (names of the host's images) loaded, made
    once per machine for these names and ids and the node image, and copied into each node that runs them
    (`Cluster(seed=...)`): a copy costs a tenth of a `docker load` (1.3 GB: 1.9 CPU-seconds and 3 s against 19-26
    CPU-seconds and 13-19 s, measured 2026-12-05). Made under a lock, by a throwaway node that loads the images and
    stops; `seed-<key>.done` beside the image tars says it is whole (a volume without it is made again). Its local
    network state is dropped, so every node copied from it makes its own. Asking marks it used; making one removes
    the seeds unused for TARS_KEPT_FOR. Returns the volume's name."""
    key = images_key([*images, NODE_IMAGE])
    volume, directory = f"lhd-seed-{key}", image_tars()
    directory.mkdir(parents=True, exist_ok=True)
    done = directory / f"seed-{key}.done"
    with open(directory / f"seed-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        present = docker("volume", "inspect", volume, check=False).returncode == 0
        if done.exists() and present:
            os.utime(done)
            return volume
        done.unlink(missing_ok=True)
        if present:
            docker("volume", "rm", "-f", volume)
        tar = saved_images(images, directory)
        maker = unique("lhd-seed-maker")
        docker("volume", "create", "--label", f"{SEED_LABEL}={key}", volume)
        try:
            docker("run", "-d", "--name", maker, *reaper.label_args(), *NODE_OPTIONS,
                   "-v", f"{volume}:/var/lib/docker", NODE_IMAGE)
            until(lambda: docker("exec", maker, "docker", "info", "--format", "{{.ServerVersion}}",
                                 check=False).stdout.strip(), 90, f"the engine of {maker} to answer")
            with open(tar, "rb") as handle:
                run(["docker", "exec", "-i", maker, "docker", "load", "-q"], stdin=handle, timeout=900)
            docker("stop", maker, timeout=120)
            docker("run", "--rm", *reaper.label_args(), "--entrypoint", "rm", "-v", f"{volume}:/seed", NODE_IMAGE,
                   "-rf", "/seed/network")
        except BaseException:
            docker("rm", "-f", maker, check=False)
            docker("volume", "rm", "-f", volume, check=False)
            raise
        docker("rm", "-f", maker, check=False)
        done.touch()
    prune_seeds(directory, keep=key)
    return volume


def seedable(images):
    """images, when the host has every one of them (a seed is made from the host's images); else []."""
    found = docker("image", "inspect", "--format", "{{.Id}}", *images, check=False).stdout.split()
    return list(images) if len(found) == len(images) else []


def copy_seed(images, volume, labels):
    """Fill the (new, empty) volume, a node's /var/lib/docker, from the seeded store of images."""
    docker("run", "--rm", *labels, "--entrypoint", "cp", "-v", f"{seeded_store(images)}:/seed:ro",
           "-v", f"{volume}:/store", NODE_IMAGE, "-a", "/seed/.", "/store/", timeout=600)


def prune_seeds(directory, keep, now=None):
    """Remove the seeded stores (volume and mark) unused for TARS_KEPT_FOR (`remove_unused`)."""
    def remover(done, key):
        def remove():
            done.unlink()
            docker("volume", "rm", "-f", f"lhd-seed-{key}", check=False)
        return remove
    for done in directory.glob("seed-*.done"):
        key = done.name[len("seed-"):-len(".done")]
        if key != keep:
            remove_unused(done, directory / f"seed-{key}.lock", remover(done, key), now)


class Cluster:
    """A registry and 1 manager + `workers` worker engines on one bridge network, forming one swarm.

    `start()` returns once every node is Ready; `close()` removes every
    container, volume and network it made, and `leftovers()` lists any that remain.
    """

    def __init__(self, workdir, workers=2, publish=(80, 443), registry_hosts=(REGISTRY_HOST,), seed=()):
        """registry_hosts: the names the registry answers as (its certificate's names; every node resolves
        and trusts each): the GitLab render's host, plus ghcr.io for a GitHub-rendered project. seed: images of the
        host every node starts with (`seeded_store`), in place of a `docker load` into each."""
        self.workdir = Path(workdir)
        self.registry_hosts = tuple(registry_hosts)
        self.name = unique(PREFIX)
        self.network = self.name
        self.registry = f"{self.name}-registry"
        self.manager = f"{self.name}-manager"
        self.workers = [f"{self.name}-worker{i}" for i in range(1, workers + 1)]
        self.nodes = [self.manager, *self.workers]
        self.publish = publish
        self.seed = tuple(seed)
        self.ports = {}  # container port of the manager -> host port on 127.0.0.1
        self.registry_user = "lhd-deploy"
        self.registry_password = secrets.token_hex(16)
        self.registry_ip = None
        self.timings = {}
        # Every resource carries the run's labels (harness/reaper.py), so the session's end removes what a
        # failed teardown left, and a later run what a killed run left, never a cluster a live run is using.
        self.labels = reaper.label_args()

    # -- lifecycle ---------------------------------------------------------------------
    def start(self):
        """Network, registry, nodes, swarm; records timings["form"] (seconds). What dead runs left
        (clusters among it) is removed first."""
        started = time.perf_counter()
        reaper.reap_stale()
        self.ca, cert, key = make_ca(self.workdir / "registry-certs", *self.registry_hosts)
        certs = self.workdir / "registry-tls"
        certs.mkdir(parents=True, exist_ok=True)
        shutil.copy(cert, certs / "registry.crt")
        shutil.copy(key, certs / "registry.key")
        docker("network", "create", *self.labels, self.network)
        docker("run", "-d", "--name", self.registry, "--hostname", self.registry, "--network", self.network,
               *self.labels, "-v", f"{certs}:/certs:ro",
               "-e", f"REGISTRY_USER={self.registry_user}", "-e", f"REGISTRY_PASSWORD={self.registry_password}",
               REGISTRY_IMAGE)
        self.registry_ip = self.ip(self.registry)
        for node in self.nodes:
            self.start_node(node)
        for node in self.nodes:
            until(lambda n=node: self.docker_on(n, "info", "--format", "{{.ServerVersion}}").stdout.strip(), 90,
                  f"the engine of {node} to answer")
        manager_ip = self.ip(self.manager)
        self.docker_on(self.manager, "swarm", "init", "--advertise-addr", manager_ip)
        token = self.docker_on(self.manager, "swarm", "join-token", "-q", "worker").stdout.strip()
        for worker in self.workers:
            self.docker_on(worker, "swarm", "join", "--token", token, f"{manager_ip}:2377")
        until(lambda: self.ready_nodes() == set(self.nodes), 90, lambda: f"every node to be Ready:\n{self.node_table()}")
        self.timings["form"] = time.perf_counter() - started
        return self

    def node_options(self, node):
        """What a subclass adds to a node's `docker run` (environment, mounts); the cluster adds nothing."""
        return []

    def node_command(self, node):
        """Arguments a subclass adds to the node's dockerd (kit/dind/node-entrypoint); the cluster adds none."""
        return []

    def start_node(self, node):
        publish = loopback_publish(self.publish) if node == self.manager else []
        docker("volume", "create", *self.labels, f"{node}-docker")
        if self.seed:
            started = time.perf_counter()
            copy_seed(self.seed, f"{node}-docker", self.labels)
            self.timings.setdefault("seed", []).append(round(time.perf_counter() - started, 1))
        docker("run", "-d", "--name", node, "--hostname", node, "--network", self.network,
               *self.labels, *NODE_OPTIONS, *publish, *self.node_options(node),
               "-v", f"{node}-docker:/var/lib/docker", *self.registry_host_args(),
               NODE_IMAGE, *self.node_command(node))
        if node == self.manager:
            self.ports.update({port: published_port(node, port) for port in self.publish})

    def registry_host_args(self):
        """`docker run` arguments that make a node resolve and trust the registry under each of its names."""
        return [arg for host in self.registry_hosts
                for arg in ("-v", f"{self.ca}:/etc/docker/certs.d/{host}/ca.crt:ro",
                            "--add-host", f"{host}:{self.registry_ip}")]

    def close(self):
        """Stop the nodes (their engines stop the containers they run), then remove every container,
        volume and network of this cluster. Idempotent. The `docker save` files it loaded stay the machine's
        (`image_tars`)."""
        remove_cluster(self.name)

    def leftovers(self):
        """kind -> names of this cluster's containers, volumes and networks still on the host."""
        return cluster_resources(self.name)

    # -- nodes -------------------------------------------------------------------------
    def ip(self, container):
        return docker("inspect", "--format", f'{{{{ (index .NetworkSettings.Networks "{self.network}").IPAddress }}}}',
                      container).stdout.strip()

    def on(self, node, *argv, check=True, timeout=600, env=None, input=None, stdin=None):
        """Run argv in the node container (docker exec), with env (a dict) added."""
        flags = ["-i"] if input is not None or stdin is not None else []
        for key, value in (env or {}).items():
            flags += ["-e", f"{key}={value}"]
        return run(["docker", "exec", *flags, node, *argv], check=check, timeout=timeout, input=input, stdin=stdin)

    def docker_on(self, node, *args, **kw):
        """`docker ARGS` against the node's own engine."""
        return self.on(node, "docker", *args, **kw)

    def node_table(self):
        return self.docker_on(self.manager, "node", "ls", check=False).stdout

    def nodes_status(self):
        """hostname -> (status, availability, manager status) as the manager sees them."""
        rows = self.docker_on(self.manager, "node", "ls", "--format",
                              "{{.Hostname}}\t{{.Status}}\t{{.Availability}}\t{{.ManagerStatus}}").stdout.splitlines()
        return {r.split("\t")[0]: tuple(r.split("\t")[1:]) for r in rows if r}

    def ready_nodes(self):
        return {name for name, (status, *_) in self.nodes_status().items() if status == "Ready"}

    def node_ids(self):
        """node id -> hostname."""
        rows = self.docker_on(self.manager, "node", "ls", "--format", "{{.ID}} {{.Hostname}}").stdout.split("\n")
        return dict(r.split() for r in rows if r.strip())

    def login(self, node):
        """`docker login` the node's engine to the registry (as an operator or CI would on a server)."""
        self.docker_on(node, "login", REGISTRY_HOST, "-u", self.registry_user, "--password-stdin",
                       input=self.registry_password)

    def load(self, images, nodes):
        """Copy local images of the host engine into nodes, each only those it lacks (a seeded node has the seed's
        already): one `docker save` per set (saved_images), then `docker load` in each node (in parallel)."""
        ids = dict(zip(images, docker("image", "inspect", "--format", "{{.Id}}", *images).stdout.split(), strict=True))
        wanted = {}
        for node in nodes:
            have = self.docker_on(node, "image", "inspect", "--format", "{{.Id}}", *images, check=False).stdout.split()
            missing = tuple(image for image in images if ids[image] not in have)
            if missing:
                wanted.setdefault(missing, []).append(node)

        def load_into(job):
            tar, node = job
            with open(tar, "rb") as handle:
                self.docker_on(node, "load", "-q", stdin=handle, timeout=900)
        jobs = [(tar, node) for tar, targets in ((saved_images(list(m), image_tars()), t) for m, t in wanted.items())
                for node in targets]
        if jobs:
            with ThreadPoolExecutor(len(jobs)) as pool:
                list(pool.map(load_into, jobs))

    def catalog(self):
        """The registry's repositories, read on the manager through its login (curl with the test CA)."""
        out = self.on(self.manager, "curl", "-fsS", "--cacert", f"/etc/docker/certs.d/{REGISTRY_HOST}/ca.crt",
                      "-u", f"{self.registry_user}:{self.registry_password}",
                      f"https://{REGISTRY_HOST}/v2/_catalog").stdout
        return json.loads(out)["repositories"]

    def kill(self, node):
        """Lose a node at once: SIGKILL its container (its engine and every task on it die together)."""
        docker("kill", node)

    def revive(self, node):
        """Start a killed node again: its engine comes back with its swarm state (kept in its volume)."""
        docker("start", node)
        until(lambda: self.docker_on(node, "info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip() == "active",
              120, f"the engine of {node} to rejoin its swarm")
