"""Conformance tier: every generated file passes the real tool for its format."""

import os
import re

import pytest
import yaml

from harness.combinations import COOKIECUTTER_JSON
from harness.proc import run
from harness.rules import checks
from harness.variants import rels, unique_variants

SCRIPT_GLOBS = ("script/*", "script/docker/*", "script/functions/*")
DOCKERFILES = ("Docker/lucky/Dockerfile", "Docker/lucky/Dockerfile.prod", "Docker/hasura/Dockerfile")
CRYSTAL = ["src", "spec", "config", "db/migrations", "tasks", "tasks.cr"]
PROD_REQUIRED = ["POSTGRES_USER", "POSTGRES_DB", "APP_DOMAIN", "DASHBOARD_USERS_FILE", "POSTGRES_PASSWORD_FILE",
                 "POSTGRES_APP_PASSWORD_FILE", "HASURA_GRAPHQL_ADMIN_SECRET_FILE", "HASURA_JWT_KEY_FILE",
                 "SECRET_KEY_BASE_FILE", "SEND_GRID_KEY_FILE"]
DEV_REQUIRED = ["POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "HASURA_GRAPHQL_ADMIN_SECRET",
                "HASURA_JWT_KEY", "SECRET_KEY_BASE"]


YAML_GLOBS = ("**/*.yml", "**/*.yaml", ".gitlab-ci.yml", ".github/workflows/*.yml")
MONITORING = "Docker/prometheus-swarm"
CRYSTAL_GLOBS = ("src/**/*.cr", "spec/**/*.cr", "config/*.cr", "tasks/**/*.cr")
COMPOSE_GLOBS = ("Docker/**/*", "script/**/*", ".env.example")


@pytest.mark.files(*SCRIPT_GLOBS)
def test_shellcheck(variant):
    """Every script, helper and in-container script passes shellcheck (once for a file whose text and sourced files'
    texts an earlier variant's check passed: checks.shellcheck_once)."""
    _, project = variant
    assert not checks.shellcheck_once(rels(project, *SCRIPT_GLOBS), cwd=project)


@pytest.mark.files(*DOCKERFILES)
def test_hadolint(variant):
    """Every Dockerfile passes hadolint (ignored rules justified in hadolint.yaml)."""
    _, project = variant
    assert not checks.hadolint([project / f for f in DOCKERFILES])


@pytest.mark.files(*YAML_GLOBS)
def test_yamllint(variant):
    """Every YAML file passes yamllint with the repo's config."""
    _, project = variant
    assert not checks.yamllint(sorted({str(project / r) for r in rels(project, *YAML_GLOBS)}))


@pytest.mark.files(f"{MONITORING}/prometheus/**/*.yml", f"{MONITORING}/alertmanager/*.yml", when={"monitoring": "yes"})
def test_prometheus_and_alertmanager(variant):
    """promtool checks the config and rules; amtool checks Alertmanager."""
    _, project = variant
    base = project / MONITORING
    assert not (checks.promtool_config(base / "prometheus/prometheus.yml")
                + checks.promtool_rules(sorted(map(str, (base / "prometheus/rules").glob("*.yml"))))
                + checks.amtool(base / "alertmanager/alertmanager.yml"))


def test_some_combination_renders_monitoring():
    """The monitoring checks above have at least one variant to run on."""
    assert unique_variants([f"{MONITORING}/**/*"], {"monitoring": "yes"})


@pytest.mark.files(f"{MONITORING}/grafana/**/*", f"{MONITORING}/docker-compose.yml", when={"monitoring": "yes"})
def test_grafana_provisioning(variant):
    """Dashboards parse and use the provisioned datasource, where the provider reads them."""
    _, project = variant
    base = project / MONITORING
    compose = yaml.safe_load((base / "docker-compose.yml").read_text())
    targets = {c["target"] for c in compose["services"]["grafana"]["configs"] if c["target"].endswith(".json")}
    mounted = {os.path.dirname(t) for t in targets}
    assert len(mounted) == 1
    assert not checks.grafana(base / "grafana/provisioning/datasources/prometheus.yml",
                              base / "grafana/provisioning/dashboards/dashboards.yml",
                              sorted((base / "grafana/dashboards").glob("*.json")), mounted.pop())


@pytest.mark.files(".gitlab-ci.yml", when={"ci": "gitlab"})
def test_gitlab_ci_file(variant):
    """.gitlab-ci.yml validates against GitLab's vendored schema."""
    _, project = variant
    assert not checks.jsonschema("vendor.gitlab-ci", [project / ".gitlab-ci.yml"])


@pytest.mark.files(".github/workflows/*.yml", when={"ci": "github"})
def test_github_workflows(variant):
    """The workflows validate against their vendored schema and pass actionlint."""
    _, project = variant
    workflows = sorted((project / ".github/workflows").glob("*.yml"))
    assert workflows
    assert not checks.jsonschema("vendor.github-workflows", workflows) + checks.actionlint(workflows)


