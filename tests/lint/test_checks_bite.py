"""Every conformance check fails on a deliberately broken fixture."""

import copy
from pathlib import Path

import pytest
import yaml

from harness.proc import run
from harness.rules import checks

FIX = Path(__file__).resolve().parent / "fixtures"

# The smallest production stack that passes both stack and security rules.
GOOD_STACK = {
    "services": {
        "traefik": {
            "healthcheck": {"test": ["CMD", "traefik", "healthcheck", "--ping"], "interval": "10s"},
            "ports": [{"target": 80, "published": 80, "mode": "host"}],
            "networks": {"public": None, "socket_proxy": None},
            "deploy": {"update_config": {"order": "stop-first", "failure_action": "rollback"},
                       "restart_policy": {"condition": "any"},
                       "labels": {"traefik.http.routers.dashboard.service": "api@internal",
                                  "traefik.http.routers.dashboard.middlewares": "dashboard-auth@file,secure-headers@file"}},
        },
        "socket-proxy": {
            "healthcheck": {"test": ["CMD-SHELL", "true"], "interval": "10s"},
            "environment": {"POST": "0", "SERVICES": "1", "TASKS": "1", "NETWORKS": "1", "NODES": "1", "VERSION": "1",
                            "PING": "1", "EVENTS": "0"},
            "volumes": [{"type": "bind", "source": "/var/run/docker.sock", "target": "/var/run/docker.sock"}],
            "networks": {"socket_proxy": None},
            "deploy": {"update_config": {"order": "start-first", "failure_action": "rollback"},
                       "restart_policy": {"condition": "any"}},
        },
        "hasura": {
            "healthcheck": {"test": ["CMD", "hasura_healthcheck"], "interval": "10s", "start_period": "1m0s"},
            "environment": {"HASURA_GRAPHQL_ENABLE_CONSOLE": "false", "HASURA_GRAPHQL_DEV_MODE": "false",
                            "HASURA_GRAPHQL_MIGRATIONS_SERVER_TIMEOUT": "90",
                            "HASURA_GRAPHQL_ADMIN_SECRET_FILE": "/run/secrets/hasura_admin_secret",
                            "HASURA_JWT_KEY_FILE": "/run/secrets/hasura_jwt_key",
                            "HASURA_GRAPHQL_ENABLED_APIS": "metadata,graphql", "HASURA_GRAPHQL_ENABLE_TELEMETRY": "false",
                            "HASURA_GRAPHQL_CORS_DOMAIN": "https://example.com, https://*.example.com",
                            "STOP_DELAY": "10"},
            "stop_grace_period": "30s",
            "secrets": [{"source": "hasura_admin_secret", "target": "hasura_admin_secret"},
                        {"source": "hasura_jwt_key", "target": "hasura_jwt_key"}],
            "networks": {"public": None},
            "deploy": {"update_config": {"order": "start-first", "failure_action": "rollback"},
                       "restart_policy": {"condition": "any"},
                       "labels": {"traefik.http.routers.hasura.middlewares": "hasura-no-admin-secret@file,retry@file"}},
        },
    }
}


def broken(mutate):
    stack = copy.deepcopy(GOOD_STACK)
    mutate(stack["services"])
    return stack


def test_good_stack_passes():
    """The reference stack is clean, so each mutation below isolates one rule."""
    assert checks.stack_problems(GOOD_STACK) == []
    assert checks.security_problems(GOOD_STACK) == []


STACK_BREAKS = {
    "no-healthcheck": lambda s: s["hasura"].pop("healthcheck"),
    "published-port": lambda s: s["hasura"].setdefault("ports", []).append({"published": 8080, "mode": "host"}),
    "ingress-mode": lambda s: s["traefik"]["ports"][0].update(mode="ingress"),
    "stop-first-app": lambda s: s["hasura"]["deploy"]["update_config"].update(order="stop-first"),
    "no-rollback": lambda s: s["hasura"]["deploy"]["update_config"].update(failure_action="pause"),
    "no-drain-delay": lambda s: s["hasura"]["environment"].pop("STOP_DELAY"),
    "short-drain-delay": lambda s: s["hasura"]["environment"].update(STOP_DELAY="3"),
    "grace-under-drain": lambda s: s["hasura"].update(stop_grace_period="10s"),
}


