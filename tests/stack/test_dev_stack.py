"""`script/up` brings the generated development stack up, and it works.

Runs the generated project's own unmodified scripts; the image mode decides
whether Hasura and Lucky are the real images or the kit's contract doubles.
"""

import json
import re
import select
import subprocess
import time
from contextlib import contextmanager

import pytest
import requests
from gql import Client, gql
from gql.transport.exceptions import TransportQueryError
from gql.transport.requests import RequestsHTTPTransport

from tests.dockerlib import stop_process, wait_until
from tests.stack.conftest import make_stack

pytestmark = pytest.mark.docker

SEEDED = {"Welcome to LHD", "GraphQL too", "A draft"}
NOTES = gql("query { notes { title published } }")


def graphql(stack, secret=True):
    headers = {"x-hasura-admin-secret": read_env(stack)["HASURA_GRAPHQL_ADMIN_SECRET"]} if secret else {}
    transport = RequestsHTTPTransport(url=stack.url("HASURA_PORT", "/v1/graphql"), headers=headers, timeout=10)
    return Client(transport=transport, fetch_schema_from_transport=False)


def read_env(stack):
    lines = (stack.project / ".env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def test_up_returns_all_done(dev_stack):
    """script/up exits 0 and ends with the success line."""
    assert dev_stack.last_up.returncode == 0
    assert dev_stack.last_up.stdout.rstrip().endswith("✔ All done.")


def test_every_service_healthy(dev_stack):
    """The engine reports every service healthy, by the project's own healthchecks."""
    rows = [json.loads(line) for line in dev_stack.compose("ps", "--format", "json").stdout.splitlines() if line]
    health = {row["Service"]: row["Health"] for row in rows}
    assert health == {"postgres": "healthy", "hasura": "healthy", "lucky": "healthy"}


def test_lucky_version(dev_stack):
    answer = requests.get(dev_stack.url("LUCKY_PORT", "/version"), timeout=10)
    assert answer.status_code == 200 and answer.json()["version"] == "development"


def test_hasura_healthz(dev_stack):
    assert requests.get(dev_stack.url("HASURA_PORT", "/healthz"), timeout=10).text == "OK"


def test_migration_mode_is_off(dev_stack):
    """The console API answers and script/up turned migration mode off."""
    settings = requests.get(dev_stack.url("HASURA_CONSOLE_API_PORT", "/apis/migrate/settings"), timeout=10)
    assert settings.json() == {"migration_mode": "false"}


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


@contextmanager
def watching(stack, timeout=60):
    """`docker compose watch --no-up` on the stack, yielded once it says it watches; stopped afterwards."""
    files = ["-f", stack.project / "Docker/docker-compose.yml", "-f", stack.project / "Docker/docker-compose.dev.yml"]
    watch = subprocess.Popen(["docker", "compose", "-p", stack.name, "--env-file", str(stack.project / ".env"),
                              *map(str, files), "watch", "--no-up"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    try:
        deadline = time.monotonic() + timeout
        while not any("watch enabled" in line.lower() for line in seen):
            ready, _, _ = select.select([watch.stdout], [], [], max(0.0, deadline - time.monotonic()))
            line = watch.stdout.readline() if ready else ""
            if not line:
                pytest.fail("compose watch did not start:\n" + "".join(seen), pytrace=False)
            seen.append(line)
        yield watch
    finally:
        stop_process(watch, timeout=15)


def test_develop_watch_syncs_sources(dev_stack):
    """An edit under src/ reaches the lucky container through develop.watch."""
    marker = f"# synced-{time.time_ns()}"
    target = dev_stack.project / "src/actions/home/index.cr"
    original = target.read_text()
    with watching(dev_stack):
        try:
            target.write_text(original + marker + "\n")

            def synced():
                cat = dev_stack.compose("exec", "-T", "lucky", "cat", "/app/src/actions/home/index.cr", check=False)
                return marker in cat.stdout
            wait_until(synced, 60, "the edit to appear in the lucky container")
        finally:
            target.write_text(original)


def test_lucky_watch_serves_an_edit(dev_stack):
    """An edited action, synced by develop.watch, is recompiled by `lucky watch` and served."""
    marker = f"edited-{time.time_ns()}"
    target = dev_stack.project / "src/actions/home/index.cr"
    original = target.read_text()
    with watching(dev_stack):
        try:
            target.write_text(original.replace('name: "lucky"', f'name: "{marker}"'))
            assert marker in target.read_text()

            def served():
                answer = requests.get(dev_stack.url("LUCKY_PORT", "/"), timeout=5)
                return answer.status_code == 200 and answer.json()["name"] == marker
            wait_until(served, 240, lambda: "lucky watch to serve the edit:\n" + dev_stack.logs())
        finally:
            target.write_text(original)


def test_script_test_runs_the_real_specs(dev_stack):
    """script/test runs `crystal spec` in the lucky image against a test database, and it passes."""
    result = dev_stack.script("test", timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.search(r"\b(\d+) examples, 0 failures, 0 errors", output), output
    assert "✔ All done." in result.stdout


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
    """With the database URL Hasura gets broken, script/up fails and says which service."""
    stack = make_stack(tmp_path)
    compose = stack.project / "Docker/docker-compose.yml"
    text = compose.read_text()
    broken = "HASURA_GRAPHQL_DATABASE_URL: postgres://${POSTGRES_USER}:${POSTGRES_PASSWORD}@nowhere:5432/${POSTGRES_DB}"
    compose.write_text(text.replace(
        "HASURA_GRAPHQL_DATABASE_URL: postgres://${POSTGRES_USER}:${POSTGRES_PASSWORD}@postgres:5432/${POSTGRES_DB}", broken))
    assert broken in compose.read_text()
    try:
        result = stack.up(UP_TIMEOUT="120")
        output = result.stdout + result.stderr
        assert result.returncode != 0, output
        assert "hasura" in output.lower(), output
        assert "All done" not in output
        rows = [json.loads(line) for line in stack.compose("ps", "-a", "--format", "json").stdout.splitlines() if line]
        hasura = [r for r in rows if r["Service"] == "hasura"]
        assert hasura and hasura[0]["Health"] != "healthy"
    finally:
        stack.down()
    assert stack.leftovers() == {"containers": [], "networks": [], "volumes": []}
