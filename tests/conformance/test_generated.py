"""Conformance tier: every generated file passes the real tool for its format."""

import os
import subprocess

import pytest
import yaml

from tests.conformance import checks
from tests.conformance.conftest import rels

pytestmark = pytest.mark.lint

SCRIPT_GLOBS = ("script/*", "script/docker/*", "script/functions/*")
DOCKERFILES = ("Docker/lucky/Dockerfile", "Docker/lucky/Dockerfile.prod", "Docker/hasura/Dockerfile")
CRYSTAL = ["src", "spec", "config", "db/migrations", "tasks", "tasks.cr"]
PROD_REQUIRED = ["POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "HASURA_GRAPHQL_ADMIN_SECRET",
                 "HASURA_JWT_KEY", "SECRET_KEY_BASE", "APP_DOMAIN", "SEND_GRID_KEY", "DASHBOARD_USERS_FILE"]
DEV_REQUIRED = ["POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "HASURA_GRAPHQL_ADMIN_SECRET",
                "HASURA_JWT_KEY", "SECRET_KEY_BASE"]


def each(variants, relpaths_fn, check):
    """Run check(project) on each unique variant; collect problems by variant."""
    problems = []
    for vid, combo, project in variants(relpaths_fn):
        problems += [f"[{vid}] {p}" for p in check(combo, project)]
    return problems


def test_shellcheck(variants):
    """Every script, helper and in-container script passes shellcheck."""
    problems = each(variants, lambda p: rels(p, *SCRIPT_GLOBS),
                    lambda c, p: checks.shellcheck(rels(p, *SCRIPT_GLOBS), cwd=p))
    assert not problems, "\n".join(problems)


def test_hadolint(variants):
    """Every Dockerfile passes hadolint (ignored rules justified in hadolint.yaml)."""
    problems = each(variants, lambda p: DOCKERFILES, lambda c, p: checks.hadolint([p / f for f in DOCKERFILES]))
    assert not problems, "\n".join(problems)


def test_yamllint(variants):
    """Every YAML file passes yamllint with the repo's config."""
    globs = ("**/*.yml", "**/*.yaml", ".gitlab-ci.yml", ".github/workflows/*.yml")
    problems = each(variants, lambda p: rels(p, *globs),
                    lambda c, p: checks.yamllint(sorted({str(p / r) for r in rels(p, *globs)})))
    assert not problems, "\n".join(problems)


def test_prometheus_and_alertmanager(variants):
    """promtool checks the config and rules; amtool checks Alertmanager."""
    base = "Docker/prometheus-swarm"
    files = lambda p: rels(p, f"{base}/prometheus/**/*.yml", f"{base}/alertmanager/*.yml")  # noqa: E731

    def check(combo, project):
        if combo["monitoring"] != "yes":
            return []
        return (checks.promtool_config(project / base / "prometheus/prometheus.yml")
                + checks.promtool_rules(sorted(map(str, (project / base / "prometheus/rules").glob("*.yml"))))
                + checks.amtool(project / base / "alertmanager/alertmanager.yml"))

    monitored = [v for v in variants(files) if v[1]["monitoring"] == "yes"]
    assert monitored, "no combination renders the monitoring stack"
    problems = each(variants, files, check)
    assert not problems, "\n".join(problems)


def test_grafana_provisioning(variants):
    """Dashboards parse and use the provisioned datasource, where the provider reads them."""
    base = "Docker/prometheus-swarm"

    def check(combo, project):
        if combo["monitoring"] != "yes":
            return []
        compose = yaml.safe_load((project / base / "docker-compose.yml").read_text())
        targets = {c["target"] for c in compose["services"]["grafana"]["configs"] if c["target"].endswith(".json")}
        mounted = {os.path.dirname(t) for t in targets}
        assert len(mounted) == 1
        return checks.grafana(project / base / "grafana/provisioning/datasources/prometheus.yml",
                              project / base / "grafana/provisioning/dashboards/dashboards.yml",
                              sorted((project / base / "grafana/dashboards").glob("*.json")), mounted.pop())

    problems = each(variants, lambda p: rels(p, f"{base}/grafana/**/*", f"{base}/docker-compose.yml"), check)
    assert not problems, "\n".join(problems)


