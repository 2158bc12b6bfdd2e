"""`script/up` brings the generated development stack up, and it works.

Runs the generated project's own unmodified scripts; the image mode decides
whether Hasura and Lucky are the real images or the kit's contract doubles.
pytest-docker brings the stack up and down through the project's own scripts
(harness/devstack.py), and GraphQL goes through gql.
"""

import json
import re
import time

import psycopg
import pytest
import requests
from gql import gql
from gql.transport.exceptions import TransportQueryError

from harness.devstack import make_stack
from harness.graphql_client import client
from harness.wait import until

SEEDED = {"Welcome to LHD", "GraphQL too", "A draft"}
NOTES = gql("query { notes { title published } }")


def read_env(stack):
    """The project's .env (written by script/up) as a dict."""
    lines = (stack.project / ".env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def graphql(stack, secret=True):
    """A gql Client on the stack's Hasura, with the project's admin secret unless secret is False."""
    headers = {"x-hasura-admin-secret": read_env(stack)["HASURA_GRAPHQL_ADMIN_SECRET"]} if secret else {}
    return client(stack.url("HASURA_PORT", "/v1/graphql"), headers)


def test_up_returns_all_done(dev_stack):
    """script/up exits 0 and ends with the success line."""
    assert dev_stack.last_up.returncode == 0
    assert dev_stack.last_up.stdout.rstrip().endswith("✔ All done.")


def test_every_service_healthy(dev_stack):
    """The engine reports every service healthy, by the project's own healthchecks."""
    health = {container.Service: container.Health for container in dev_stack.services()}
    assert health == {"postgres": "healthy", "hasura": "healthy", "lucky": "healthy"}


def test_ports_published_on_loopback_only(dev_stack):
    """Every published port is bound to 127.0.0.1 alone, on the port the harness gave it; the Hasura console and
    its API (no login of their own) are not published without `script/up --console`."""
    published = {(container.Service, port.TargetPort): (port.URL, port.PublishedPort)
                 for container in dev_stack.services() for port in container.Publishers if port.PublishedPort}
    given = {name: ("127.0.0.1", int(dev_stack.env[name])) for name in dev_stack.env if name.endswith("_PORT")}
    assert published == {("postgres", 5432): given["POSTGRES_PORT"], ("hasura", 8080): given["HASURA_PORT"],
                         ("lucky", 5000): given["LUCKY_PORT"]}


def test_lucky_version(dev_stack):
    """Lucky's /version answers with the development version."""
    answer = requests.get(dev_stack.url("LUCKY_PORT", "/version"), timeout=10)
    assert answer.status_code == 200 and answer.json()["version"] == "development"


def test_hasura_healthz(dev_stack):
    """Hasura's /healthz answers OK."""
    assert requests.get(dev_stack.url("HASURA_PORT", "/healthz"), timeout=10).text == "OK"


def test_migration_mode_is_off(dev_stack):
    """The console API answers (inside the container: it is not published) and script/up turned migration mode
    off."""
    out, _ = dev_stack.exec("hasura", "curl", "--fail", "--silent", "--max-time", "5",
                            "http://127.0.0.1:9693/apis/migrate/settings")
    assert json.loads(out) == {"migration_mode": "false"}


def test_postgres_asks_for_a_password_over_tcp(dev_stack):
    """A login on the published port (what any local user can reach) without the password is refused
    (scram-sha-256, not trust); with it, it works. Inside the container, loopback stays trust (initdb's default,
    as upstream's image)."""
    env = read_env(dev_stack)
    login = {"host": "127.0.0.1", "port": int(dev_stack.env["POSTGRES_PORT"]), "user": env["POSTGRES_USER"],
             "dbname": env["POSTGRES_DB"], "connect_timeout": 10}
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(**login, password="").close()
    assert "password" in str(refused.value)
    with psycopg.connect(**login, password=env["POSTGRES_PASSWORD"]) as connection:
        assert connection.execute("select 1").fetchone() == (1,)


def test_graphql_returns_seeded_rows(dev_stack):
    """A gql query with the admin secret returns the rows the seed task wrote."""
    result = graphql(dev_stack).execute(NOTES)
    assert {n["title"] for n in result["notes"]} == SEEDED


def test_graphql_without_secret_is_denied(dev_stack):
    """Without the admin secret or a JWT the project refuses GraphQL: Hasura's JWT-mode invalid-headers error."""
    with pytest.raises(TransportQueryError) as denied:
        graphql(dev_stack, secret=False).execute(NOTES)
    error = denied.value.errors[0]
    assert error["extensions"]["code"] == "invalid-headers", error
    assert error["message"] == "Missing 'Authorization' or 'Cookie' header in JWT authentication mode", error


def test_develop_watch_syncs_sources(dev_stack, tmp_path):
    """An edit under src/ reaches the lucky container through develop.watch."""
    marker = f"# synced-{time.time_ns()}"
    target = dev_stack.project / "src/actions/home/index.cr"
    original = target.read_text()
    with dev_stack.watching(tmp_path / "watch.log"):
        try:
            target.write_text(original + marker + "\n")
            until(lambda: marker in dev_stack.exec("lucky", "cat", "/app/src/actions/home/index.cr")[0], 60,
                  "the edit to appear in the lucky container")
        finally:
            target.write_text(original)


def test_lucky_watch_serves_an_edit(dev_stack, tmp_path):
    """An edited action, synced by develop.watch, is recompiled by `lucky watch` and served."""
    marker = f"edited-{time.time_ns()}"
    target = dev_stack.project / "src/actions/home/index.cr"
    original = target.read_text()
    with dev_stack.watching(tmp_path / "watch.log"):
        try:
            target.write_text(original.replace('name: "lucky"', f'name: "{marker}"'))
            assert marker in target.read_text()

            def served():
                answer = requests.get(dev_stack.url("LUCKY_PORT", "/"), timeout=5)
                return answer.status_code == 200 and answer.json()["name"] == marker
            until(served, 240, lambda: "lucky watch to serve the edit:\n" + dev_stack.logs())
        finally:
            target.write_text(original)


def test_script_test_runs_the_real_specs(dev_stack):
    """script/test runs `crystal spec` in the lucky image against a test database, and it passes."""
    result = dev_stack.script("test", timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.search(r"\b(\d+) examples, 0 failures, 0 errors", output), output
    assert "✔ All done." in result.stdout


def test_script_test_fails_on_a_failing_spec(dev_stack):
    """A planted failing spec makes script/test exit non-zero with crystal spec's failure, not "All done": the
    CI test job (and so every deploy after it) relies on that exit status."""
    planted = dev_stack.project / "spec/planted_failure_spec.cr"
    planted.write_text('require "./spec_helper"\n\ndescribe "a planted failure" do\n  it "fails" do\n'
                       '    1.should eq 2\n  end\nend\n')
    try:
        result = dev_stack.script("test", "spec/planted_failure_spec.cr", timeout=900)
    finally:
        planted.unlink()
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert re.search(r"\b1 examples?, 1 failures?", output), output
    assert "✔ All done." not in result.stdout


def test_up_twice_is_safe(dev_stack):
    """Running script/up on a running stack succeeds and keeps the data."""
    again = dev_stack.up()
    assert again.returncode == 0, again.stdout + again.stderr
    assert "✔ All done." in again.stdout
    assert {n["title"] for n in graphql(dev_stack).execute(NOTES)["notes"]} == SEEDED


def test_down_leaves_nothing_and_up_works_again(dev_stack):
    """script/down removes containers, networks and volumes; script/up afterwards works."""
    down = dev_stack.down()
    assert down.returncode == 0 and "✔ All done." in down.stdout
    assert dev_stack.leftovers() == {"containers": [], "networks": [], "volumes": []}
    again = dev_stack.up()
    assert again.returncode == 0, again.stdout + again.stderr
    assert {n["title"] for n in graphql(dev_stack).execute(NOTES)["notes"]} == SEEDED


def test_broken_database_url_never_comes_up_healthy(image_mode, tmp_path):
    """With the database URL Hasura gets broken, script/up fails and says which service. Harness override: the
    entrypoint's wait for its temporary server (HASURA_GRAPHQL_MIGRATIONS_SERVER_TIMEOUT, 90 s in
    Docker/docker-compose.yml for a busy server's swarm update) is 20 s here, after which it exits 1 as with 90."""
    stack = make_stack(tmp_path)
    compose = stack.project / "Docker/docker-compose.dev.yml"
    text = compose.read_text()
    broken = "HASURA_GRAPHQL_DATABASE_URL: postgres://${POSTGRES_USER}:${POSTGRES_PASSWORD}@nowhere:5432/${POSTGRES_DB}"
    wait = '\n      HASURA_GRAPHQL_MIGRATIONS_SERVER_TIMEOUT: "20"'
    compose.write_text(text.replace(
        "HASURA_GRAPHQL_DATABASE_URL: postgres://${POSTGRES_USER}:${POSTGRES_PASSWORD}@postgres:5432/${POSTGRES_DB}",
        broken + wait))
    assert broken + wait in compose.read_text()
    try:
        result = stack.up(UP_TIMEOUT="120")
        output = result.stdout + result.stderr
        assert result.returncode != 0, output
        assert "hasura" in output.lower(), output
        assert "All done" not in output
        hasura = [container for container in stack.services(include_all=True) if container.Service == "hasura"]
        assert hasura and hasura[0].Health != "healthy"
    finally:
        stack.down()
    assert stack.leftovers() == {"containers": [], "networks": [], "volumes": []}
