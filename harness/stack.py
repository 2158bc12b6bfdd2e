"""One driver for the generated production stack on a swarm, whatever the swarm is.

`StackDriver` holds what the single-node swarm (harness/swarm.py `Deployment`, the e2e tier) and the
Docker-in-Docker cluster (harness/cluster_deployment.py `ClusterDeployment`, the cluster tier) share: the
project's names (harness/names.py, from cookiecutter.json), the test CA and certificates, the harness-side
`deploy:` overrides, the environment of the project's scripts, requests through Traefik with the Host header as
SNI, and reading the swarm (services, replicas, tasks, node labels, containers, SQL, failure sections).

A subclass says how docker is reached (`docker`: the host's engine, or `docker exec` on the manager), how the
project's scripts run (`run_script`), where Traefik answers (`base_url`) and how images get there.
"""

import json
import re
import shutil
from pathlib import Path

import requests
import yaml
from gql import Client, gql
from gql.transport.exceptions import TransportQueryError
from gql.transport.requests import RequestsHTTPTransport
from requests_toolbelt.adapters.host_header_ssl import HostHeaderSSLAdapter

from harness.certs import make_ca
from harness.docker import docker, unique
from harness.graphql_client import hs256_jwt, user_claims
from harness.names import DEFAULT
from harness.timing import timed
from harness.wait import until

DOMAIN = "example.com"
STAGING_DOMAIN = f"staging.{DOMAIN}"  # a second server's domain, for the same rendered project
SWARM_NAME = DEFAULT.swarm
REGISTRY = DEFAULT.registry
APP_STACK_SERVICES = ("postgres", "backup", "hasura", "lucky", "traefik", "socket-proxy", "maintenance")
MONITORING_SERVICES = ("prometheus", "alertmanager", "discovery-proxy", "cadvisor-proxy", "node-exporter", "cadvisor",
                       "grafana")
# The app stack's services that would get a VIP (postgres is dnsrr in the stack file itself).
VIP_APP_SERVICES = ("backup", "hasura", "lucky", "traefik", "socket-proxy")
STATE_ROLES = ("db", "edge", "monitoring")

NOTES = gql("{ notes { title } }")
# Images the tiers build for their throwaway projects (script/build names them <registry>/<image>:<tag>, a name a
# user's project could have) are kept between runs only under this harness-owned name: `park_images` at the end
# of a session, `unpark_images` before the next builds (docker's build cache keeps their layers).
IMAGE_CACHE = "lhd-harness-cache"


def ipvs_available():
    """True when this kernel has IPVS (swarm service VIPs work)."""
    return Path("/proc/net/ip_vs").exists()


class HostHeaderSNIAdapter(HostHeaderSSLAdapter):
    """requests_toolbelt's HostHeaderSSLAdapter verifies the certificate against the Host
    header but sends no SNI for an address; this one also sends the Host header as SNI,
    as a browser asking for that name would."""

    def send(self, request, **kwargs):
        host = request.headers.get("Host")
        pool_kw = self.poolmanager.connection_pool_kw
        if host:
            pool_kw["server_hostname"] = host
        else:
            pool_kw.pop("server_hostname", None)
        return super().send(request, **kwargs)


def host_header_session():
    """A requests session that sends https://127.0.0.1 requests as to their Host header (SNI and verification)."""
    session = requests.Session()
    session.mount("https://", HostHeaderSNIAdapter())
    return session


class HostHeaderTransport(RequestsHTTPTransport):
    """gql's requests transport with HostHeaderSNIAdapter mounted on its session (as in
    `host_header_session()`), so a query to https://127.0.0.1 with Host api.DOMAIN
    sends that SNI and verifies that certificate."""

    def connect(self):
        super().connect()
        self.session.mount("https://", HostHeaderSNIAdapter())


def graphql_answer(client, query):
    """Hasura's answer: the data, or the TransportQueryError carrying its errors.

    Anything else (Traefik's 404 before it routes, a 502, a refused connection)
    raises, so `until` retries it.
    """
    try:
        return client.execute(query)
    except TransportQueryError as error:
        return error