def test_ci_files(variants):
    """CI files validate against their vendored schemas; workflows pass actionlint."""
    def check(combo, project):
        found = []
        if combo["ci"] == "gitlab":
            found += checks.jsonschema("vendor.gitlab-ci", [project / ".gitlab-ci.yml"])
        if combo["ci"] == "github":
            workflows = sorted((project / ".github/workflows").glob("*.yml"))
            found += checks.jsonschema("vendor.github-workflows", workflows)
            found += checks.actionlint(workflows)
        return found

    problems = each(variants, lambda p: rels(p, ".gitlab-ci.yml", ".github/workflows/*.yml"), check)
    assert not problems, "\n".join(problems)


def test_crystal_format(variants):
    """The Lucky app is formatted the way `crystal tool format` wants."""
    problems = each(variants, lambda p: rels(p, "src/**/*.cr", "spec/**/*.cr", "config/*.cr", "tasks/**/*.cr"),
                    lambda c, p: checks.crystal_format(CRYSTAL, cwd=p))
    assert not problems, "\n".join(problems)


def compose_relpaths(project):
    return rels(project, "Docker/**/*", "script/**/*", ".env.example")


def deploy_config(project, env_file, https, **overrides):
    env = checks.env_with(LHD_ENV_FILE=str(env_file), HTTPS_SWITCH=https, **overrides)
    return subprocess.run([project / "script/deploy", "--config", "0123abcd"], env=env, capture_output=True, text=True,
                          check=False, timeout=60)


def monitoring_config(project, env_file, https):
    env = checks.env_with(LHD_ENV_FILE=str(env_file), HTTPS_SWITCH=https)
    return subprocess.run([project / "script/monitoring", "config"], env=env, capture_output=True, text=True,
                          check=False, timeout=60)


def loaded(result):
    assert result.returncode == 0, result.stdout + result.stderr
    return yaml.safe_load(result.stdout)


@pytest.mark.parametrize("https", ["on", "off"])
def test_production_stack_rules(variants, prod_env, https):
    """`docker stack config` on script/deploy's files: healthchecks, ports, update order, security."""
    def check(combo, project):
        env_file = prod_env(project)
        app = loaded(deploy_config(project, env_file, https))
        monitoring = loaded(monitoring_config(project, env_file, https)) if combo["monitoring"] == "yes" else None
        found = checks.stack_problems(app) + checks.security_problems(app, monitoring)
        if monitoring:
            # Monitoring services have no rolling-update policy of their own.
            found += [f"monitoring: {p}" for p in checks.stack_problems(monitoring, check_updates=False)]
        ports = {p["published"] for p in app["services"]["traefik"]["ports"]}
        if ports != ({80, 443} if https == "on" else {80}):
            found.append(f"HTTPS_SWITCH={https}: traefik publishes {sorted(ports)}")
        entrypoints = {v for k, v in app["services"]["lucky"]["deploy"]["labels"].items() if k.endswith(".entrypoints")}
        if entrypoints != {"websecure" if https == "on" else "web"}:
            found.append(f"HTTPS_SWITCH={https}: lucky router on {entrypoints}")
        return found

    problems = each(variants, compose_relpaths, check)
    assert not problems, "\n".join(problems)


def test_production_fails_fast_on_missing_variables(default_project, prod_env):
    """With any required variable empty, script/deploy --config fails naming it."""
    env_file = prod_env(default_project)
    problems = checks.fail_fast_problems(
        lambda o: deploy_config(default_project, env_file, "on", **o), PROD_REQUIRED + ["TLS_CERT_FILE"])
    assert not problems, "\n".join(problems)