@pytest.mark.parametrize("name", STACK_BREAKS)
def test_stack_rules_bite(name):
    """Each production stack rule reports its own violation."""
    assert checks.stack_problems(broken(STACK_BREAKS[name]))


@pytest.mark.parametrize("interval", ["60s", "1m0s", "15s", None])
def test_a_slow_healthcheck_interval_is_named(interval):
    """A first deploy waits for every service's first healthy check: an interval over 10 s (or none, Docker's 30 s
    default) is named with what it costs; 10 s passes."""
    check = broken(lambda s: s["hasura"]["healthcheck"].update(interval=interval) if interval
                   else s["hasura"]["healthcheck"].pop("interval", None))
    problems = checks.stack_problems(check)
    assert len(problems) == 1 and problems[0].startswith(
        f"hasura: healthcheck interval {interval or '30s (the default)'} holds every script/deploy --first"), problems
    assert checks.stack_problems(broken(lambda s: s["hasura"]["healthcheck"].update(interval="10s"))) == []


@pytest.mark.parametrize("wait", [None, "59"], ids=["upstream-default", "under-start-period"])
def test_an_entrypoint_wait_under_the_start_period_is_named(wait):
    """Hasura's entrypoint gives up on its temporary server after HASURA_GRAPHQL_MIGRATIONS_SERVER_TIMEOUT (30 s
    unset): under the healthcheck's start period (60 s here) it is named; equal or longer passes."""
    env = "HASURA_GRAPHQL_MIGRATIONS_SERVER_TIMEOUT"
    problems = checks.stack_problems(broken(lambda s: s["hasura"]["environment"].update({env: wait}) if wait
                                            else s["hasura"]["environment"].pop(env)))
    assert problems == [f"hasura: {env} is {wait or 30}s, under its healthcheck start_period of 60s: a slow start "
                        "ends the container (exit 1) before its health checks judge it, and an update rolls back"]
    assert checks.stack_problems(broken(lambda s: s["hasura"]["environment"].update({env: "60"}))) == []


SECURITY_BREAKS = {
    "socket-in-app": lambda s: s["hasura"].setdefault("volumes", []).append("/var/run/docker.sock:/var/run/docker.sock"),
    "host-root-mount": lambda s: s["hasura"].setdefault("volumes", []).append({"type": "bind", "source": "/"}),
    "proxy-post": lambda s: s["socket-proxy"]["environment"].update(POST="1"),
    "proxy-containers": lambda s: s["socket-proxy"]["environment"].update(CONTAINERS="1"),
    "proxy-port": lambda s: s["socket-proxy"].update(ports=[{"published": 2375}]),
    "proxy-network-shared": lambda s: s["hasura"]["networks"].update(socket_proxy=None),
    "console-on": lambda s: s["hasura"]["environment"].update(HASURA_GRAPHQL_ENABLE_CONSOLE="true"),
    "dev-mode-on": lambda s: s["hasura"]["environment"].update(HASURA_GRAPHQL_DEV_MODE="true"),
    "jwt-in-env": lambda s: s["hasura"]["environment"].update(HASURA_GRAPHQL_JWT_SECRET='{"type":"HS256","key":"k"}'),
    "admin-secret-in-env": lambda s: s["hasura"]["environment"].update(HASURA_GRAPHQL_ADMIN_SECRET="3f" * 32),
    "database-url-in-env": lambda s: s["hasura"]["environment"].update(DATABASE_URL="postgres://u:p@postgres/db"),
    "no-admin-secret-file": lambda s: s["hasura"]["environment"].pop("HASURA_GRAPHQL_ADMIN_SECRET_FILE"),
    "secret-file-not-mounted": lambda s: s["hasura"]["secrets"].pop(),
    "default-apis": lambda s: s["hasura"]["environment"].pop("HASURA_GRAPHQL_ENABLED_APIS"),
    "pgdump-api": lambda s: s["hasura"]["environment"].update(HASURA_GRAPHQL_ENABLED_APIS="metadata,graphql,pgdump"),
    "telemetry-on": lambda s: s["hasura"]["environment"].pop("HASURA_GRAPHQL_ENABLE_TELEMETRY"),
    "cors-any": lambda s: s["hasura"]["environment"].update(HASURA_GRAPHQL_CORS_DOMAIN="*"),
    "cors-disabled-check": lambda s: s["hasura"]["environment"].update(HASURA_GRAPHQL_DISABLE_CORS="true"),
    "admin-secret-routed": lambda s: s["hasura"]["deploy"]["labels"].update(
        {"traefik.http.routers.hasura.middlewares": "retry@file"}),
    "trust-auth": lambda s: s["hasura"]["environment"].update(POSTGRES_HOST_AUTH_METHOD="trust"),
    "open-dashboard": lambda s: s["traefik"]["deploy"]["labels"].pop("traefik.http.routers.dashboard.middlewares"),
}