@pytest.mark.files(*CRYSTAL_GLOBS)
def test_crystal_format(variant):
    """The Lucky app is formatted the way `crystal tool format` wants."""
    _, project = variant
    assert not checks.crystal_format(CRYSTAL, cwd=project)


def deploy_config(project, env_file, https, **overrides):
    env = checks.env_with(LHD_ENV_FILE=str(env_file), HTTPS_SWITCH=https, **overrides)
    return run([project / "script/deploy", "--config", "0123abcd"], env=env, check=False, timeout=60)


def monitoring_config(project, env_file, https):
    env = checks.env_with(LHD_ENV_FILE=str(env_file), HTTPS_SWITCH=https)
    return run([project / "script/monitoring", "config"], env=env, check=False, timeout=60)


def loaded(result):
    assert result.returncode == 0, result.stdout + result.stderr
    return yaml.safe_load(result.stdout)


@pytest.mark.files(*COMPOSE_GLOBS)
@pytest.mark.parametrize("https", ["on", "off"])
def test_production_stack_rules(variant, prod_env, https):
    """`docker stack config` on script/deploy's files: healthchecks, ports, update order, security."""
    combo, project = variant
    env_file = prod_env(project)
    app = loaded(deploy_config(project, env_file, https))
    monitoring = loaded(monitoring_config(project, env_file, https)) if combo["monitoring"] == "yes" else None
    found = checks.stack_problems(app) + checks.security_problems(app, monitoring)
    if monitoring:
        # Monitoring services have no rolling-update policy of their own.
        found += [f"monitoring: {p}" for p in checks.stack_problems(monitoring, check_updates=False)]
    assert not found, "\n".join(found)
    assert {p["published"] for p in app["services"]["traefik"]["ports"]} == ({80, 443} if https == "on" else {80})
    entrypoints = {v for k, v in app["services"]["lucky"]["deploy"]["labels"].items() if k.endswith(".entrypoints")}
    assert entrypoints == {"websecure" if https == "on" else "web"}


@pytest.mark.files(*COMPOSE_GLOBS, "docs/configuration.md", "Docker/prometheus-swarm/prometheus/rules/*.yml")
def test_production_memory_logs_and_placement(variant, prod_env):
    """Every production service has memory limits and reservations (as docs/configuration.md's table says) and rotated
    logs; postgres stops gracefully; every stateful service is placed by its node label; every memory alert can
    fire under those limits."""
    combo, project = variant
    env_file = prod_env(project)
    configs = [("app", loaded(deploy_config(project, env_file, "on")))]
    if combo["monitoring"] == "yes":
        configs.append(("monitoring", loaded(monitoring_config(project, env_file, "on"))))
    swarm_name = COOKIECUTTER_JSON["project_name"]  # swarm_name follows project_name in every combination
    found = [p for stack, config in configs for p in checks.resource_problems(config, swarm_name, stack)]
    found += checks.memory_table_problems(project / "docs/configuration.md", *(c for _, c in configs))
    for rules in sorted((project / "Docker/prometheus-swarm/prometheus/rules").glob("*.yml")):
        found += checks.alert_limit_problems(yaml.safe_load(rules.read_text()), *(c for _, c in configs))
    assert not found, "\n".join(found)


def test_production_fails_fast_on_missing_variables(default_project, prod_env):
    """With any required variable empty, script/deploy --config fails naming it."""
    env_file = prod_env(default_project)
    problems = checks.fail_fast_problems(
        lambda o: deploy_config(default_project, env_file, "on", **o), PROD_REQUIRED + ["TLS_CERT_FILE"])
    assert not problems, "\n".join(problems)


@pytest.mark.files(*COMPOSE_GLOBS)
def test_development_config(variant):
    """`script/up --config`: merges, ports only on 127.0.0.1 (the Hasura console's only with --console),
    healthchecks, password auth (scram-sha-256, never trust), develop.watch."""
    _, project = variant
    result = run([project / "script/up", "--config"], check=False, env=checks.env_with(COMPOSE_PROJECT_NAME="lint"),
                 timeout=60)
    config = loaded(result)
    found = []
    for name, svc in config["services"].items():
        for port in svc.get("ports", []):
            if port.get("host_ip") != "127.0.0.1":
                found.append(f"dev {name}: port {port} not bound to 127.0.0.1")
        if not svc.get("healthcheck"):
            found.append(f"dev {name}: no healthcheck")
    assert not found, "\n".join(found)
    assert config["services"]["postgres"]["environment"].get("POSTGRES_HOST_AUTH_METHOD") == "scram-sha-256"
    published = {p["target"] for p in config["services"]["hasura"].get("ports", [])}
    assert published == {8080}, published
    console = run([project / "script/up", "--config", "--console"], check=False,
                  env=checks.env_with(COMPOSE_PROJECT_NAME="lint"), timeout=60)
    ports = loaded(console)["services"]["hasura"]["ports"]
    assert {(p["target"], p.get("host_ip")) for p in ports} == {(8080, "127.0.0.1"), (9695, "127.0.0.1"),
                                                               (9693, "127.0.0.1")}
    watch = config["services"]["lucky"].get("develop", {}).get("watch", [])
    assert {w["action"] for w in watch} >= {"sync", "rebuild"}, watch