def test_development_config(variants):
    """`script/up --config`: merges, ports only on 127.0.0.1, trust auth here only."""
    def check(combo, project):
        result = subprocess.run([project / "script/up", "--config"], capture_output=True, text=True, check=False,
                                env=checks.env_with(COMPOSE_PROJECT_NAME="lint"), timeout=60)
        config = loaded(result)
        found = []
        for name, svc in config["services"].items():
            for port in svc.get("ports", []):
                if port.get("host_ip") != "127.0.0.1":
                    found.append(f"dev {name}: port {port} not bound to 127.0.0.1")
            if not svc.get("healthcheck"):
                found.append(f"dev {name}: no healthcheck")
        if config["services"]["postgres"]["environment"].get("POSTGRES_HOST_AUTH_METHOD") != "trust":
            found.append("dev postgres: trust auth expected in development")
        watch = config["services"]["lucky"].get("develop", {}).get("watch", [])
        if not {w["action"] for w in watch} >= {"sync", "rebuild"}:
            found.append(f"dev lucky: develop.watch lacks sync/rebuild: {watch}")
        return found

    problems = each(variants, compose_relpaths, check)
    assert not problems, "\n".join(problems)


def test_development_fails_fast_on_missing_variables(default_project):
    """With any required variable empty, script/up --config fails naming it."""
    def render(overrides):
        env = checks.env_with(COMPOSE_PROJECT_NAME="lint", **overrides)
        return subprocess.run([default_project / "script/up", "--config"], env=env, capture_output=True, text=True,
                              check=False, timeout=60)

    problems = checks.fail_fast_problems(render, DEV_REQUIRED)
    assert not problems, "\n".join(problems)


def test_trust_auth_only_in_development_files(variants):
    """POSTGRES_HOST_AUTH_METHOD trust appears in the development overlay alone."""
    def check(combo, project):
        hits = {str(p.relative_to(project)) for p in project.rglob("*")
                if p.is_file() and "POSTGRES_HOST_AUTH_METHOD: trust" in p.read_text(errors="replace")}
        return [] if hits == {"Docker/docker-compose.dev.yml"} else [f"trust auth in {sorted(hits)}"]

    problems = each(variants, compose_relpaths, check)
    assert not problems, "\n".join(problems)


def test_no_secret_in_tracked_files(projects, tmp_path):
    """No file git would track contains a secret-like string; .env holds the real ones."""
    problems = []
    for _combo, project in projects[:1] + projects[-1:]:
        tracked = subprocess.run(["git", "ls-files", "--others", "--exclude-standard"], cwd=project,
                                 capture_output=True, text=True, check=False)
        if tracked.returncode != 0:
            subprocess.run(["git", "init", "-q"], cwd=project, check=True)
            tracked = subprocess.run(["git", "ls-files", "--others", "--exclude-standard"], cwd=project,
                                     capture_output=True, text=True, check=True)
        files = [project / f for f in tracked.stdout.split()]
        assert ".env" not in tracked.stdout.split() and len(files) > 50
        problems += checks.secret_scan(files)
        assert checks.secret_scan([project / ".env"]), ".env should hold real secrets"
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("https", ["on", "off"])
def test_traefik_loads_generated_config(variants, tmp_path, https):
    """The real Traefik starts with the generated static and dynamic files, without errors."""
    def check(combo, project):
        traefik = project / "Docker/traefik"
        static = traefik / ("traefik.https.yml" if https == "on" else "traefik.http.yml")
        dynamic = [traefik / "dynamic/middlewares.yml"]
        if https == "on" and combo["tls"] == "origin-certs":
            dynamic.append(traefik / "dynamic/tls.yml")
        workdir = tmp_path / f"{combo['tls']}-{https}"
        return checks.traefik_problems(static, dynamic, workdir, combo.get("app_domain", "example.com"))

    problems = each(variants, lambda p: rels(p, "Docker/traefik/**/*"), check)
    assert not problems, "\n".join(problems)