@pytest.mark.parametrize("name", SECURITY_BREAKS)
def test_security_rules_bite(name):
    """Each static security rule reports its own violation."""
    assert checks.security_problems(broken(SECURITY_BREAKS[name]))


ENCRYPTED = {"driver": "overlay", "driver_opts": {"encrypted": "true"}}
HTTPS_PORT = {"target": 443, "published": 443, "mode": "host"}
GRAFANA = {"environment": {"GF_SECURITY_COOKIE_SECURE": "true"}, "networks": {"dashboards": None},
           "deploy": {"labels": {"traefik.enable": "true",
                                 "traefik.http.routers.grafana.middlewares": "dashboard-auth@file,secure-headers@file"}}}


def hardened():
    """GOOD_STACK with HTTPS and encrypted overlays; a monitoring stack with
    Grafana and node-exporter as the review of 2026-12 wants them."""
    app = copy.deepcopy(GOOD_STACK)
    app["services"]["traefik"]["ports"].append(dict(HTTPS_PORT))
    app["networks"] = {"internal": dict(ENCRYPTED, internal=True), "public": dict(ENCRYPTED),
                       "socket_proxy": {"driver": "overlay", "internal": True}, "dashboards": dict(ENCRYPTED)}
    monitoring = copy.deepcopy(GOOD_MONITORING)
    monitoring["services"]["grafana"] = copy.deepcopy(GRAFANA)
    monitoring["services"]["node-exporter"] = {
        "volumes": ["/proc:/host/proc:ro", {"type": "volume", "source": "node_exporter_docker_disk",
                                            "target": "/var/lib/docker", "read_only": True}]}
    monitoring["services"]["cadvisor"]["volumes"].append("/var/lib/docker:/var/lib/docker:ro")
    monitoring["networks"] = {"dashboards": {"external": True, "name": "x_dashboards"}}
    return app, monitoring


# (rule, how to break the hardened stacks, the words of the rule's own message)
REVIEW_BREAKS = {
    "socket-proxy-events": (lambda a, m: a["services"]["socket-proxy"]["environment"].pop("EVENTS"),
                            'socket-proxy: EVENTS is not "0"'),
    "discovery-proxy-events": (lambda a, m: m["services"]["discovery-proxy"]["environment"].pop("EVENTS"),
                               'discovery-proxy: EVENTS is not "0"'),
    "dashboard-no-hsts": (lambda a, m: a["services"]["traefik"]["deploy"]["labels"].update(
        {"traefik.http.routers.dashboard.middlewares": "dashboard-auth@file"}),
        "app/traefik: dashboard router dashboard has no secure-headers@file"),
    "grafana-no-hsts": (lambda a, m: m["services"]["grafana"]["deploy"]["labels"].update(
        {"traefik.http.routers.grafana.middlewares": "dashboard-auth@file"}),
        "monitoring/grafana: dashboard router grafana has no secure-headers@file"),
    "grafana-cookie": (lambda a, m: m["services"]["grafana"]["environment"].pop("GF_SECURITY_COOKIE_SECURE"),
                       "monitoring/grafana: GF_SECURITY_COOKIE_SECURE is not true with HTTPS on"),
    "node-exporter-docker-root": (lambda a, m: m["services"]["node-exporter"]["volumes"].append(
        "/var/lib/docker:/var/lib/docker:ro"), "monitoring/node-exporter: binds /var/lib/docker"),
    "internal-unencrypted": (lambda a, m: a["networks"]["internal"].pop("driver_opts"),
                             "app: overlay network internal is not encrypted"),
    "public-unencrypted": (lambda a, m: a["networks"]["public"].pop("driver_opts"),
                           "app: overlay network public is not encrypted"),
    "dashboards-unencrypted": (lambda a, m: a["networks"]["dashboards"].pop("driver_opts"),
                               "app: overlay network dashboards is not encrypted"),
    "internal-not-internal": (lambda a, m: a["networks"]["internal"].pop("internal"),
                              "app: network internal is not internal"),
}


