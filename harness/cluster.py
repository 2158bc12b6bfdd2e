"""The rendered project on the multi-node swarm of harness/cluster_nodes.py (the cluster tier).

Used by tests/cluster (its fixtures) and benchmarks/cluster.py. `ClusterDeployment` (a harness/stack.py
`StackDriver`) drives the rendered project's own scripts on the manager (bootstrap, deploy, monitoring); its
images are built on the host by `script/build` (cached by a content hash that is also their tag), pushed to the
registry from the manager after a login, and pulled by the workers through `--with-registry-auth`.
"""

import hashlib
import json
import re
import time
from pathlib import Path

import yaml

from harness.bake import TEMPLATE_PARTS, bake
from harness.cluster_nodes import (  # noqa: F401 - the cluster tier's names, imported from here
    PREFIX,
    REGISTRY_HOST,
    Cluster,
    build_images,
    cluster_resources,
    log,
    upstream_image,
)
from harness.combinations import ROOT
from harness.docker import docker, release_build
from harness.proc import DEVNULL, run
from harness.stack import (
    DOMAIN,
    FAST_INTERVALS,
    STATE_ROLES,
    StackDriver,
    cached_name,
    harness_overrides,
    park_images,
    unpark_images,
    write_override,
)
from harness.stream import RequestStream
from harness.wait import until
from kit import job_images, kit

PROJECT_DIR = f"/srv/{StackDriver.names.swarm}"  # the rendered project, copied into the manager
OVERRIDES_DIR = "/srv/overrides"  # harness-side compose overrides on the manager
APP_REPLICAS = {"lucky": 3, "hasura": 2}
# Images of the project's stacks that come from Docker Hub: no registry here can serve them, so in
# local mode the kit's images (lent these names on the host) are loaded into the nodes that run them.
APP_THIRD_PARTY = ("postgres", "traefik", "tecnativa/docker-socket-proxy")
# Traefik's common log format ends with "<router>@<provider>" "<upstream URL>" <duration>ms.
ACCESS_LOG_UPSTREAM = re.compile(r'"(\w+)@swarm" "http://([\d.]+):\d+"')
MONITORING_THIRD_PARTY = ("prom/prometheus", "prom/alertmanager", "prom/node-exporter", "tecnativa/docker-socket-proxy")
# Of those, the images of the monitoring stack's global services: every node runs them.
PER_NODE = ("prom/node-exporter", "tecnativa/docker-socket-proxy")
# The image of script/deploy's image cleanup job on the nodes it does not run on (script/functions/cleanup).
CLEANUP_IMAGE = f"docker:{kit.PINS['_docker_version']}-cli"
# The ACME e-mail a tls=letsencrypt rendering is baked with (for its stack files only; nothing is issued).
LETSENCRYPT = "ops@example.com"


def letsencrypt_traefik(base):
    """What a tls=letsencrypt rendering of the template gives Traefik beyond the origin-certificate one, read
    from its stack files: {"volumes": its service's volumes, "top": the top-level volumes they name,
    "placement": its placement} (bakes the rendering under base)."""
    project = bake(Path(base) / "letsencrypt", tls=LETSENCRYPT)
    https = yaml.safe_load((project / "Docker/docker-compose.https.yml").read_text())
    traefik = yaml.safe_load((project / "Docker/docker-compose.traefik.yml").read_text())["services"]["traefik"]
    volumes = https["services"]["traefik"]["volumes"]
    names = {v.split(":", 1)[0] for v in volumes}
    return {"volumes": volumes, "top": {n: https["volumes"][n] for n in names},
            "placement": traefik["deploy"]["placement"]}


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