def harness_overrides(mode, app=None):
    """Harness-side `deploy:` overrides of the app and monitoring stacks ({service: deploy}), starting the app's
    from `app`, and notes saying what they change: without IPVS, endpoint_mode dnsrr for every service that
    would get a VIP; in local mode Grafana and cAdvisor scaled to 0 (no image can be had). The generated files
    are never changed; the scripts read these through LHD_EXTRA_COMPOSE_FILES and its monitoring twin."""
    app = {name: dict(deploy) for name, deploy in (app or {}).items()}
    monitoring, notes = {}, []
    if not ipvs_available():
        for name in VIP_APP_SERVICES:
            app.setdefault(name, {})["endpoint_mode"] = "dnsrr"
        for name in MONITORING_SERVICES:
            monitoring.setdefault(name, {})["endpoint_mode"] = "dnsrr"
        notes.append("no IPVS on this kernel: harness override endpoint_mode=dnsrr on every service with a VIP")
    if mode == "local":
        monitoring.setdefault("grafana", {})["replicas"] = 0
        monitoring.setdefault("cadvisor", {}).update(mode="replicated", replicas=0)
        notes.append("local mode: Grafana and cAdvisor scaled to 0 (no image can be had here)")
    return app, monitoring, notes


# Intervals whose production value only matters in production, shortened for the e2e swarm tier (one Deployment
# deploys some 35 times): a new Lucky or Hasura task is healthy after its first healthcheck (10 s in the images)
# and an update completes after its `monitor` period (30 s in the stack file; script/deploy waits for that). Neither
# changes what is proved: a broken release never gets healthy, so it still fails its checks and is rolled back
# (before any monitor period starts), and traffic still moves by Traefik's 5 s refresh against the tasks' 10 s
# shutdown delay (the old task is stopped once the new one runs, not after the monitor: swarmkit's
# manager/orchestrator/update/updater.go, updateTask, start-first). The cluster tier (harness/cluster.py) keeps
# production values.
FAST_INTERVALS = {name: {"healthcheck": {"interval": "2s"},
                         "deploy": {"update_config": {"parallelism": 1, "order": "start-first",
                                                      "failure_action": "rollback", "monitor": "2s"}}}
                  for name in ("lucky", "hasura")}
FAST_INTERVALS_NOTE = ("harness override: lucky and hasura healthcheck interval 2s (10s in the images), update "
                       "monitor 2s (30s in the stack file); production values in the cluster tier")


def fast_intervals(app):
    """app ({service: deploy}) as whole service overrides, with FAST_INTERVALS merged in."""
    services = {name: {"deploy": dict(deploy)} for name, deploy in app.items()}
    for name, fast in FAST_INTERVALS.items():
        service = services.setdefault(name, {"deploy": {}})
        service["healthcheck"] = dict(fast["healthcheck"])
        service["deploy"].update(fast["deploy"])
    return services


def write_override(path, services, title, whole=False):
    """A compose file at path giving each service its `deploy:` override (or, whole, its override as given);
    returns path."""
    body = services if whole else {s: {"deploy": d} for s, d in services.items()}
    path.write_text(f"# {title}\n" + yaml.safe_dump({"services": body}))
    return path


def short_alert_rules(project, workdir, swarm, alerts, for_):
    """A monitoring-stack override (its path) whose task_rules config is the project's rules file with the `for:` of
    the rules in `alerts`, {alert name: the project's `for:`}, set to for_ (a rule of that name with another `for:`
    is left as it is), under a config name of its own (swarm configs cannot change). The expressions, labels and
    every other rule are the project's; the promtool unit tests (tests/lint) keep the production `for:`."""
    rules_file = Path(project) / "Docker/prometheus-swarm/prometheus/rules/task.rules.yml"
    rules = yaml.safe_load(rules_file.read_text())
    changed = set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") in alerts and rule.get("for") == alerts[rule["alert"]]:
                rule["for"] = for_
                changed.add(rule["alert"])
    if changed != set(alerts):
        raise RuntimeError(f"{rules_file} has no rule {sorted(set(alerts) - changed)} with the `for:` expected")
    copy = Path(workdir) / f"task.rules.short-for-{unique('x')[-8:]}.yml"
    copy.write_text(yaml.safe_dump(rules, sort_keys=False))
    override = copy.with_suffix(".override.yml")
    override.write_text(f"# Harness-side: the `for:` of {', '.join(sorted(alerts))} shortened to {for_}.\n" +
                        yaml.safe_dump({"configs": {"task_rules": {
                            "name": f"{swarm}_task_rules_harness_{copy.stem[-8:]}", "file": str(copy)}}}))
    return override


