"""A multi-node swarm in containers: a real registry and Docker-in-Docker engine nodes.

Used by tests/cluster (its fixtures) and benchmarks/cluster.py. Everything this
module creates on the host's engine is named `lhd-cluster-<8 hex>-...` (one
bridge network, the registry, the nodes and their volumes) and removed by
`Cluster.close()`; nothing touches the host's own swarm or its ports 80/443.

- The registry is Debian's docker-registry (distribution 2.8) behind TLS and an
  htpasswd login (htpasswd needs TLS), with a certificate from a throwaway CA
  (harness/certs.py). Nodes trust that CA in their dockerd
  (/etc/docker/certs.d/<host>/ca.crt) and resolve the project's registry host
  (registry.gitlab.com for the default render) to the registry container.
- Nodes are Debian's docker.io in a container (kit/dind): not
  --privileged (refused here) but the explicit capabilities
  shared/ENVIRONMENT.md lists. One manager, the rest workers. The manager's
  ports 80 and 443 are published on 127.0.0.1 at free high ports of the host.
- `ClusterDeployment` drives the rendered project's own scripts on the
  manager (bootstrap, deploy, monitoring); its images are built on the host by
  `script/build` (cached by a content hash that is also their tag), pushed to
  the registry from the manager after a login, and pulled by the workers
  through `--with-registry-auth`.
"""

import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness.bake import TEMPLATE_PARTS, bake
from harness.certs import make_ca
from harness.combinations import ROOT
from harness.docker import docker, free_port, unique
from harness.proc import run
from harness.stream import RequestStream
from harness.swarm import (
    DOMAIN,
    REGISTRY,
    STAGING_DOMAIN,
    SWARM_NAME,
    harness_overrides,
    host_header_session,
    write_override,
)
from harness.wait import until
from kit import kit

PREFIX = "lhd-cluster"
NODE_IMAGE = "lhd-cluster/node:bookworm"
REGISTRY_IMAGE = "lhd-cluster/registry:bookworm"
REGISTRY_HOST = REGISTRY.split("/")[0]
PROJECT_DIR = f"/srv/{SWARM_NAME}"  # the rendered project, copied into the manager
OVERRIDES_DIR = "/srv/overrides"  # harness-side compose overrides on the manager
# What shared/ENVIRONMENT.md measured a Docker-in-Docker node needs, --privileged being refused here.
NODE_OPTIONS = [
    *[arg for cap in ("SYS_ADMIN", "NET_ADMIN", "SYS_MODULE", "SYS_PTRACE", "MKNOD", "NET_RAW", "SYS_CHROOT",
                      "IPC_LOCK", "SYS_NICE") for arg in ("--cap-add", cap)],
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run",
]
APP_REPLICAS = {"lucky": 3, "hasura": 2}
# Images of the project's stacks that come from Docker Hub: no registry here can serve them, so in
# local mode the kit's images (lent these names on the host) are loaded into the nodes that run them.
APP_THIRD_PARTY = ("postgres", "traefik", "tecnativa/docker-socket-proxy")
# Traefik's common log format ends with "<router>@<provider>" "<upstream URL>" <duration>ms.
ACCESS_LOG_UPSTREAM = re.compile(r'"(\w+)@swarm" "http://([\d.]+):\d+"')
MONITORING_THIRD_PARTY = ("prom/prometheus", "prom/alertmanager", "prom/node-exporter", "tecnativa/docker-socket-proxy")
# Of those, the images of the monitoring stack's global services: every node runs them.
PER_NODE = ("prom/node-exporter", "tecnativa/docker-socket-proxy")


def log(message):
    print(f"cluster: {message}", flush=True)


def docker_cli():
    """A directory holding this machine's Docker CLI (copied when it changed), for the node image.

    Debian's docker.io 20.10 client refuses compose files without `version:`
    ("unsupported Compose file version: 1.0"), and the generated project's have
    none (the Compose specification); a current client (23+) reads them and
    talks to the 20.10 engine (API 1.41) as it does on this host."""
    source = Path(shutil.which("docker")).resolve()
    dest = kit.CACHE / "docker-cli"
    if not (dest / "docker").is_file() or (dest / "docker").read_bytes() != source.read_bytes():
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, dest / "docker")
    return dest