class ClusterDeployment(StackDriver):
    """The rendered project on the cluster, driven by its own scripts on the manager."""

    def __init__(self, cluster, base, mode, patch=None):
        """patch(project) may change the rendered copy (a proposed template change, proven in tmp only)."""
        self.cluster = cluster
        self.base = Path(base)
        project = bake(self.base / "out")
        if patch:
            patch(project)
        super().__init__(project, self.base, mode)
        self.sha = release_sha(mode)
        unpark_images({self.sha}, self.registry)
        self.timings = {}
        self.monitoring_loaded = False
        self.write_overrides()

    # -- how this swarm is reached: docker exec on the manager, Traefik on its published ports ----
    def docker(self, *args, **kw):
        return self.cluster.docker_on(self.cluster.manager, *args, **kw)

    def base_url(self, scheme):
        return f"{scheme}://127.0.0.1:{self.cluster.ports[443 if scheme == 'https' else 80]}"

    def url(self, path="/", scheme="https"):
        return f"{self.base_url(scheme)}{path}"

    # -- harness-side overrides (the generated files are never changed) --------------------
    def write_overrides(self):
        """Replicas spread over the nodes, and (no IPVS here) dnsrr for every service; in local mode
        Grafana and cAdvisor scaled to 0 (no image can be had). Traefik also mounts the certificate volume a
        tls=letsencrypt rendering gives it (`letsencrypt_traefik`; unused by the origin certificates served
        here), so the tier sees on which node that volume is made. fast.yml: FAST_INTERVALS, for the deploys
        of cheap releases only (`fast_env`)."""
        app, monitoring, notes = harness_overrides(
            self.mode, {name: {"replicas": replicas} for name, replicas in APP_REPLICAS.items()})
        self.notes += notes
        self.notes.append("harness override: " + ", ".join(f"{n} {r} replicas" for n, r in APP_REPLICAS.items()))
        self.letsencrypt = letsencrypt_traefik(self.base)
        self.notes.append("harness override: traefik mounts the letsencrypt volume of a tls=letsencrypt rendering "
                          f"({', '.join(self.letsencrypt['volumes'])}), unused by the origin certificates it serves")
        overrides = self.base / "overrides"
        overrides.mkdir(exist_ok=True)
        body = {"services": {s: {"deploy": d} for s, d in app.items()}}
        body["services"].setdefault("traefik", {})["volumes"] = self.letsencrypt["volumes"]
        body["volumes"] = self.letsencrypt["top"]
        (overrides / "app.yml").write_text("# Harness-side override for the cluster tier.\n" + yaml.safe_dump(body))
        write_override(overrides / "monitoring.yml", monitoring, "Harness-side override for the cluster tier.")
        write_override(overrides / "fast.yml", FAST_INTERVALS, "The cluster tier's cheap releases only.", whole=True)
        self.overrides = overrides

    def fast_env(self):
        """script/deploy's environment for a deploy with FAST_INTERVALS (the e2e tier's) on top of app.yml."""
        return {"LHD_EXTRA_COMPOSE_FILES": f"{OVERRIDES_DIR}/app.yml:{OVERRIDES_DIR}/fast.yml"}

    # -- images ---------------------------------------------------------------------------
    def image(self, name):
        return f"{self.registry}/{name}:{self.sha}"

    def build(self):
        """script/build SHA on the host, unless images of this content hash exist already."""
        if all(docker("image", "inspect", self.image(n), check=False).returncode == 0 for n in ("lucky", "hasura")):
            log(f"images {self.sha} already built")
            return False
        log(f"script/build {self.sha} on the host")
        with release_build():
            run([self.project / "script" / "build", self.sha], cwd=self.project, timeout=3600, stdin=DEVNULL)
        self.forget_older_builds()
        return True

    def forget_older_builds(self):
        """Untag the images earlier runs of this tier built for other template contents (recorded in
        the kit's cache), so only the current build stays; images of other tiers are never touched."""
        record = kit.CACHE / "cluster-builds.json"
        built = json.loads(record.read_text()) if record.is_file() else []
        for sha in [s for s in built if s != self.sha]:
            tags = [f"{self.registry}/{name}:{sha}" for name in ("lucky-base", "lucky", "hasura")]
            docker("image", "rm", *tags, *[cached_name(t, self.registry) for t in tags], check=False)
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps([self.sha]))

    def park_images(self):
        """At the session's end: this build's images kept only under their harness-owned cache names
        (harness/stack.py IMAGE_CACHE); the next session's ClusterDeployment names them again."""
        return park_images({self.sha}, self.registry)

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
            self.load_cleanup_image()

    def load_cleanup_image(self):
        """The cleanup job's image (CLEANUP_IMAGE) on the workers, where script/deploy runs that job: the kit's
        docker:<version> stand-in (kit/jobs/docker), named CLEANUP_IMAGE in each node, never on the host."""
        c = self.cluster
        started = time.perf_counter()
        image = job_images.docker_image()
        kit.build_image(image, kit.build_base(kit.BASE))
        c.load([image.name], c.workers)
        for worker in c.workers:
            c.docker_on(worker, "tag", image.name, CLEANUP_IMAGE)
        self.timings["cleanup image"] = time.perf_counter() - started
        self.notes.append(f"cluster: {CLEANUP_IMAGE} on the workers is the kit's stand-in {image.name} "
                          "(kit/jobs/docker: the same docker CLI; the job's sh is Debian's dash), built or checked "
                          f"and loaded in {self.timings['cleanup image']:.1f} s")

    # -- the project's own scripts, on the manager ---------------------------------------
    def install(self):
        """Copy the rendered project and the overrides into the manager."""
        c = self.cluster
        c.on(c.manager, "mkdir", "-p", "/srv")
        docker("cp", self.project, f"{c.manager}:{PROJECT_DIR}")
        docker("cp", self.overrides, f"{c.manager}:{OVERRIDES_DIR}")

    def script_env(self):
        # OVERLAY_ENCRYPTION=off: between these Docker-in-Docker nodes the kernel sets up no IPsec state (seen
        # 2026-12: `ip xfrm policy` lists the ESP policies, `ip xfrm state` none, and a ping across an encrypted
        # overlay loses every packet while a plain overlay answers), so the project's default would cut the nodes
        # apart here. Normal servers encrypt (the project's default, README "Adding nodes").
        return {"DEPLOY_TIMEOUT": "300", "WAIT_TIMEOUT": "120", "OVERLAY_ENCRYPTION": "off",
                "LHD_EXTRA_COMPOSE_FILES": f"{OVERRIDES_DIR}/app.yml",
                "LHD_MONITORING_EXTRA_COMPOSE_FILES": f"{OVERRIDES_DIR}/monitoring.yml"}

    def run_script(self, name, args, env, check, timeout):
        """script/NAME ARGS in the project on the manager (no terminal)."""
        c = self.cluster
        return c.on(c.manager, f"{PROJECT_DIR}/script/{name}", *args, check=check, timeout=timeout, env=env,
                    stdin=DEVNULL)

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
        self.bootstrap()
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

    def doctor(self, *args):
        """script/doctor ARGS on the manager, with the routed hosts of DOMAIN resolving to the manager (in its
        /etc/hosts, as public DNS would point them at the edge node; restored after); the result (no check)."""
        c = self.cluster
        hosts = " ".join(f"{h}.{DOMAIN}" for h in ("api", "traefik", "grafana", "prometheus", "alertmanager"))
        c.on(c.manager, "sh", "-c", f'cp /etc/hosts /etc/hosts.lhd && echo "{c.ip(c.manager)} {hosts}" >> /etc/hosts')
        try:
            return self.script("doctor", *args, check=False)
        finally:
            c.on(c.manager, "sh", "-c", "cat /etc/hosts.lhd > /etc/hosts && rm /etc/hosts.lhd")

    def project_images(self, node):
        """The project's images on node (named <registry>/<lucky-base|lucky|hasura>, tag or digest): the set
        of "name:tag" and "name@digest" references."""
        rows = self.cluster.docker_on(node, "image", "ls", "--digests", "--format",
                                      "{{.Repository}} {{.Tag}} {{.Digest}}").stdout.splitlines()
        found = set()
        for repository, tag, digest in (r.split() for r in rows if r.strip()):
            name = repository.removeprefix(self.registry + "/")
            if repository.startswith(self.registry + "/") and name in ("lucky-base", "lucky", "hasura"):
                found |= {f"{name}:{tag}"} if tag != "<none>" else set()
                found |= {f"{name}@{digest}"} if digest != "<none>" else set()
        return found

    def prometheus(self, query):
        """Prometheus's answer to an instant query, asked from the host through Traefik on the manager
        (prometheus.DOMAIN behind the dashboard login)."""
        answer = self.get("prometheus", "/api/v1/query", params={"query": query}, auth=("admin", self.dashboard_password))
        answer.raise_for_status()
        return answer.json()["data"]["result"]

    # -- swarm state, read on the manager (the rest: StackDriver) ------------------------------
    def task_addresses(self, service, network="public"):
        """task IP on the stack's network -> hostname of the node running it."""
        names = self.node_ids()
        found = {}
        for task in self.tasks(service):
            for attachment in task.get("NetworksAttachments") or []:
                if attachment["Network"]["Spec"]["Name"] == self.service(network):
                    for address in attachment.get("Addresses") or []:
                        found[address.split("/")[0]] = names.get(task["NodeID"], task["NodeID"])
        return found

    def containers_on(self, node, service, stack=None):
        """Ids of the service's containers running on node (asked of that node's engine)."""
        return self.cluster.docker_on(node, "ps", "-q", "--filter",
                                      f"label=com.docker.swarm.service.name={self.service(service, stack)}").stdout.split()

    def traefik_log(self, since):
        """Traefik's log lines since (a docker --since value), read on the manager."""
        return self.docker("service", "logs", "--raw", "--since", since, self.service("traefik")).stdout

    # -- requests through the manager's published port, from the host ---------------------------
    def post_graphql(self, session=None, query="{ notes { title } }"):
        """Hasura's JSON answer to an anonymous query through Traefik (Hasura refuses it with invalid-headers)."""
        answer = (session or self.session()).post(self.url("/v1/graphql"), json={"query": query}, timeout=10,
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
        for role in STATE_ROLES:
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
            name = self.service(service)
            self.docker("service", "scale", "--detach=false", f"{name}={replicas - 1}", timeout=300)
            self.docker("service", "scale", "--detach=false", f"{name}={replicas}", timeout=300)
        until(spread, 60, lambda: f"{service} spread over the nodes: {self.task_nodes(service)}")

    def failure_sections(self):
        return [("cluster nodes", self.cluster.node_table()), *super().failure_sections()]