def cached_name(image, registry=REGISTRY):
    """The harness-owned cache name of <registry>/<name>:<tag>: lhd-harness-cache/<owner>/<repo>/<name>:<tag>."""
    return f"{IMAGE_CACHE}/{registry.split('/', 1)[1]}/{image.removeprefix(registry + '/')}"


def _tags(reference):
    return [t for t in docker("image", "ls", "--filter", f"reference={reference}/*",
                              "--format", "{{.Repository}}:{{.Tag}}").stdout.split() if not t.endswith(":<none>")]


def park_images(tags, registry=REGISTRY):
    """Move the images named <registry>/*:TAG (TAG one of tags, the ones a tier builds) to their cache names:
    the images stay, the names a user's project could have are freed."""
    parked = [image for image in _tags(registry) if image.rsplit(":", 1)[1] in tags]
    for image in parked:
        docker("tag", image, cached_name(image, registry))
    if parked:
        docker("image", "rm", "--no-prune", *parked, check=False)
    return parked


def unpark_images(tags, registry=REGISTRY):
    """Name the cached images of tags <registry>/*:TAG again for a run (their cache names stay)."""
    cache = f"{IMAGE_CACHE}/{registry.split('/', 1)[1]}"
    restored = []
    for cached in [c for c in _tags(cache) if c.rsplit(":", 1)[1] in tags]:
        image = f"{registry}/{cached.removeprefix(cache + '/')}"
        docker("tag", cached, image)
        restored.append(image)
    return restored