def test_hardened_stacks_pass():
    """The hardened reference stacks are clean, so each break below isolates one rule."""
    assert checks.security_problems(*hardened()) == []


@pytest.mark.parametrize("name", REVIEW_BREAKS)
def test_review_rules_bite(name):
    """Each rule added for the review of 2026-12 reports its own message on its broken fixture."""
    app, monitoring = hardened()
    mutate, words = REVIEW_BREAKS[name]
    mutate(app, monitoring)
    found = checks.security_problems(app, monitoring)
    assert [p for p in found if words in p] == found and found, found


def test_grafana_cookie_rule_spares_plain_http():
    """Without HTTPS (no port 443) a Secure cookie would never be sent, so the rule does not ask for it."""
    app, monitoring = hardened()
    app["services"]["traefik"]["ports"].pop()
    monitoring["services"]["grafana"]["environment"].pop("GF_SECURITY_COOKIE_SECURE")
    assert checks.security_problems(app, monitoring) == []


def test_dashboard_auth_rule_bites():
    good = {"http": {"middlewares": {"dashboard-auth": {"basicAuth": {"usersFile": "/x", "removeHeader": True}}}}}
    assert checks.dashboard_auth_problems(good) == []
    bad = copy.deepcopy(good)
    bad["http"]["middlewares"]["dashboard-auth"]["basicAuth"].pop("removeHeader")
    assert checks.dashboard_auth_problems(bad) == [
        "traefik: dashboard-auth does not remove the Authorization header (removeHeader: true), so the dashboard "
        "password reaches every dashboard behind it"]


ARGV_BREAKS = {
    "console-admin-secret": ('hasura-cli console --admin-secret "${HASURA_GRAPHQL_ADMIN_SECRET}"', "--admin-secret"),
    "pg-isready-url": ('pg_isready --dbname="${DATABASE_URL}" --timeout=2', "(--dbname)"),
    "curl-header": ('curl --header "X-Hasura-Admin-Secret: ${secret}" "$url"', "--header @-"),
    "compose-env-value": ('docker compose run -e "DATABASE_URL=postgres://u:${POSTGRES_PASSWORD}@db/x" lucky', "-e NAME"),
    "openssl-passwd": ('openssl passwd -apr1 "${dashboard_password}"', "openssl passwd"),
}


@pytest.mark.parametrize("name", ARGV_BREAKS)
def test_argv_secret_rule_bites(name, tmp_path):
    """Each way of putting a secret in a process's arguments is reported with its own message; the same line as
    a comment, or passing by name / stdin, is not."""
    line, words = ARGV_BREAKS[name]
    script = tmp_path / "script"
    script.write_text(f"#!/bin/sh\n# {line}\n{line}\n")
    found = checks.argv_secret_problems([script])
    assert len(found) == 1 and f"{script}:3: " in found[0] and words in found[0], found
    script.write_text("#!/bin/sh\nprintf 'X-Hasura-Admin-Secret: %s\\n' \"$s\" | curl --header @- \"$url\"\n"
                      "docker compose run -e DATABASE_URL -e PGPASSWORD_FILE=/run/secrets/p lucky\n"
                      'pg_isready --dbname="${url}"\n')
    assert checks.argv_secret_problems([script]) == []