def build_images():
    """Build the node and registry images on the kit's debootstrapped Debian base, unless current
    (content-hashed like every kit image); return their names."""
    parent = kit.build_base(kit.BASE)
    kit.build_image(kit.Image(NODE_IMAGE, "dind", parent=kit.BASE, extra=[(docker_cli(), "docker-cli")]), parent)
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


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_clusters():
    """Remove the clusters whose owner process is gone (a run killed before its teardown); clusters
    of live runs stay. Returns the names removed."""
    owners = {}
    for kind in ("network", "volume"):
        rows = docker(kind, "ls", "--filter", f"label={PREFIX}", "--format",
                      f'{{{{.Label "{PREFIX}"}}}} {{{{.Label "{PREFIX}.owner"}}}}').stdout.splitlines()
        for row in rows:
            name, _, owner = row.partition(" ")
            owners.setdefault(name, owner.strip())
    stale = [name for name, owner in owners.items()
             if name.startswith(f"{PREFIX}-") and not (owner.isdigit() and pid_alive(int(owner)))]
    for name in stale:
        log(f"removing {name}, left by a run that is gone")
        remove_cluster(name)
    return stale


class Cluster:
    """A registry and 1 manager + `workers` worker engines on one bridge network, forming one swarm.

    `start()` returns once every node is Ready; `close()` removes every
    container, volume and network it made, and `leftovers()` lists any that remain.
    """

    def __init__(self, workdir, workers=2, publish=(80, 443)):
        self.workdir = Path(workdir)
        self.name = unique(PREFIX)
        self.network = self.name
        self.registry = f"{self.name}-registry"
        self.manager = f"{self.name}-manager"
        self.workers = [f"{self.name}-worker{i}" for i in range(1, workers + 1)]
        self.nodes = [self.manager, *self.workers]
        self.publish = publish
        self.ports = {}  # container port of the manager -> host port on 127.0.0.1
        self.registry_user = "lhd-deploy"
        self.registry_password = secrets.token_hex(16)
        self.registry_ip = None
        self.timings = {}
        # Every resource carries the cluster's name and its owner's pid, so a later run can tell
        # the leftovers of a dead run (pid gone) from a cluster another live run is using.
        self.labels = ["--label", f"{PREFIX}={self.name}", "--label", f"{PREFIX}.owner={os.getpid()}"]

    # -- lifecycle ---------------------------------------------------------------------
    def start(self):
        """Network, registry, nodes, swarm; records timings["form"] (seconds). Clusters left by
        dead runs are removed first."""
        started = time.perf_counter()
        remove_stale_clusters()
        self.ca, cert, key = make_ca(self.workdir / "registry-certs", REGISTRY_HOST)
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

    def start_node(self, node):
        publish = []
        if node == self.manager:
            for port in self.publish:
                self.ports[port] = free_port()
                publish += ["-p", f"127.0.0.1:{self.ports[port]}:{port}"]
        docker("volume", "create", *self.labels, f"{node}-docker")
        docker("run", "-d", "--name", node, "--hostname", node, "--network", self.network,
               *self.labels, *NODE_OPTIONS, *publish,
               "-v", f"{node}-docker:/var/lib/docker",
               "-v", f"{self.ca}:/etc/docker/certs.d/{REGISTRY_HOST}/ca.crt:ro",
               "--add-host", f"{REGISTRY_HOST}:{self.registry_ip}",
               NODE_IMAGE)

    def close(self):
        """Stop the nodes (their engines stop the containers they run), then remove every container,
        volume and network of this cluster. Idempotent."""
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
        """Copy local images of the host engine into nodes: one `docker save`, then `docker load` in each (in parallel)."""
        tar = self.workdir / f"images-{hashlib.sha256(' '.join(images).encode()).hexdigest()[:8]}.tar"
        if not tar.exists():
            docker("save", "-o", tar, *images, timeout=900)

        def load_into(node):
            with open(tar, "rb") as handle:
                self.docker_on(node, "load", "-q", stdin=handle, timeout=900)
        with ThreadPoolExecutor(len(nodes)) as pool:
            list(pool.map(load_into, nodes))

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


