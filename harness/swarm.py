"""A local single-node swarm running the generated production stack.

Used by tests/e2e/swarm (its fixtures) and benchmarks/zero_downtime.py. Everything
goes through the generated project's own scripts (bootstrap, build, deploy,
rollback, monitoring); the harness only adds what a real server has and this
machine lacks: a swarm, certificates, and (without IPVS) a dnsrr override.

Releases: SHA1 is the project as rendered (migration V1); SHA2 and SHA3 add
migrations V2 and V3; BROKEN is SHA1 with a healthcheck that always fails.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import requests
import yaml
from gql import Client, gql
from gql.transport.exceptions import TransportQueryError
from gql.transport.requests import RequestsHTTPTransport
from requests_toolbelt.adapters.host_header_ssl import HostHeaderSSLAdapter

from harness.bake import bake
from harness.certs import make_ca
from harness.docker import docker
from harness.graphql_client import hs256_jwt, user_claims
from harness.proc import CommandFailed, run
from harness.wait import WaitTimeout, until

DOMAIN = "example.com"
STAGING_DOMAIN = f"staging.{DOMAIN}"  # a second server's domain, for the same rendered project
SWARM_NAME = "lhd_app"
REGISTRY = "registry.gitlab.com/my-group/lhd-app"
APP_STACK_SERVICES = ("postgres", "backup", "hasura", "lucky", "traefik", "socket-proxy")
MONITORING_SERVICES = ("prometheus", "alertmanager", "discovery-proxy", "cadvisor-proxy", "node-exporter", "cadvisor",
                       "grafana")
# The app stack's services that would get a VIP (postgres is dnsrr in the stack file itself).
VIP_APP_SERVICES = ("backup", "hasura", "lucky", "traefik", "socket-proxy")
STATE_ROLES = ("db", "edge", "monitoring")
BACKUP_INTERVAL = 30  # seconds between the backup service's dumps, short enough to see one

SHA1, SHA2, SHA3, BROKEN = "aaaa1111", "bbbb2222", "cccc3333", "dead0000"
V1, V2, V3 = 20250101000000, 20250201000000, 20250301000000
MIGRATIONS = {SHA1: [V1], SHA2: [V1, V2, V3], SHA3: [V1, V2, V3], BROKEN: [V1]}
ADDED_MIGRATIONS = (
    (V2, "add_priority_to_notes",
     "    alter table_for(Note) do\n      add priority : Int32, default: 0\n    end",
     "    alter table_for(Note) do\n      remove :priority\n    end"),
    (V3, "create_tags",
     "    create :tags do\n      primary_key id : Int64\n      add name : String\n    end",
     "    drop :tags"),
)

NOTES = gql("{ notes { title } }")


def ipvs_available():
    """True when this kernel has IPVS (swarm service VIPs work)."""
    return Path("/proc/net/ip_vs").exists()


class Swarm:
    """Use the running swarm, or start one on 127.0.0.1 and leave it afterwards."""

    def __enter__(self):
        state = docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip()
        self.created = state != "active"
        if self.created:
            docker("swarm", "init", "--advertise-addr", "127.0.0.1")
        return self

    def __exit__(self, *exc):
        if self.created:
            docker("swarm", "leave", "--force", check=False)


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


def write_override(path, services, title):
    """A compose file at path giving each service its `deploy:` override; returns path."""
    path.write_text(f"# {title}\n" + yaml.safe_dump({"services": {s: {"deploy": d} for s, d in services.items()}}))
    return path


class StateUnreachable(RuntimeError):
    """The stack did not reach the state asked for by the cheap route."""


class Deployment:
    """One rendered project on the swarm, driven by its own scripts; `close()` removes everything."""

    def __init__(self, project, workdir, mode):
        self.project = Path(project)
        self.workdir = Path(workdir)
        self.mode = mode
        self.swarm_name = SWARM_NAME
        self.registry = REGISTRY
        self.env_file = self.workdir / "production.env"
        self.ca, cert, key = make_ca(self.workdir / "certs", DOMAIN, STAGING_DOMAIN)
        shutil.copy(cert, self.project / "etc/certs/origin.crt")
        shutil.copy(key, self.project / "etc/certs/origin.key")
        self.https = "on"
        self.first = None
        self.built = set()
        app, monitoring, self.notes = harness_overrides(mode)
        self.override = write_override(self.workdir / "app-override.yml", app,
                                       "Harness-side override of the app stack.") if app else None
        self.monitoring_override = write_override(self.workdir / "monitoring-override.yml", monitoring,
                                                  "Harness-side override of the monitoring stack.") if monitoring else None
        # The deploy lock's private directory (script/functions/swarm take_deploy_lock); lock_file is the file
        # naming its holder.
        self.lock_dir = self.workdir / "deploy-lock"
        self.lock_file = self.lock_dir / "holder"
        boot = self.script("bootstrap", "--swarm")
        match = re.search(r"login: admin / (\S+)", boot.stdout)
        if match is None:
            raise RuntimeError(f"script/bootstrap printed no dashboard login:\n{boot.stdout}")
        self.dashboard_password = match.group(1)

    # -- the project's own scripts --------------------------------------------------
    def env(self, **extra):
        """The environment the project's scripts run with (HTTPS_SWITCH from self.https)."""
        env = dict(os.environ, LHD_ENV_FILE=str(self.env_file), HTTPS_SWITCH=self.https, RESOLVE_IMAGE="never",
                   DEPLOY_TIMEOUT="240", WAIT_TIMEOUT="120", DEPLOY_LOCK_DIR=str(self.lock_dir),
                   BACKUP_INTERVAL=str(BACKUP_INTERVAL))
        if self.override:
            env["LHD_EXTRA_COMPOSE_FILES"] = str(self.override)
        if self.monitoring_override:
            env["LHD_MONITORING_EXTRA_COMPOSE_FILES"] = str(self.monitoring_override)
        env.update(extra)
        return env

    def script(self, name, *args, check=True, timeout=900, https=None, env=None):
        """Run script/NAME ARGS in the project (stdin empty: no terminal); https ("on"/"off") switches
        HTTPS_SWITCH from now on; env adds variables."""
        if https is not None:
            self.https = https
        return run([self.project / "script" / name, *args], env=self.env(**(env or {})), cwd=self.project,
                   check=check, timeout=timeout, stdin=subprocess.DEVNULL)

    def build(self, sha):
        """script/build SHA."""
        result = self.script("build", sha, timeout=3600)
        self.built.add(sha)
        return result

    def release(self, sha):
        """Make sha's images once: SHA1 from the project as rendered, SHA2/SHA3 with the added migrations, BROKEN from SHA1."""
        if sha in self.built:
            return
        if sha == BROKEN:
            self.release(SHA1)
            self.broken_image(SHA1, BROKEN)
            self.built.add(sha)
            return
        if sha != SHA1:
            self.release(SHA1)  # SHA1 is built before the migrations are added
            for migration in ADDED_MIGRATIONS:
                self.add_migration(*migration)
        self.build(sha)

    def add_migration(self, version, name, body_up, body_down):
        """Add a Lucky migration to the project (the next build carries it)."""
        path = self.project / f"db/migrations/{version}_{name}.cr"
        klass = "".join(p.capitalize() for p in name.split("_"))
        path.write_text(f"class {klass}::V{version} < Avram::Migrator::Migration::V1\n  def migrate\n{body_up}\n  end\n\n"
                        f"  def rollback\n{body_down}\n  end\nend\n")
        return path

    def broken_image(self, from_sha, sha):
        """An image of from_sha whose healthcheck never passes, tagged sha."""
        context = self.workdir / f"broken-{sha}"
        context.mkdir(exist_ok=True)
        (context / "healthcheck").write_text("#!/bin/sh\necho 'this build is broken on purpose' >&2\nexit 1\n")
        (context / "healthcheck").chmod(0o755)
        (context / "Dockerfile").write_text(f"FROM {self.registry}/lucky:{from_sha}\n"
                                            "COPY healthcheck /usr/local/bin/healthcheck\n")
        docker("build", "-q", "-t", f"{self.registry}/lucky:{sha}", context)
        docker("tag", f"{self.registry}/hasura:{from_sha}", f"{self.registry}/hasura:{sha}")

    def first_deploy(self, sha=SHA1, https="on"):
        """script/bootstrap --swarm (the node labels again, the env file kept), then script/deploy --first SHA
        (its result is kept as `first`)."""
        self.release(sha)
        self.script("bootstrap", "--swarm")
        self.first = self.script("deploy", "--first", sha, https=https)
        return self.first

    def deploy(self, sha, *flags, check=True, https=None):
        """script/deploy FLAGS SHA, building sha first when needed."""
        self.release(sha)
        return self.script("deploy", *flags, sha, check=check, https=https)

    def rollback(self, sha, *flags, check=True, https=None):
        """script/rollback FLAGS SHA (FLAGS default to --yes: the harness answers the question)."""
        self.release(sha)
        return self.script("rollback", *(flags or ("--yes",)), sha, check=check, https=https)

    # -- bringing the stack to a known state --------------------------------------------
    def bring_to(self, sha, https="on"):
        """Make the stack serve sha with HTTPS_SWITCH=https, sha's migrations and every replica running.

        From wherever it is: deploy or roll back (or `deploy --first` when no
        stack runs); when that does not reach the state, remove everything and
        start afresh. Returns self.
        """
        self.release(sha)
        try:
            self._step_to(sha, https)
        except (CommandFailed, WaitTimeout, StateUnreachable) as error:
            print(f"harness: starting the stack afresh, {sha} (HTTPS_SWITCH={https}) was not reached: {error}")
            self.reset(https)
            self._step_to(sha, https)
        return self

    def _step_to(self, sha, https):
        if not self.stack_deployed():
            self.first_deploy(SHA1, https=https)
        self.https = https
        if set(self.images().values()) != {sha}:
            applied = until(self.migrations, 120, "postgres to list the applied migrations")
            if self.images()["lucky"] != sha and applied[-1] > MIGRATIONS[sha][-1]:
                self.rollback(sha)
            else:
                self.deploy(sha)
        elif self.published_https() != https:
            self.deploy(sha)
        until(lambda: self.settled(sha), 240,
              lambda: f"{self.swarm_name} to serve {sha} with every replica running:\n{self.service_table()}")
        applied = until(self.migrations, 120, "postgres to list the applied migrations")
        if applied != MIGRATIONS[sha]:
            raise StateUnreachable(f"the database has migrations {applied}; {sha} needs {MIGRATIONS[sha]}")

    def reset(self, https="on"):
        """Remove everything, then `script/deploy --first SHA1` on empty volumes."""
        self.close()
        self.first_deploy(SHA1, https=https)

    def settled(self, sha):
        """True when every service of the app stack runs all its replicas and Traefik serves sha's /version."""
        rows = [re.match(r"(\d+)/(\d+)", line) for line in docker(
            "service", "ls", "--filter", f"label=com.docker.stack.namespace={self.swarm_name}",
            "--format", "{{.Replicas}}").stdout.splitlines()]
        running = bool(rows) and all(m and m.group(1) == m.group(2) != "0" for m in rows)
        return running and self.version() == sha

    def stack_deployed(self):
        """True when the app stack exists."""
        return self.swarm_name in docker("stack", "ls", "--format", "{{.Name}}").stdout.split()

    def published_https(self):
        """HTTPS_SWITCH as deployed: on when Traefik publishes port 443, else off."""
        ports = docker("service", "inspect", f"{self.swarm_name}_traefik", "--format",
                       "{{range .Spec.EndpointSpec.Ports}}{{.PublishedPort}} {{end}}").stdout.split()
        return "on" if "443" in ports else "off"

    # -- talking to the stack through Traefik on 127.0.0.1 --------------------------------
    @property
    def scheme(self):
        return "https" if self.https == "on" else "http"

    def session(self):
        """A requests session sending SNI from the Host header and verifying the certificate for it."""
        return host_header_session()

    def request(self, method, host, path="/", scheme=None, session=None, domain=DOMAIN, headers=None, **kw):
        """METHOD 127.0.0.1 with Host host.domain (and headers); no redirects followed; TLS verified against
        the test CA."""
        kw.setdefault("timeout", 5)
        kw.setdefault("allow_redirects", False)
        kw.setdefault("verify", str(self.ca))
        return (session or self.session()).request(method, f"{scheme or self.scheme}://127.0.0.1{path}",
                                                   headers={"Host": f"{host}.{domain}", **(headers or {})}, **kw)

    def get(self, host, path="/", **kw):
        """`request("GET", ...)`."""
        return self.request("GET", host, path, **kw)

    def routed_get(self, host, path="/", timeout=60, **kw):
        """`get`, once Traefik routes host (it polls swarm every few seconds): an answer other than 404/502/503/504."""
        def answer():
            got = self.get(host, path, **kw)
            return None if got.status_code in (404, 502, 503, 504) else [got]  # a Response is falsy from 400 on
        return until(answer, timeout, f"Traefik to route {host}.{kw.get('domain', DOMAIN)}{path}")[0]

    def set_env(self, key, value):
        """Set KEY=value in the server's env file (as an operator would edit it)."""
        lines = [line for line in self.env_file.read_text().splitlines() if not line.startswith(f"{key}=")]
        self.env_file.write_text("\n".join([*lines, f"{key}={value}"]) + "\n")

    def graphql(self, admin=False, user=False):
        """A gql client for Hasura's /v1/graphql through Traefik as api.DOMAIN, with the admin secret when admin,
        with a JWT of the `user` role when user."""
        headers = {"Host": f"api.{DOMAIN}"}
        if admin:
            headers["x-hasura-admin-secret"] = self.admin_secret()
        if user:
            headers["Authorization"] = f"Bearer {self.user_token()}"
        transport = HostHeaderTransport(url=f"{self.scheme}://127.0.0.1/v1/graphql", headers=headers,
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

    def admin_api(self, method, path, body=None, secret=None):
        """Hasura's JSON answer to METHOD path (body: a dict sent as JSON) with the admin secret (or `secret`),
        asked from inside the hasura container: Traefik strips the admin secret from public requests, so admins
        ask there."""
        data = ["--header", "Content-Type: application/json", "--data", json.dumps(body)] if body is not None else []
        return json.loads(self.container_exec(
            "hasura", "curl", "--silent", "--max-time", "5", "--request", method,
            "--header", f"x-hasura-admin-secret: {secret or self.admin_secret()}", *data,
            f"http://127.0.0.1:8080{path}"))

    def admin_graphql(self, query, secret=None):
        """`admin_api` for a GraphQL query (a string) on /v1/graphql."""
        return self.admin_api("POST", "/v1/graphql", {"query": query}, secret)

    def version(self):
        return self.get("api", "/version").json()["version"]

    def settings(self):
        """The server's env file as a dict."""
        return dict(line.split("=", 1) for line in self.env_file.read_text().splitlines()
                    if "=" in line and not line.startswith("#"))

    def secret_file(self, name):
        """The file holding the secret NAME (NAME_FILE in the env file)."""
        return Path(self.settings()[f"{name}_FILE"])

    def secret(self, name):
        """The secret NAME's value, read from its file."""
        return self.secret_file(name).read_text().strip()

    def admin_secret(self):
        return self.secret("HASURA_GRAPHQL_ADMIN_SECRET")

    def sql(self, query):
        return self.container_exec("postgres", "psql", "-tA", "-U", "lhd_app", "-d", "lhd_app_production", "-c", query)

    # -- backups ---------------------------------------------------------------------
    def backups(self):
        """(dump names newest first, the "last scheduled backup" line) from script/backup --list."""
        out = self.script("backup", "--list").stdout.splitlines()
        return [line.split()[0] for line in out if line.endswith(" bytes")], \
            next(line for line in out if line.startswith("last scheduled backup:"))

    def dump_sql(self, name, table):
        """The SQL that dump `name` holds for table's rows (pg_restore --data-only --table), read in a
        one-off postgres container with the backups volume mounted."""
        return docker("run", "--rm", "-v", f"{self.swarm_name}_backups:/backups:ro", "--entrypoint", "pg_restore",
                      f"postgres:{self.postgres_version()}", "--data-only", f"--table={table}", "--file=-",
                      f"/backups/{name}").stdout

    def postgres_version(self):
        return docker("service", "inspect", f"{self.swarm_name}_postgres", "--format",
                      "{{.Spec.TaskTemplate.ContainerSpec.Image}}").stdout.strip().split("@")[0].rsplit(":", 1)[1]

    # -- node labels -------------------------------------------------------------------
    def node_id(self):
        return docker("info", "--format", "{{.Swarm.NodeID}}").stdout.strip()

    def label(self, role, present=True):
        """Put the role's node label on this node, or take it off."""
        key = f"{self.swarm_name}.{role}"
        args = ["--label-add", f"{key}=true"] if present else ["--label-rm", key]
        docker("node", "update", *args, self.node_id())

    def labels(self):
        """This node's labels named like the stack."""
        found = json.loads(docker("node", "inspect", self.node_id(), "--format", "{{json .Spec.Labels}}").stdout) or {}
        return {k: v for k, v in found.items() if k.startswith(f"{self.swarm_name}.")}

    def unlabel(self):
        """Take the stack's labels (put there by script/bootstrap --swarm) off this node."""
        for key in self.labels():
            docker("node", "update", "--label-rm", key, self.node_id(), check=False)

    # -- swarm state -----------------------------------------------------------------
    def container(self, service):
        """The id of a running container of the service, or None."""
        ids = docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={self.swarm_name}_{service}",
                     "--filter", "status=running").stdout.split()
        return ids[0] if ids else None

    def container_exec(self, service, *args):
        """Run a command in the service's container; RuntimeError (retryable by `until`) on failure."""
        cid = self.container(service)
        if cid is None:
            raise RuntimeError(f"no running container for {service}")
        return docker("exec", cid, *args).stdout.strip()

    def images(self):
        """service -> image tag now specified, for the app services."""
        return {s: docker("service", "inspect", f"{self.swarm_name}_{s}", "--format",
                          "{{.Spec.TaskTemplate.ContainerSpec.Image}}").stdout.strip().split("@")[0].rsplit(":", 1)[1]
                for s in ("lucky", "hasura")}

    def migrations(self):
        return [int(v) for v in self.sql("SELECT version FROM migrations ORDER BY version").split()]

    def replicas(self):
        """service name -> "running/wanted", for the app stack."""
        rows = docker("service", "ls", "--filter", f"label=com.docker.stack.namespace={self.swarm_name}",
                      "--format", "{{.Name}} {{.Replicas}}").stdout.splitlines()
        return dict(r.split()[:2] for r in rows if r)

    def stack_containers(self, *stacks):
        """`docker inspect` of every container, running or not, of the stacks (default: the app stack)."""
        ids = [i for stack in (stacks or (self.swarm_name,)) for i in docker(
            "ps", "-aq", "--filter", f"label=com.docker.stack.namespace={stack}").stdout.split()]
        return json.loads(docker("inspect", *ids).stdout) if ids else []

    def service_table(self):
        return docker("service", "ls", check=False).stdout

    def failure_sections(self):
        logs = "".join(docker("service", "logs", "--tail", "30", f"{self.swarm_name}_{s}", check=False).stdout
                       for s in ("lucky", "hasura", "traefik"))
        return [("swarm services", self.service_table()), ("service logs (last 30 lines each)", logs)]

    def close(self):
        """Remove both stacks, wait until their containers and networks are gone, then remove their
        volumes, secrets and configs (also when the wait ran out, which is then raised)."""
        stacks = (f"{self.swarm_name}_monitoring", self.swarm_name)
        for stack in stacks:
            docker("stack", "rm", stack, check=False)

        def gone():
            left = [c for stack in stacks for c in docker(
                "ps", "-aq", "--filter", f"label=com.docker.stack.namespace={stack}").stdout.split()]
            return not left and not docker("network", "ls", "-q", "--filter", f"name={self.swarm_name}_").stdout.split()
        try:
            until(gone, 120, f"the containers and networks of {' and '.join(stacks)} to go", pause=2)
        finally:
            for kind in ("volume", "secret", "config"):
                names = docker(kind, "ls", "-q", "--filter", f"name={self.swarm_name}_").stdout.split()
                if names:
                    docker(kind, "rm", *names, check=False)

    def leftovers(self):
        """kind -> ids of services, networks, volumes, secrets and configs named like the stacks."""
        found = {}
        for kind, args in (("services", ["service", "ls", "-q"]), ("networks", ["network", "ls", "-q"]),
                           ("volumes", ["volume", "ls", "-q"]), ("secrets", ["secret", "ls", "-q"]),
                           ("configs", ["config", "ls", "-q"])):
            found[kind] = docker(*args, "--filter", f"name={self.swarm_name}_").stdout.split()
        found["node labels"] = sorted(self.labels())
        return found


def prepare(base, mode, releases=(SHA1, SHA2, SHA3, BROKEN)):
    """Render, bootstrap and build the given releases under base (nothing deployed yet)."""
    deployment = Deployment(bake(Path(base) / "out"), Path(base) / "work", mode)
    for sha in releases:
        deployment.release(sha)
    return deployment