# The smallest monitoring stack that passes the proxy rules: cAdvisor reads its node's daemon through
# cadvisor-proxy's unix socket in a shared named volume.
SOCKET = {"type": "bind", "source": "/var/run/docker.sock", "target": "/var/run/docker.sock", "read_only": True}
API_VOLUME = {"type": "volume", "source": "cadvisor_docker_api", "target": "/var/run/docker-api"}
GOOD_MONITORING = {
    "services": {
        "discovery-proxy": {"environment": {"POST": "0", "NODES": "1", "SERVICES": "1", "TASKS": "1", "NETWORKS": "1",
                                            "EVENTS": "0"},
                            "volumes": [SOCKET], "networks": {"discovery": None},
                            "deploy": {"mode": "global", "placement": {"constraints": ["node.role == manager"]}}},
        "cadvisor-proxy": {"volumes": [SOCKET, API_VOLUME], "networks": {"monitoring": None},
                           "deploy": {"mode": "global"}},
        "cadvisor": {"command": ["--docker=unix:///var/run/docker-api/docker.sock", "--docker_only=true"],
                     "volumes": [{"type": "bind", "source": "/sys", "target": "/sys"}, API_VOLUME],
                     "networks": {"monitoring": None}, "deploy": {"mode": "global"}},
    }
}
MONITORING_BREAKS = {
    "discovery-containers": lambda s: s["discovery-proxy"]["environment"].update(CONTAINERS="1"),
    "discovery-post": lambda s: s["discovery-proxy"]["environment"].update(POST="1"),
    "cadvisor-over-tcp": lambda s: s["cadvisor"].update(command=["--docker=tcp://discovery-proxy:2375"]),
    "cadvisor-default-socket": lambda s: s["cadvisor"].update(command=["--docker_only=true"]),
    "cadvisor-own-socket": lambda s: s["cadvisor"]["volumes"].append(SOCKET),
    "volume-not-shared": lambda s: s["cadvisor-proxy"]["volumes"].pop(),
    "bind-not-volume": lambda s: s["cadvisor"]["volumes"].__setitem__(1, dict(API_VOLUME, type="bind")),
    "proxy-replicated": lambda s: s["cadvisor-proxy"]["deploy"].update(mode="replicated"),
    "no-cadvisor-proxy": lambda s: s.pop("cadvisor-proxy"),
    "cadvisor-on-discovery": lambda s: s["cadvisor"]["networks"].update(discovery=None),
}


def test_good_monitoring_passes():
    """The reference monitoring stack is clean, so each mutation below isolates one rule."""
    assert checks.security_problems(GOOD_STACK, GOOD_MONITORING) == []


@pytest.mark.parametrize("name", MONITORING_BREAKS)
def test_monitoring_proxy_rules_bite(name):
    """Each rule on the monitoring stack's Docker proxies reports its own violation."""
    stack = copy.deepcopy(GOOD_MONITORING)
    MONITORING_BREAKS[name](stack["services"])
    assert checks.security_problems(GOOD_STACK, stack)


# A tool's bite asserts the rule it should report, not just a non-zero exit: a mistyped flag, a missing config or
# a missing fixture fails too, and must not pass for a bite.
TOOL_BITES = {
    "shellcheck-SC2086": (lambda: checks.shellcheck(["bad_script"], cwd=FIX), ["SC2086", "SC2115"]),
    "hadolint-DL3006": (lambda: checks.hadolint([FIX / "Dockerfile.bad"]), ["DL3006", "DL3003"]),
    "yamllint-key-duplicates": (lambda: checks.yamllint([FIX / "bad.yml"]), ["(key-duplicates)", "(trailing-spaces)"]),
    "promtool-config-duration": (lambda: checks.promtool_config(FIX / "prometheus.bad.yml"),
                                 ['not a valid duration string: "banana"']),
    "promtool-rules-parse": (lambda: checks.promtool_rules([FIX / "rules.bad.yml"]),
                             ['"Broken": could not parse expression']),
    "amtool-undefined-receiver": (lambda: checks.amtool(FIX / "alertmanager.bad.yml"),
                                  ['undefined receiver "nobody" used in route']),
    "gitlab-schema-script": (lambda: checks.jsonschema("vendor.gitlab-ci", [FIX / "gitlab-ci.bad.yml"]),
                             ["$.build.script: {'run': 'this'} is not valid under any of the given schemas"]),
    "actionlint-undefined-property": (lambda: checks.actionlint([FIX / "workflows/bad.yml"]),
                                      ['property "no_such_property" is not defined']),
    "crystal-format": (lambda: checks.crystal_format(["bad.cr"], cwd=FIX / "crystal"),
                       ["formatting './bad.cr' produced changes"]),
}


@pytest.mark.parametrize("bite", TOOL_BITES)
def test_tool_bites_with_its_rule(bite):
    """The real tool, on its broken fixture, reports the very rule the fixture breaks."""
    check, rules = TOOL_BITES[bite]
    problems = "\n".join(check())
    missing = [rule for rule in rules if rule not in problems]
    assert problems and not missing, f"{bite}: {missing} not in:\n{problems}"


