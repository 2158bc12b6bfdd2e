"""Render tier: every supported combination renders into a complete project."""

import hashlib
import json
import os
import re
import shutil
import stat
import tomllib

import pytest
import yaml

from harness.bake import bake, text_files
from harness.combinations import REJECTED, ROOT, SUPPORTED, combo_id
from harness.proc import run

UNRENDERED = re.compile(r"{{(\s?cookiecutter)[.](.*?)}}")

# Files every project has, whatever the answers.
ALWAYS = [
    "shard.yml", "tasks.cr", "src/start_server.cr", "src/app_server.cr", "src/healthcheck.cr",
    "src/actions/version/show.cr", "src/actions/api_action.cr", "config/watch.yml", "config/server.cr",
    "db/migrations/20250101000000_create_notes.cr", "tasks/db/seed/required_data.cr",
    "tasks/db/seed/sample_data.cr", "spec/spec_helper.cr", "spec/requests/version/show_spec.cr",
    "Docker/docker-compose.yml", "Docker/docker-compose.dev.yml", "Docker/docker-compose.prod.yml",
    "Docker/docker-compose.traefik.yml", "Docker/docker-compose.https.yml",
    "Docker/lucky/Dockerfile", "Docker/lucky/Dockerfile.prod", "Docker/hasura/Dockerfile",
    "Docker/traefik/traefik.http.yml", "Docker/traefik/traefik.https.yml",
    "Docker/traefik/dynamic/middlewares.yml",
    "db/hasura/config.yaml", "db/hasura/metadata/databases/databases.yaml",
    "db/hasura/metadata/databases/default/tables/public_notes.yaml",
    "script/up", "script/down", "script/build", "script/deploy", "script/rollback", "script/bootstrap",
    "script/ci_deploy", "script/test", "script/functions/common", "script/docker/wait_for_postgres",
    "script/docker/update_db", "script/docker/hasura_healthcheck",
    "README.md", ".gitignore", ".dockerignore", ".env.example", ".env", ".cruft.json",
]

# (option, value) -> files that exist exactly when option == value.
OPTIONAL = {
    ("ci", "gitlab"): [".gitlab-ci.yml"],
    ("ci", "github"): [".github/workflows/ci.yml"],
    ("monitoring", "yes"): ["Docker/prometheus-swarm/docker-compose.yml", "script/monitoring",
                            "Docker/prometheus-swarm/prometheus/prometheus.yml"],
    ("tls", "origin-certs"): ["Docker/traefik/dynamic/tls.yml"],
}


def test_renders_complete_project(project, combo):
    """Every always-present file exists and each option adds exactly its files."""
    missing = [f for f in ALWAYS if not (project / f).is_file()]
    assert not missing, f"missing: {missing}"
    for (option, value), files in OPTIONAL.items():
        for f in files:
            assert (project / f).exists() == (combo[option] == value), f"{f} with {option}={combo[option]}"


def test_docker_sync_is_gone(project):
    """No docker-sync file or script step is left; only the upgrade notes for former users name it."""
    names = {str(p.relative_to(project)) for p in text_files(project)
             if re.search(r"docker[-_]sync|dev_sync", p.read_text(errors="replace"), re.IGNORECASE)}
    assert names == {"docs/upgrading.md"}
    note = (project / "docs/upgrading.md").read_text().split("**Coming from docker-sync?**")[1].split("\n\n")[0]
    assert "script/up" in note and "script/watch" in note and "docker compose watch" in note


# Files that differ between two renders of the same answers: the answers recorded for cruft and the
# random development secrets.
PER_RENDER = {".cruft.json", ".env"}