# -- the project on the cluster -----------------------------------------------------------------

def traefik_dial_timeout(seconds):
    """A patch for ClusterDeployment: Traefik's static configs dial backends for at most `seconds` instead
    of the template's value (serversTransport.forwardingTimeouts.dialTimeout, 2s; Traefik's default is
    30s), to measure how it weighs on a lost worker."""
    def patch(project):
        for name in ("traefik.http.yml", "traefik.https.yml"):
            path = project / "Docker/traefik" / name
            text, found = re.subn(r"(?m)^(\s+dialTimeout:) \S+$", rf"\g<1> {seconds}s", path.read_text())
            if found != 1:
                raise RuntimeError(f"{path} has no dialTimeout to change")
            path.write_text(text)
    return patch


def release_sha(mode):
    """An 8-hex tag for this template's images: a hash of the template's files and, in local mode, of the
    kit images the builds start from. The same inputs give the same tag, so script/build runs only when
    they change, and it never matches the fixed tags the single-node swarm tier builds (aaaa1111 ...)."""
    parts = [kit.tree_hash(*(ROOT / part for part in TEMPLATE_PARTS))]
    if mode == "local":
        for image in kit.images():
            if image.context in ("crystal", "alpine", "hasura"):
                parts.append(docker("image", "inspect", "--format", "{{.Id}}", image.name).stdout.strip())
    return hashlib.sha256(" ".join(parts).encode()).hexdigest()[:8]