def test_development_fails_fast_on_missing_variables(default_project):
    """With any required variable empty, script/up --config fails naming it."""
    def render(overrides):
        env = checks.env_with(COMPOSE_PROJECT_NAME="lint", **overrides)
        return run([default_project / "script/up", "--config"], env=env, check=False, timeout=60)

    problems = checks.fail_fast_problems(render, DEV_REQUIRED)
    assert not problems, "\n".join(problems)


@pytest.mark.files(*COMPOSE_GLOBS)
def test_dev_project_is_named_apart_from_the_stack(variant):
    """The development Compose project is <project>_dev, and so are its volumes (read by the real Compose, so this
    lives in the lint tier: the render tier runs without Docker)."""
    _, project = variant
    env = {k: v for k, v in os.environ.items() if k != "COMPOSE_PROJECT_NAME"}
    result = run([project / "script/up", "--config"], env=env, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("name: lhd_app_dev\n")
    assert re.search(r"^  db_data:\n    name: lhd_app_dev_db_data$", result.stdout, re.M)


@pytest.mark.files(*COMPOSE_GLOBS)
def test_trust_auth_only_in_development_files(variant):
    """POSTGRES_HOST_AUTH_METHOD trust appears in no file, development's included (review L10)."""
    _, project = variant
    hits = {str(p.relative_to(project)) for p in project.rglob("*")
            if p.is_file() and "POSTGRES_HOST_AUTH_METHOD: trust" in p.read_text(errors="replace")}
    assert hits == set()


@pytest.mark.files(*SCRIPT_GLOBS, "Docker/backup/*")
def test_no_secret_in_process_arguments(variant):
    """No script puts a password or the admin secret in a process's arguments (review M4)."""
    _, project = variant
    files = [f for f in rels(project, *SCRIPT_GLOBS, "Docker/backup/*")]
    assert not checks.argv_secret_problems([project / f for f in files])


@pytest.mark.files(*COMPOSE_GLOBS)
def test_unencrypted_overlays_differ_only_in_encryption(variant, prod_env):
    """OVERLAY_ENCRYPTION=off gives the same networks, less driver_opts (a later stack file replaces a network whole,
    so Docker/docker-compose.unencrypted.yml repeats each definition)."""
    _, project = variant
    env_file = prod_env(project)
    on = loaded(deploy_config(project, env_file, "on"))["networks"]
    off = loaded(deploy_config(project, env_file, "on", OVERLAY_ENCRYPTION="off"))["networks"]
    assert {k for k, v in on.items() if (v or {}).get("driver_opts") == {"encrypted": "true"}} >= {"internal", "public"}
    assert off == {k: {o: p for o, p in (v or {}).items() if o != "driver_opts"} for k, v in on.items()}


@pytest.mark.files("Docker/traefik/**/*")
def test_dashboard_auth_keeps_the_password(variant):
    """The dashboards' basic auth removes the Authorization header before the dashboards (review L4)."""
    _, project = variant
    dynamic = yaml.safe_load((project / "Docker/traefik/dynamic/middlewares.yml").read_text())
    assert not checks.dashboard_auth_problems(dynamic)


@pytest.mark.parametrize("which", [0, -1], ids=["first-combination", "last-combination"])
def test_no_secret_in_tracked_files(projects, which):
    """No file git would track contains a secret-like string; .env holds the real ones."""
    _, project = projects[which]
    tracked = run(["git", "ls-files", "--others", "--exclude-standard"], cwd=project, check=False)
    if tracked.returncode != 0:
        run(["git", "init", "-q"], cwd=project)
        tracked = run(["git", "ls-files", "--others", "--exclude-standard"], cwd=project)
    files = [project / f for f in tracked.stdout.split()]
    assert ".env" not in tracked.stdout.split() and len(files) > 50
    assert not checks.secret_scan(files)
    assert checks.secret_scan([project / ".env"]), ".env should hold real secrets"


@pytest.mark.files("Docker/traefik/**/*")
@pytest.mark.parametrize("https", ["on", "off"])
def test_traefik_loads_generated_config(variant, tmp_path, https):
    """The real Traefik starts with the generated static and dynamic files, without errors."""
    combo, project = variant
    traefik = project / "Docker/traefik"
    static = traefik / ("traefik.https.yml" if https == "on" else "traefik.http.yml")
    dynamic = [traefik / "dynamic/middlewares.yml"]
    if https == "on" and combo["tls"] == "origin-certs":
        dynamic.append(traefik / "dynamic/tls.yml")
    assert not checks.traefik_problems(static, dynamic, tmp_path / "traefik", combo.get("app_domain", "example.com"))