def fingerprint(project):
    """Hash of every file's path, mode and bytes, the per-render files left out."""
    digest = hashlib.sha256()
    for path in sorted(project.rglob("*")):
        rel = path.relative_to(project).as_posix()
        if path.is_file() and rel not in PER_RENDER:
            digest.update(f"{rel}\0{stat.S_IMODE(path.stat().st_mode):o}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_no_two_combinations_render_the_same_project(bakes):
    """Every supported combination renders a project of its own, so no bake is wasted."""
    seen = {}
    for combo in SUPPORTED:
        seen.setdefault(fingerprint(bakes.get(combo)), []).append(combo_id(combo))
    same = [ids for ids in seen.values() if len(ids) > 1]
    assert not same, f"these combinations render identical projects: {same}"


@pytest.mark.parametrize(
    ("first", "second"),
    [({}, {}), ({"ci": "none"}, {"ci": "none", "template_update_check": "no"})],
    ids=["same-answers", "update-check-without-ci"],
)
def test_fingerprint_sees_through_per_render_files(tmp_path, first, second):
    """Equal answers, or answers differing only where nothing renders differently, give equal fingerprints."""
    assert fingerprint(bake(tmp_path / "a", **first)) == fingerprint(bake(tmp_path / "b", **second))


def test_no_unrendered_variables(project):
    """No file keeps a `{{ cookiecutter.x }}` expression."""
    found = [
        f"{path.relative_to(project)}: {m.group(0)}"
        for path in text_files(project)
        for m in UNRENDERED.finditer(path.read_text(errors="replace"))
    ]
    assert not found


def test_structured_files_parse(project):
    """Every YAML, JSON and TOML file parses."""
    checked = 0
    for path in text_files(project):
        text = path.read_text()
        if path.suffix in (".yml", ".yaml"):
            list(yaml.safe_load_all(text))
        elif path.suffix == ".json":
            json.loads(text)
        elif path.suffix == ".toml":
            tomllib.loads(text)
        else:
            continue
        checked += 1
    assert checked >= 20


def test_scripts_are_executable_with_strict_mode(project):
    """Runnable scripts are executable and strict; sourced helpers are not executable."""
    for path in sorted((project / "script").iterdir()):
        if path.is_dir():
            continue
        lines = path.read_text().splitlines()
        assert os.access(path, os.X_OK), path.name
        assert lines[0] == "#!/usr/bin/env bash", path.name
        assert "set -euo pipefail" in lines, path.name
    for path in sorted((project / "script/docker").iterdir()):
        lines = path.read_text().splitlines()
        assert os.access(path, os.X_OK), path.name
        assert lines[0] == "#!/bin/sh" and "set -eu" in lines, path.name
    for path in sorted((project / "script/functions").iterdir()):
        assert not os.access(path, os.X_OK), path.name
        assert path.read_text().startswith("# shellcheck shell=bash"), path.name


def template_syntax_files(project):
    """Relative paths of files that contain `{{` or `{%` after rendering."""
    return {
        str(p.relative_to(project))
        for p in text_files(project)
        if re.search(r"{{|{%", p.read_text(errors="replace"))
    }


def test_crystal_and_go_templates_exactly_where_expected(project, combo):
    """Crystal macros, Go templates and Actions expressions survive, and nothing else has `{{`."""
    expected = {
        "src/version.cr",                 # Crystal macros
        "script/functions/swarm",         # docker --format Go templates
        "script/functions/dev",
        "script/functions/cleanup",
        "script/docker/cleanup_node",
        "script/functions/maintenance",
        "script/logs",
        "script/bootstrap",
        "script/doctor",
    }
    if combo["monitoring"] == "yes":
        expected |= {
            "script/monitoring",
            "Docker/prometheus-swarm/docker-compose.yml",            # {{.Node.Hostname}}
            "Docker/prometheus-swarm/prometheus/rules/node.rules.yml",
            "Docker/prometheus-swarm/prometheus/rules/task.rules.yml",
            "Docker/prometheus-swarm/grafana/dashboards/nodes.json",    # legend templates
            "Docker/prometheus-swarm/grafana/dashboards/services.json",
        }
    if combo["ci"] == "github":
        expected.add(".github/workflows/ci.yml")                    # ${{ ... }}
    if combo["tls"] != "origin-certs":
        expected.add("Docker/traefik/traefik.https.yml")            # swarm config template: {{ env "ACME_CA_SERVER" }}
    assert template_syntax_files(project) == expected
    version = (project / "src/version.cr").read_text()
    assert "{{ `date -u +%Y-%m-%dT%H:%M:%SZ`.stringify.chomp }}" in version
    assert "{% if flag?(:release) %}" in version
    assert "{{.Spec.TaskTemplate.ContainerSpec.Image}}" in (project / "script/functions/swarm").read_text()
    if combo["monitoring"] == "yes":
        assert 'hostname: "{{.Node.Hostname}}"' in (project / "Docker/prometheus-swarm/docker-compose.yml").read_text()
        assert "{{ $labels.node }}" in (project / "Docker/prometheus-swarm/prometheus/rules/node.rules.yml").read_text()


def test_https_static_config_differs_only_by_tls(project, combo):
    """traefik.https.yml is traefik.http.yml plus the TLS entry point, redirect and resolver."""
    http = yaml.safe_load((project / "Docker/traefik/traefik.http.yml").read_text())
    https = yaml.safe_load((project / "Docker/traefik/traefik.https.yml").read_text())
    assert https["entryPoints"]["web"]["http"]["redirections"]["entryPoint"] == {
        "to": "websecure", "scheme": "https", "permanent": True}
    assert https["entryPoints"]["websecure"]["address"] == ":443"
    assert ("certificatesResolvers" in https) == (combo["tls"] == "letsencrypt")
    del https["entryPoints"]["websecure"], https["entryPoints"]["web"]["http"]
    https.pop("certificatesResolvers", None)
    assert https == http


def crystal_inputs(project):
    """Every file the Crystal compiler or shards read, with its text."""
    files = sorted(p for p in project.rglob("*") if p.is_file() and (p.suffix == ".cr" or p.name == "shard.yml"))
    return {str(p.relative_to(project)): p.read_text() for p in files}


def test_crystal_inputs_vary_only_with_free_text_answers(project, default_project):
    """No choice option changes what the compiler sees, so tests/compile/test_lucky_compiles.py's variants cover all."""
    assert crystal_inputs(project) == crystal_inputs(default_project)


def test_names_follow_answers(bakes):
    """project_name, swarm_name, owner, repo and domain land where they belong."""
    combo = dict(SUPPORTED[0])
    project = bake(bakes.base / "names", **combo, project_name="shop", swarm_name="shopswarm",
                   repo_owner="acme", repo_name="shop-api", app_domain="shop.example.org")
    prod = (project / "Docker/docker-compose.prod.yml").read_text()
    assert "registry.gitlab.com/acme/shop-api/lucky:${LUCKY_TAG" in prod
    traefik = (project / "Docker/docker-compose.traefik.yml").read_text()
    # The routed domain is the server's APP_DOMAIN, read at deploy time; the answer is bootstrap's default.
    assert "Host(`api.${APP_DOMAIN:?" in traefik and "shop.example.org" not in traefik
    assert 'domain="shop.example.org"' in (project / "script/bootstrap").read_text()
    assert 'SWARM_NAME="shopswarm"' in (project / "script/functions/common").read_text()
    assert "network: shopswarm_public" in (project / "Docker/traefik/traefik.http.yml").read_text()
    assert yaml.safe_load((project / "shard.yml").read_text())["name"] == "shop"


@pytest.mark.parametrize(
    ("tls", "account"),
    [("letsencrypt", "ops@shop.example.org"), ("certs@shop.example.org", "certs@shop.example.org")],
    ids=["letsencrypt", "e-mail"],
)
def test_letsencrypt_account_follows_tls_answer(tmp_path, tls, account):
    """tls=letsencrypt uses ops@<app_domain>; an e-mail as the tls answer means Let's Encrypt with that account."""
    project = bake(tmp_path, tls=tls, app_domain="shop.example.org")
    acme = yaml.safe_load((project / "Docker/traefik/traefik.https.yml").read_text())["certificatesResolvers"]
    assert acme["letsencrypt"]["acme"]["email"] == account
    assert f"account `{account}`" in (project / "README.md").read_text()
    assert not (project / "Docker/traefik/dynamic/tls.yml").exists()


def test_pins_are_not_asked_but_overridable(tmp_path):
    """A pin given as extra context lands wherever the pinned image or release is used."""
    project = bake(tmp_path, _crystal_version="1.22.0", _postgres_version="18.4", _traefik_version="v3.8.0")
    assert "ARG CRYSTAL_VERSION=1.22.0" in (project / "Docker/lucky/Dockerfile").read_text()
    assert 'crystal: ">= 1.22.0"' in (project / "shard.yml").read_text()
    assert "image: postgres:18.4" in (project / "Docker/docker-compose.yml").read_text()
    assert "image: traefik:v3.8.0" in (project / "Docker/docker-compose.traefik.yml").read_text()


def test_answers_to_removed_options_change_nothing(tmp_path):
    """Keys cookiecutter.json no longer has (old .cruft.json files carry them) are ignored: the defaults render."""
    project = bake(tmp_path / "old", dev_sync="docker-sync", letsencrypt_email="me@example.org", crystal_version="1.0.0")
    assert fingerprint(project) == fingerprint(bake(tmp_path / "defaults"))


def test_github_registry(bakes):
    """git_host=github puts images on ghcr.io."""
    project = bake(bakes.base / "gh", git_host="github", ci="github", repo_owner="acme", repo_name="shop")
    assert "ghcr.io/acme/shop/lucky:" in (project / "Docker/docker-compose.prod.yml").read_text()


def test_dev_secrets_fresh_and_ignored(bakes, tmp_path):
    """.env gets random secrets per render and git never tracks it."""
    first = bake(tmp_path / "a")
    second = bake(tmp_path / "b")
    env_a = dict(line.split("=", 1) for line in (first / ".env").read_text().splitlines() if "=" in line)
    env_b = dict(line.split("=", 1) for line in (second / ".env").read_text().splitlines() if "=" in line)
    for key in ("POSTGRES_PASSWORD", "HASURA_GRAPHQL_ADMIN_SECRET", "HASURA_JWT_KEY", "SECRET_KEY_BASE"):
        assert len(env_a[key]) >= 32 and env_a[key] != env_b[key], key
        assert "generated" not in env_a[key]
    assert oct((first / ".env").stat().st_mode & 0o777) == "0o600"
    run(["git", "init", "-q"], cwd=first)
    run(["git", "add", "-A"], cwd=first)
    tracked = run(["git", "ls-files"], cwd=first).stdout.split()
    assert ".env" not in tracked and ".env.example" in tracked
    for path in tracked:
        text = (first / path).read_text(errors="replace")
        assert not any(env_a[k] in text for k in ("POSTGRES_PASSWORD", "SECRET_KEY_BASE")), path


def test_cruft_state_records_template_and_answers(default_project):
    """.cruft.json names the template, the answers and the files cruft must skip."""
    state = json.loads((default_project / ".cruft.json").read_text())
    assert state["template"] == str(ROOT)
    assert state["context"]["cookiecutter"]["project_name"] == "lhd_app"
    assert {".env", ".cruft.json", ".env.production"} <= set(state["skip"])


@pytest.mark.parametrize("combo", REJECTED, ids=combo_id)
def test_unsupported_combinations_are_refused(tmp_path, combo):
    """Combinations the hook forbids stop generation and leave no directory."""
    from cookiecutter.exceptions import FailedHookException

    with pytest.raises(FailedHookException):
        bake(tmp_path, **combo)
    assert list(tmp_path.iterdir()) == []


def test_every_file_the_template_ships_is_tracked_by_git_add(default_project, tmp_path):
    """`git add -A` in a fresh project commits every file the template ships (docs/ and CHANGELOG.md included)
    except the ones it means to keep out (.env and the secret files): an ignore rule must not swallow docs."""
    project = tmp_path / "p"
    shutil.copytree(default_project, project, ignore=shutil.ignore_patterns(".git"))
    run(["git", "init", "-q"], cwd=project)
    run(["git", "add", "-A"], cwd=project)
    tracked = set(run(["git", "ls-files"], cwd=project).stdout.split())
    shipped = {str(p.relative_to(project)) for p in project.rglob("*") if p.is_file() and ".git" not in p.parts}
    kept_out = {".env"} | {p for p in shipped if p.startswith("etc/secrets/") and not p.endswith(".gitkeep")}
    assert shipped - kept_out - tracked == set()
    assert any(p.startswith("docs/") for p in tracked)


# What the release build's Crystal compile reads: the COPY sources of Docker/lucky/Dockerfile.prod's build stage.
COMPILE_INPUTS = ["config", "db/migrations", "shard.yml", "src", "tasks", "tasks.cr"]


def build_stage_copies(project):
    """The sources of the COPY lines (not --from) of Dockerfile.prod's build stage, shard.loc[k] as shard.lock."""
    stage = (project / "Docker/lucky/Dockerfile.prod").read_text().split(" AS build\n", 1)[1].split("\nFROM ", 1)[0]
    return [source.replace("shard.loc[k]", "shard.lock") for line in stage.splitlines()
            if line.startswith("COPY ") and "--from=" not in line for source in line.split()[1:-1]]


def test_release_build_copies_only_what_the_compiler_reads(default_project):
    """The release build copies the compiler's inputs, not `.`: an edit to a script, a stack file, a spec or the
    Hasura metadata reuses the cached Crystal build (benchmarks/lucky_build.py), and since no choice option changes
    those inputs (test_crystal_inputs_vary_only_with_free_text_answers), tiers rendering other answers share one
    build. Every Crystal source but the specs is among them."""
    assert sorted(set(build_stage_copies(default_project)) - {"shard.lock"}) == COMPILE_INPUTS
    outside = [name for name in crystal_inputs(default_project) if not name.startswith("spec/")
               and not any(name == c or name.startswith(c + "/") for c in COMPILE_INPUTS)]
    assert outside == []


def test_documentation_is_outside_the_image_build_context(default_project):
    """Editing docs/, CHANGELOG.md or README.md changes no image: .dockerignore keeps them out of `COPY . .`, so a
    docs commit reuses every cached layer of the release build."""
    patterns = [line.strip().rstrip("/") for line in (default_project / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith(("#", "!"))]
    docs = ["README.md", "CHANGELOG.md", *(str(p.relative_to(default_project)) for p in
                                           (default_project / "docs").rglob("*.md"))]
    assert len(docs) > 3
    for path in docs:
        assert any(path == pattern or path.startswith(pattern + "/") for pattern in patterns), path