class ClusterDeployment:
    """The rendered project on the cluster, driven by its own scripts on the manager."""

    def __init__(self, cluster, base, mode, patch=None):
        """patch(project) may change the rendered copy (a proposed template change, proven in tmp only)."""
        self.cluster = cluster
        self.mode = mode
        self.base = Path(base)
        self.project = bake(self.base / "out")
        if patch:
            patch(self.project)
        self.ca, cert, key = make_ca(self.base / "certs", DOMAIN, STAGING_DOMAIN)
        shutil.copy(cert, self.project / "etc/certs/origin.crt")
        shutil.copy(key, self.project / "etc/certs/origin.key")
        self.sha = release_sha(mode)
        self.notes = []
        self.timings = {}
        self.dashboard_password = None
        self.monitoring_loaded = False
        self.write_overrides()

    # -- harness-side overrides (the generated files are never changed) --------------------
    def write_overrides(self):
        """Replicas spread over the nodes, and (no IPVS here) dnsrr for every service; in local mode
        Grafana and cAdvisor scaled to 0 (no image can be had)."""
        app, monitoring, notes = harness_overrides(
            self.mode, {name: {"replicas": replicas} for name, replicas in APP_REPLICAS.items()})
        self.notes += notes
        self.notes.append("harness override: " + ", ".join(f"{n} {r} replicas" for n, r in APP_REPLICAS.items()))
        overrides = self.base / "overrides"
        overrides.mkdir(exist_ok=True)
        for name, services in (("app.yml", app), ("monitoring.yml", monitoring)):
            write_override(overrides / name, services, "Harness-side override for the cluster tier.")
        self.overrides = overrides

    # -- images ---------------------------------------------------------------------------
    def image(self, name):
        return f"{REGISTRY}/{name}:{self.sha}"

    def build(self):
        """script/build SHA on the host, unless images of this content hash exist already."""
        if all(docker("image", "inspect", self.image(n), check=False).returncode == 0 for n in ("lucky", "hasura")):
            log(f"images {self.sha} already built")
            return False
        log(f"script/build {self.sha} on the host")
        run([self.project / "script" / "build", self.sha], cwd=self.project, timeout=3600, stdin=subprocess.DEVNULL)
        self.forget_older_builds()
        return True

    def forget_older_builds(self):
        """Untag the images earlier runs of this tier built for other template contents (recorded in
        the kit's cache), so only the current build stays; images of other tiers are never touched."""
        record = kit.CACHE / "cluster-builds.json"
        built = json.loads(record.read_text()) if record.is_file() else []
        for sha in [s for s in built if s != self.sha]:
            tags = [f"{REGISTRY}/{name}:{sha}" for name in ("lucky-base", "lucky", "hasura")]
            docker("image", "rm", *tags, check=False)
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps([self.sha]))

    def push(self):
        """Put the project's images in the registry: loaded into the manager, which logs in and pushes them
        (the `docker push` script/build --push runs; the host's engine cannot resolve the registry's name)."""
        c = self.cluster
        c.load([self.image("lucky"), self.image("hasura")], [c.manager])
        c.login(c.manager)
        for name in ("lucky", "hasura"):
            c.docker_on(c.manager, "push", "--quiet", self.image(name), timeout=900)

    def preload_third_party(self, monitoring=False):
        """Load the stacks' Docker Hub images into the nodes that run them (local mode: the kit's images
        under their upstream names; every node runs node-exporter and cadvisor-proxy, only the manager the rest)."""
        if self.mode != "local":
            return
        c = self.cluster
        if monitoring:
            per_node = [upstream_image(r) for r in PER_NODE]
            c.load([upstream_image(r) for r in MONITORING_THIRD_PARTY if r not in PER_NODE], [c.manager])
            c.load(per_node, c.nodes)
        else:
            c.load([upstream_image(r) for r in APP_THIRD_PARTY], [c.manager])

    # -- the project's own scripts, on the manager ---------------------------------------
    def install(self):
        """Copy the rendered project and the overrides into the manager."""
        c = self.cluster
        c.on(c.manager, "mkdir", "-p", "/srv")
        docker("cp", self.project, f"{c.manager}:{PROJECT_DIR}")
        docker("cp", self.overrides, f"{c.manager}:{OVERRIDES_DIR}")

    def env(self, **extra):
        # OVERLAY_ENCRYPTION=off: between these Docker-in-Docker nodes the kernel sets up no IPsec state (seen
        # 2026-12: `ip xfrm policy` lists the ESP policies, `ip xfrm state` none, and a ping across an encrypted
        # overlay loses every packet while a plain overlay answers), so the project's default would cut the nodes
        # apart here. Normal servers encrypt (the project's default, README "Adding nodes").
        env = {"HTTPS_SWITCH": "on", "DEPLOY_TIMEOUT": "300", "WAIT_TIMEOUT": "120", "OVERLAY_ENCRYPTION": "off",
               "LHD_EXTRA_COMPOSE_FILES": f"{OVERRIDES_DIR}/app.yml",
               "LHD_MONITORING_EXTRA_COMPOSE_FILES": f"{OVERRIDES_DIR}/monitoring.yml"}
        env.update(extra)
        return env

    def script(self, name, *args, check=True, timeout=900, env=None):
        """Run script/NAME ARGS in the project on the manager (no terminal)."""
        c = self.cluster
        return c.on(c.manager, f"{PROJECT_DIR}/script/{name}", *args, check=check, timeout=timeout,
                    env=self.env(**(env or {})), stdin=subprocess.DEVNULL)

    def first_deploy(self):
        """Build (cached), push, preload, install, script/bootstrap --swarm, script/deploy --first SHA;
        records timings["deploy"] (from the bootstrap to every replica serving)."""
        self.build()
        t = time.perf_counter()
        self.push()
        self.preload_third_party()
        self.install()
        self.timings["images"] = time.perf_counter() - t
        t = time.perf_counter()
        boot = self.script("bootstrap", "--swarm")
        match = re.search(r"login: admin / (\S+)", boot.stdout)
        if match is None:
            raise RuntimeError(f"script/bootstrap printed no dashboard login:\n{boot.stdout}")
        self.dashboard_password = match.group(1)
        self.first = self.script("deploy", "--first", self.sha)
        until(self.serving, 120, lambda: f"Traefik to serve {self.sha} from every lucky replica:\n{self.service_table()}")
        self.timings["deploy"] = time.perf_counter() - t
        return self.first

    def monitoring_up(self):
        """`script/monitoring up` on the manager (its Docker Hub images loaded first, once)."""
        if not self.monitoring_loaded:
            self.preload_third_party(monitoring=True)
            self.monitoring_loaded = True
        return self.script("monitoring", "up")

    def prometheus(self, query):
        """Prometheus's answer to an instant query, asked from the host through Traefik on the manager
        (prometheus.DOMAIN behind the dashboard login)."""
        answer = self.get("prometheus", "/api/v1/query", params={"query": query}, auth=("admin", self.dashboard_password))
        answer.raise_for_status()
        return answer.json()["data"]["result"]

    # -- swarm state, read on the manager ----------------------------------------------------
    def docker(self, *args, **kw):
        return self.cluster.docker_on(self.cluster.manager, *args, **kw)

    def service_table(self):
        return self.docker("service", "ls", check=False).stdout

    def replicas(self, stack=SWARM_NAME):
        """service (without the stack prefix) -> "running/wanted"."""
        rows = self.docker("service", "ls", "--filter", f"label=com.docker.stack.namespace={stack}",
                           "--format", "{{.Name}} {{.Replicas}}").stdout.splitlines()
        return {r.split()[0][len(stack) + 1:]: r.split()[1] for r in rows if r}

    def all_running(self, stack=SWARM_NAME):
        rows = [re.match(r"(\d+)/(\d+)", v) for v in self.replicas(stack).values()]
        return bool(rows) and all(m and m.group(1) == m.group(2) for m in rows)

    def tasks(self, service, stack=SWARM_NAME):
        """`docker inspect` of the service's tasks that swarm wants running."""
        ids = self.docker("service", "ps", "-q", "--no-trunc", "--filter", "desired-state=running",
                          f"{stack}_{service}").stdout.split()
        return json.loads(self.docker("inspect", *ids).stdout) if ids else []

    def task_nodes(self, service, stack=SWARM_NAME):
        """hostname -> count of the service's tasks in state running there."""
        names = self.cluster.node_ids()
        counts = {}
        for task in self.tasks(service, stack):
            if task["Status"]["State"] == "running":
                host = names.get(task["NodeID"], task["NodeID"])
                counts[host] = counts.get(host, 0) + 1
        return counts

    def task_states(self, service, stack=SWARM_NAME):
        """(state, error) of each task swarm wants running."""
        return [(t["Status"]["State"], t["Status"].get("Err", "")) for t in self.tasks(service, stack)]

    def task_addresses(self, service, network="public"):
        """task IP on the stack's network -> hostname of the node running it."""
        names = self.cluster.node_ids()
        found = {}
        for task in self.tasks(service):
            for attachment in task.get("NetworksAttachments") or []:
                if attachment["Network"]["Spec"]["Name"] == f"{SWARM_NAME}_{network}":
                    for address in attachment.get("Addresses") or []:
                        found[address.split("/")[0]] = names.get(task["NodeID"], task["NodeID"])
        return found

    def containers_on(self, node, service, stack=SWARM_NAME):
        """Ids of the service's containers running on node (asked of that node's engine)."""
        return self.cluster.docker_on(node, "ps", "-q", "--filter",
                                      f"label=com.docker.swarm.service.name={stack}_{service}").stdout.split()

    def label(self, role, node, present=True):
        key = f"{SWARM_NAME}.{role}"
        self.docker("node", "update", *(["--label-add", f"{key}=true"] if present else ["--label-rm", key]), node)

    def labelled(self, role):
        """Hostnames of the nodes carrying the role's label."""
        return self.docker("node", "ls", "--filter", f"node.label={SWARM_NAME}.{role}=true",
                           "--format", "{{.Hostname}}").stdout.split()

    def sql(self, query):
        """Run SQL in the postgres container on the manager (where the db label puts it); rows, unaligned."""
        ids = self.docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={SWARM_NAME}_postgres").stdout.split()
        if not ids:
            raise RuntimeError("no running postgres container on the manager")
        return self.docker("exec", ids[0], "psql", "-tA", "-U", SWARM_NAME, "-d", f"{SWARM_NAME}_production",
                           "-c", query).stdout.strip()

    def traefik_log(self, since):
        """Traefik's log lines since (a docker --since value), read on the manager."""
        return self.docker("service", "logs", "--raw", "--since", since, f"{SWARM_NAME}_traefik").stdout

    # -- requests through the manager's published port, from the host ---------------------------
    def url(self, path="/", scheme="https"):
        return f"{scheme}://127.0.0.1:{self.cluster.ports[443 if scheme == 'https' else 80]}{path}"

    def get(self, host, path="/", session=None, **kw):
        """GET through the manager's published 443 with Host/SNI host.DOMAIN, verified against the test CA."""
        kw.setdefault("timeout", 5)
        kw.setdefault("allow_redirects", False)
        return (session or host_header_session()).get(self.url(path), headers={"Host": f"{host}.{DOMAIN}", **kw.pop(
            "headers", {})}, verify=str(self.ca), **kw)

    def session(self):
        """A requests session sending SNI from the Host header and verifying the certificate for it."""
        return host_header_session()

    def post_graphql(self, session=None, query="{ notes { title } }"):
        """Hasura's JSON answer to an anonymous query through Traefik (Hasura refuses it with invalid-headers)."""
        answer = (session or host_header_session()).post(self.url("/v1/graphql"), json={"query": query}, timeout=10,
                                                          headers={"Host": f"api.{DOMAIN}"}, verify=str(self.ca))
        answer.raise_for_status()
        return answer.json()

    def upstreams(self, since):
        """service -> task IPs Traefik's access log shows it forwarded to since (a docker --since value)."""
        found = {}
        for router, ip in ACCESS_LOG_UPSTREAM.findall(self.traefik_log(since)):
            found.setdefault(router, set()).add(ip)
        return found

    def stream(self, rate=20.0):
        """A bounded request stream to api.DOMAIN/version through the manager (RequestStream)."""
        return RequestStream(self, rate=rate)

    def version(self):
        return self.get("api", "/version").json()["version"]

    def serving(self):
        """True when every service of the app stack runs all its replicas and Traefik serves SHA's /version."""
        return self.all_running() and self.version() == self.sha

    def settle(self, timeout=300):
        """Bring the cluster back to where tests start: every node Ready and active, the role labels on the
        manager only, every replica running with lucky on every node, Traefik serving SHA."""
        c = self.cluster
        for node in c.nodes:
            if docker("inspect", "--format", "{{.State.Running}}", node).stdout.strip() != "true":
                c.revive(node)
        until(lambda: c.ready_nodes() == set(c.nodes), 120, lambda: f"every node to be Ready:\n{c.node_table()}")
        for node, (_, availability, _) in c.nodes_status().items():
            if availability != "Active":
                self.docker("node", "update", "--availability", "active", node)
        for role in ("db", "edge", "monitoring"):
            for node in set(self.labelled(role)) - {c.manager}:
                self.label(role, node, present=False)
            if c.manager not in self.labelled(role):
                self.label(role, c.manager)
        until(self.all_running, timeout, lambda: f"every replica to run:\n{self.service_table()}")
        for service, replicas in APP_REPLICAS.items():
            self.respread(service, replicas)
        until(self.serving, timeout, lambda: f"Traefik to serve {self.sha}:\n{self.service_table()}")
        return self

    def respread(self, service, replicas, attempts=3):
        """Put the service's replicas on as many nodes as they can be (swarm never moves running tasks
        back to a returning node, and a start-first update places each new task while the old one still
        counts): scale down by one (swarm removes a task where the service has most) and up again (the new
        one goes where it has fewest), until no node has two while another has none."""
        def spread():
            counts = self.task_nodes(service)
            return sum(counts.values()) == replicas and len(counts) == min(replicas, len(self.cluster.nodes))
        for _ in range(attempts):
            if spread():
                return
            name = f"{SWARM_NAME}_{service}"
            self.docker("service", "scale", "--detach=false", f"{name}={replicas - 1}", timeout=300)
            self.docker("service", "scale", "--detach=false", f"{name}={replicas}", timeout=300)
        until(spread, 60, lambda: f"{service} spread over the nodes: {self.task_nodes(service)}")

    def failure_sections(self):
        logs = "".join(self.docker("service", "logs", "--tail", "30", f"{SWARM_NAME}_{s}", check=False).stdout
                       for s in ("lucky", "hasura", "traefik"))
        return [("cluster nodes", self.cluster.node_table()), ("cluster services", self.service_table()),
                ("service logs (last 30 lines each)", logs)]