def test_grafana_bites(default_project):
    base = default_project / "Docker/prometheus-swarm/grafana"
    assert checks.grafana(base / "provisioning/datasources/prometheus.yml", base / "provisioning/dashboards/dashboards.yml",
                          [FIX / "dashboard.bad.json"], "/var/lib/grafana/dashboards")


def test_traefik_check_bites(default_project, tmp_path):
    """A broken dynamic file next to the generated ones makes the Traefik check fail."""
    traefik = default_project / "Docker/traefik"
    assert checks.traefik_problems(traefik / "traefik.https.yml", [traefik / "dynamic/middlewares.yml"], tmp_path,
                                   "example.com", extra_dynamic=FIX / "traefik-router.bad.yml")


def test_fail_fast_check_bites():
    """A variable without `:?` lets compose config succeed, which the check reports."""
    def render(overrides):
        env = checks.env_with(**overrides)
        return run(["docker", "compose", "-f", FIX / "compose.bad.yml", "config"], env=env, check=False)

    assert checks.fail_fast_problems(render, ["APP_PASSWORD"])


def test_secret_scan_bites(tmp_path):
    leaked = tmp_path / "config.yml"
    leaked.write_text(yaml.safe_dump({"password": "a1" * 30}))
    assert checks.secret_scan([leaked])


ALERT_STACK = {"services": {"lucky": {"deploy": {"resources": {"limits": {"memory": "768M"}}}},
                            "postgres": {"deploy": {"resources": {"limits": {"memory": "1G"}}}}}}


def memory_alert(expr):
    return {"groups": [{"name": "tasks", "rules": [{"alert": "TaskHighMemory", "expr": expr}]}]}


@pytest.mark.parametrize(("expr", "fires"), [
    pytest.param('sum by (s) (container_memory_usage_bytes{s!=""}) > 1.2e9', False, id="above-every-limit"),
    pytest.param('max by (s) (container_memory_usage_bytes{s!=""}) > 1073741824', False, id="at-the-largest-limit"),
    pytest.param('max by (s) (container_memory_usage_bytes{s!=""}) > 7e8', True, id="below-a-limit"),
    pytest.param('max by (s) (container_memory_usage_bytes / (container_spec_memory_limit_bytes > 0)) > 0.9', True,
                 id="against-own-limit"),
])
def test_alert_limit_rule_bites(expr, fires):
    """A memory alert whose threshold no task can reach (the rule TaskHighMemory broke: 1.2 GB, while the largest
    limit was 1 GB) is reported by name; one below a limit, or against each task's own limit, is not."""
    found = checks.alert_limit_problems(memory_alert(expr), ALERT_STACK)
    if fires:
        assert found == []
    else:
        assert len(found) == 1 and found[0].startswith("alert TaskHighMemory: compares memory use with ") \
            and "no task can reach it" in found[0] and "(1073741824 bytes)" in found[0], found


def test_shellcheck_once_checks_again_what_a_sourced_file_changes(tmp_path, monkeypatch):
    """A script that passed is not checked again while it and what it sources are unchanged; a change in the sourced
    file (a variable it no longer sets) checks the script again, and shellcheck names the problem (SC2154)."""
    (tmp_path / "lib").write_text("#!/usr/bin/env bash\n# shellcheck disable=SC2034\ngreeting=hello\n")
    script = ("#!/usr/bin/env bash\n# shellcheck source=lib\nsource \"$(dirname \"${BASH_SOURCE[0]}\")/lib\"\n"
              "echo \"${greeting}\"\n")
    (tmp_path / "main").write_text(script)
    calls = []
    real = checks.shellcheck
    monkeypatch.setattr(checks, "shellcheck", lambda files, cwd: calls.append(list(files)) or real(files, cwd))
    assert checks.shellcheck_once(["main", "lib"], cwd=tmp_path) == []
    assert checks.shellcheck_once(["main", "lib"], cwd=tmp_path) == [] and calls == [["main", "lib"]]
    (tmp_path / "lib").write_text("#!/usr/bin/env bash\ntrue\n")
    problems = checks.shellcheck_once(["main", "lib"], cwd=tmp_path)
    assert calls[-1] == ["main", "lib"] and any("SC2154" in p for p in problems), problems
    # A failing file is never recorded as passed: checked again, failing again.
    assert any("SC2154" in p for p in checks.shellcheck_once(["main"], cwd=tmp_path)) and calls[-1] == ["main"]