class StackDriver:
    """The rendered project's production stack on a swarm, driven by its own scripts (see the module docstring)."""

    names = DEFAULT
    # The services a failed test's report shows (failure_sections).
    reported = ("lucky", "hasura", "traefik")

    def __init__(self, project, workdir, mode):
        self.project = Path(project)
        self.workdir = Path(workdir)
        self.mode = mode
        self.swarm_name = self.names.swarm
        self.registry = self.names.registry
        self.https = "on"
        self.first = None
        self.dashboard_password = None
        self.notes = []
        self.ca, cert, key = make_ca(self.workdir / "certs", DOMAIN, STAGING_DOMAIN)
        shutil.copy(cert, self.project / "etc/certs/origin.crt")
        shutil.copy(key, self.project / "etc/certs/origin.key")

    # -- what a subclass says ----------------------------------------------------------------
    def docker(self, *args, **kw):
        """`docker ARGS` against the swarm's manager engine."""
        raise NotImplementedError

    def run_script(self, name, args, env, check, timeout):
        """Run script/NAME ARGS of the project where the swarm's operator would, with env (a dict of the
        harness's variables) added."""
        raise NotImplementedError

    def base_url(self, scheme):
        """scheme://host:port where Traefik answers for this swarm."""
        raise NotImplementedError

    def script_env(self):
        """The harness's variables for the project's scripts, besides HTTPS_SWITCH."""
        return {}

    # -- the project's own scripts ---------------------------------------------------------
    def env(self, **extra):
        """The harness's variables for the project's scripts (HTTPS_SWITCH from self.https), with extra."""
        return {"HTTPS_SWITCH": self.https, **self.script_env(), **extra}

    def script(self, name, *args, check=True, timeout=900, https=None, env=None):
        """Run script/NAME ARGS in the project (stdin empty: no terminal); https ("on"/"off") switches
        HTTPS_SWITCH from now on; env adds variables."""
        if https is not None:
            self.https = https
        with timed(f"script/{name}"):
            return self.run_script(name, args, self.env(**(env or {})), check, timeout)

    def bootstrap(self):
        """script/bootstrap --swarm; keeps the dashboard password it prints."""
        boot = self.script("bootstrap", "--swarm")
        match = re.search(r"login: admin / (\S+)", boot.stdout)
        if match is None:
            raise RuntimeError(f"script/bootstrap printed no dashboard login:\n{boot.stdout}")
        self.dashboard_password = match.group(1)
        return boot

    # -- talking to the stack through Traefik ---------------------------------------------
    @property
    def scheme(self):
        return "https" if self.https == "on" else "http"

    def session(self):
        """A requests session sending SNI from the Host header and verifying the certificate for it."""
        return host_header_session()

    def request(self, method, host, path="/", scheme=None, session=None, domain=DOMAIN, headers=None, **kw):
        """METHOD to Traefik with Host host.domain (and headers); no redirects followed; TLS verified against
        the test CA."""
        kw.setdefault("timeout", 5)
        kw.setdefault("allow_redirects", False)
        kw.setdefault("verify", str(self.ca))
        return (session or self.session()).request(method, f"{self.base_url(scheme or self.scheme)}{path}",
                                                   headers={"Host": f"{host}.{domain}", **(headers or {})}, **kw)

    def get(self, host, path="/", **kw):
        """`request("GET", ...)`."""
        return self.request("GET", host, path, **kw)

    def routed_get(self, host, path="/", timeout=120, **kw):
        """`get`, once Traefik routes host (it polls swarm every few seconds): an answer other than 404/502/503/504.
        120 s: in run 32 a task's start failed in the engine under load and was retried, and 60 s ran out."""
        def answer():
            got = self.get(host, path, **kw)
            return None if got.status_code in (404, 502, 503, 504) else [got]  # a Response is falsy from 400 on
        return until(answer, timeout, f"Traefik to route {host}.{kw.get('domain', DOMAIN)}{path}")[0]

    def graphql(self, admin=False, user=False):
        """A gql client for Hasura's /v1/graphql through Traefik as api.DOMAIN, with the admin secret when admin,
        with a JWT of the `user` role when user."""
        headers = {"Host": f"api.{DOMAIN}"}
        if admin:
            headers["x-hasura-admin-secret"] = self.admin_secret()
        if user:
            headers["Authorization"] = f"Bearer {self.user_token()}"
        transport = HostHeaderTransport(url=f"{self.base_url(self.scheme)}/v1/graphql", headers=headers,
                                        verify=str(self.ca), timeout=10)
        return Client(transport=transport, fetch_schema_from_transport=False)

    def routed_graphql(self, query=NOTES, admin=False, user=False, timeout=30):
        """Hasura's answer to query (data, or its TransportQueryError) once Traefik routes /v1/graphql to it;
        Traefik polls swarm every few seconds."""
        return until(lambda: graphql_answer(self.graphql(admin, user), query), timeout,
                     "Traefik to route /v1/graphql to Hasura")

    def user_token(self):
        """A JWT of the `user` role, signed with the server's HASURA_JWT_KEY."""
        return hs256_jwt(self.secret("HASURA_JWT_KEY"), user_claims())

    def admin_secret(self):
        return self.secret("HASURA_GRAPHQL_ADMIN_SECRET")

    def secret(self, name):
        raise NotImplementedError

    def version(self):
        return self.get("api", "/version").json()["version"]

    # -- swarm state -------------------------------------------------------------------------
    def service(self, name, stack=None):
        """The swarm name of the stack's service (default stack: the app's)."""
        return self.names.service(name, stack)

    def stack_deployed(self, stack=None):
        """True when the stack (default: the app's) exists."""
        return (stack or self.swarm_name) in self.docker("stack", "ls", "--format", "{{.Name}}").stdout.split()

    def service_table(self):
        return self.docker("service", "ls", check=False).stdout

    def replicas(self, stack=None):
        """service (without the stack prefix) -> "running/wanted", for the stack (default: the app's)."""
        stack = stack or self.swarm_name
        rows = self.docker("service", "ls", "--filter", f"label=com.docker.stack.namespace={stack}",
                           "--format", "{{.Name}} {{.Replicas}}").stdout.splitlines()
        return {r.split()[0][len(stack) + 1:]: r.split()[1] for r in rows if r}

    def all_running(self, stack=None):
        """True when every service of the stack runs all the replicas it wants (a service scaled to 0 too)."""
        rows = [re.match(r"(\d+)/(\d+)", v) for v in self.replicas(stack).values()]
        return bool(rows) and all(m and m.group(1) == m.group(2) for m in rows)

    def images(self):
        """service -> image tag now specified, for the app services."""
        return {s: self.docker("service", "inspect", self.service(s), "--format",
                               "{{.Spec.TaskTemplate.ContainerSpec.Image}}").stdout.strip().split("@")[0].rsplit(":", 1)[1]
                for s in ("lucky", "hasura")}

    def node_ids(self):
        """node id -> hostname."""
        rows = self.docker("node", "ls", "--format", "{{.ID}} {{.Hostname}}").stdout.split("\n")
        return dict(r.split() for r in rows if r.strip())

    def tasks(self, service, stack=None):
        """`docker inspect` of the service's tasks that swarm wants running."""
        ids = self.docker("service", "ps", "-q", "--no-trunc", "--filter", "desired-state=running",
                          self.service(service, stack)).stdout.split()
        return json.loads(self.docker("inspect", *ids).stdout) if ids else []

    def task_nodes(self, service, stack=None):
        """hostname -> count of the service's tasks in state running there."""
        names = self.node_ids()
        counts = {}
        for task in self.tasks(service, stack):
            if task["Status"]["State"] == "running":
                host = names.get(task["NodeID"], task["NodeID"])
                counts[host] = counts.get(host, 0) + 1
        return counts

    def task_states(self, service, stack=None):
        """(state, error) of each task swarm wants running."""
        return [(t["Status"]["State"], t["Status"].get("Err", "")) for t in self.tasks(service, stack)]

    def label(self, role, node=None, present=True):
        """Put the role's node label (<swarm_name>.<role>) on node (default: the manager), or take it off."""
        key = f"{self.swarm_name}.{role}"
        node = node or self.docker("info", "--format", "{{.Swarm.NodeID}}").stdout.strip()
        self.docker("node", "update", *(["--label-add", f"{key}=true"] if present else ["--label-rm", key]), node)

    def labelled(self, role):
        """Hostnames of the nodes carrying the role's label."""
        return self.docker("node", "ls", "--filter", f"node.label={self.swarm_name}.{role}=true",
                           "--format", "{{.Hostname}}").stdout.split()

    def container(self, service):
        """The id of a running container of the app stack's service on the manager, or None."""
        ids = self.docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={self.service(service)}",
                          "--filter", "status=running").stdout.split()
        return ids[0] if ids else None

    def container_exec(self, service, *args):
        """Run a command in the service's container on the manager; RuntimeError (retryable by `until`) on failure."""
        cid = self.container(service)
        if cid is None:
            raise RuntimeError(f"no running container for {service}")
        return self.docker("exec", cid, *args).stdout.strip()

    def sql(self, query):
        """Run SQL as the superuser in the postgres container (the manager carries the db label); rows, unaligned."""
        return self.container_exec("postgres", "psql", "-tA", "-U", self.names.superuser, "-d", self.names.database,
                                   "-c", query)

    def migrations(self):
        return [int(v) for v in self.sql("SELECT version FROM migrations ORDER BY version").split()]

    def service_logs(self, tail=30, services=reported):
        return "".join(self.task_logs(s, tail=tail) for s in services)

    def task_logs(self, service, since=None, tail=None):
        """The logs (stdout and stderr) of the service's containers on the manager, running or exited, read with
        `docker logs`: `docker service logs` can print and then never return (moby/moby#38640, docker/cli#4678).
        The tasks of a one-node swarm are all there; a task on another node is not."""
        options = [*(["--since", since] if since else []), *(["--tail", str(tail)] if tail else [])]
        ids = self.docker("ps", "-aq", "--filter", f"label=com.docker.swarm.service.name={self.service(service)}",
                          check=False).stdout.split()
        return "".join(self.prefixed(cid, self.docker("logs", *options, cid, check=False, timeout=60)) for cid in ids)

    @staticmethod
    def prefixed(cid, result):
        return "".join(f"{cid[:12]} | {line}\n" for line in (result.stdout + result.stderr).splitlines())

    def task_history(self):
        """Each reported service's tasks, newest first in each slot, with swarm's error for those that failed."""
        return "".join(self.docker("service", "ps", "--no-trunc", "--format",
                                   "{{.Name}} {{.Image}} {{.DesiredState}} {{.CurrentState}} {{.Error}}",
                                   self.service(s), check=False).stdout for s in self.reported)

    def failure_sections(self):
        return [("swarm services", self.service_table()), ("swarm tasks", self.task_history()),
                ("service logs (last 30 lines each)", self.service_logs())]
