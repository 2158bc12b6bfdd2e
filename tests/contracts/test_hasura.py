"""Contract tests of the Hasura image the generated project runs.

Written against the upstream image name and the behaviour its source defines (each fact names
its hasura/graphql-engine file through harness/hasura_contract.py), so they run unchanged in
upstream mode against the official image and in local mode against the kit's Hasura double
(kit/doubles/hasura_double) on real PostgreSQL (the `database` fixtures of conftest.py).

Containers are testcontainers' (harness/containers.py): ports published on 127.0.0.1 only,
readiness from wait strategies or harness.wait.until, the container's logs in every failure.
GraphQL goes through gql (harness/graphql_client.py); the other Hasura endpoints through requests.
"""

import json
import shutil

import pytest
import requests
from testcontainers.core.wait_strategies import HttpWaitStrategy

from harness import graphql_client
from harness import hasura_contract as hc
from harness.containers import WithLogs, contract, execute, exit_code, logs, output, state, url
from harness.postgres import psql
from harness.report import add_to_report
from harness.wait import until
from kit.kit import PINS

HASURA = f"hasura/graphql-engine:{PINS['_hasura_version']}.cli-migrations-v3"
ADMIN = "admin-secret-for-contract-tests"
JWT_KEY = "k" * 40


# --- Hasura ------------------------------------------------------------------------
# Every assertion goes through hasura_contract.expect, which names the upstream fact
# (file and tag) a failure contradicts. The same tests run against the official image
# (upstream mode) and the double (local mode).

def hasura_env(database, **extra):
    """The generated project's auth mode: admin secret and an HS256 JWT secret, no unauthorized role."""
    env = {"HASURA_GRAPHQL_DATABASE_URL": database["url"], "HASURA_GRAPHQL_ADMIN_SECRET": ADMIN,
           "HASURA_GRAPHQL_JWT_SECRET": json.dumps({"type": "HS256", "key": JWT_KEY})}
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


def hasura_serving(timeout=120):
    """Wait strategy: /healthz answers at all (200 or 500, whatever its verdict)."""
    return HttpWaitStrategy(8080, "/healthz").for_status_code(500).with_startup_timeout(timeout).with_poll_interval(0.5)


def hasura_ok(timeout=120):
    """Wait strategy: /healthz answers 200 OK."""
    return (HttpWaitStrategy(8080, "/healthz").for_response_predicate(lambda body: body == "OK")
            .with_startup_timeout(timeout).with_poll_interval(0.5))


def serving(container):
    """True once /healthz answers at all (whatever its verdict)."""
    return requests.get(url(container, 8080, "/healthz"), timeout=3).status_code in (200, 500)


def exited(container):
    """True once the container has stopped."""
    return state(container)["Status"] == "exited"


@pytest.fixture(scope="module")
def hasura(database, default_project):
    """Hasura with the generated project's metadata, as its image bakes it."""
    volumes = [(default_project / "db/hasura/metadata", "/hasura-metadata", "ro"),
               (default_project / "db/hasura", "/hasura", "ro")]
    with contract(HASURA, env=hasura_env(database), network=database["network"], ports=[8080, 9693], volumes=volumes,
                  wait=hasura_ok()) as h:
        yield h
def ask(hasura, query, headers=None):
    """Hasura's answer to query on /v1/graphql, through gql; it answers HTTP 200 even when the body holds errors."""
    got = graphql_client.answer(url(hasura, 8080, "/v1/graphql"), query, headers)
    hc.expect(hc.GRAPHQL_STATUS, got.statuses == [200], (got.statuses, got.body()))
    return got


def metadata_call(hasura, kind, args=None, secret=ADMIN):
    """POST {type, args} to /v1/metadata (with the admin secret unless secret is None)."""
    headers = {"X-Hasura-Admin-Secret": secret} if secret else {}
    return requests.post(url(hasura, 8080, "/v1/metadata"), json={"type": kind, "args": args or {}},
                         headers=headers, timeout=10)


def set_migration_mode(hasura, value):
    """Write cli_state.settings.migration_mode through the catalog state API, as the CLI does."""
    state_now = metadata_call(hasura, "get_catalog_state").json().get("cli_state") or {}
    state_now.setdefault("settings", {})["migration_mode"] = value
    assert metadata_call(hasura, "set_catalog_state", {"type": "cli", "state": state_now}).status_code == 200


def test_hasura_healthz(hasura):
    """/healthz answers OK, and strict mode agrees when metadata is consistent."""
    answer = requests.get(url(hasura, 8080, "/healthz?strict=true"), timeout=5)
    hc.expect(hc.HEALTHZ, (answer.status_code, answer.text) == (200, "OK"), (answer.status_code, answer.text))


ANONYMOUS = {
    "admin-secret-only": ({"HASURA_GRAPHQL_JWT_SECRET": None}, hc.ADMIN_SECRET_ONLY,
                          ("access-denied", '"x-hasura-admin-secret"/"x-hasura-access-key" required, but not found')),
    "admin-secret-and-jwt": ({}, hc.JWT_NO_HEADER,
                             ("invalid-headers", "Missing 'Authorization' or 'Cookie' header in JWT authentication mode")),
    "unauthorized-role": ({"HASURA_GRAPHQL_UNAUTHORIZED_ROLE": "anonymous"}, hc.UNAUTHORIZED_ROLE,
                          ("validation-failed", "field 'notes' not found in type: 'query_root'")),
}


@pytest.mark.parametrize("mode", list(ANONYMOUS))
def test_hasura_anonymous_request_per_auth_mode(database, default_project, mode):
    """A request without credentials gets what the auth mode decides (the project uses admin-secret-and-jwt)."""
    extra, fact, wanted = ANONYMOUS[mode]
    volumes = [(default_project / "db/hasura/metadata", "/hasura-metadata", "ro")]
    with contract(HASURA, env=hasura_env(database, **extra), network=database["network"], ports=[8080], volumes=volumes,
                  wait=hasura_serving()) as h:
        got = ask(h, "{ notes { title } }").first_error()
        hc.expect(fact, got == wanted, got)


def test_hasura_queries_tracked_table_as_admin(hasura):
    """A query on the tracked table returns the rows from PostgreSQL."""
    data = ask(hasura, "{ notes(order_by: [{title: asc}]) { title published } }", {"x-hasura-admin-secret": ADMIN}).body()
    hc.expect(hc.ROLE_PERMISSIONS, data == {"data": {"notes": [{"title": "draft", "published": False},
                                                               {"title": "public one", "published": True}]}}, data)


def test_hasura_unknown_field_is_validation_failed(hasura):
    """An unknown root field is validation-failed with Hasura's message."""
    got = ask(hasura, "{ no_such_table { id } }", {"x-hasura-admin-secret": ADMIN}).first_error()
    hc.expect(hc.UNKNOWN_FIELD, got == ("validation-failed", "field 'no_such_table' not found in type: 'query_root'"),
              got)


def jwt_token(claims):
    """An HS256 JWT of claims signed with JWT_KEY."""
    return graphql_client.hs256_jwt(JWT_KEY, claims)


@pytest.fixture(scope="module")
def hasura_production(database, default_project):
    """Hasura with the project's metadata and production's API set and CORS list (only the graphql API here, so
    also the metadata API is off: the image must still apply the metadata at start)."""
    volumes = [(default_project / "db/hasura/metadata", "/hasura-metadata", "ro")]
    env = hasura_env(database, HASURA_GRAPHQL_ENABLED_APIS="graphql", HASURA_GRAPHQL_ENABLE_TELEMETRY="false",
                     HASURA_GRAPHQL_CORS_DOMAIN="https://example.com, https://*.example.com")
    with contract(HASURA, env=env, network=database["network"], ports=[8080], volumes=volumes, wait=hasura_ok()) as h:
        yield h


def test_hasura_disabled_apis_are_not_found_and_metadata_still_applies(hasura_production):
    """With HASURA_GRAPHQL_ENABLED_APIS=graphql the metadata and schema APIs answer 404 not-found, while GraphQL
    serves the tracked table: the entrypoint's temporary server applied the metadata anyway."""
    data = ask(hasura_production, "{ notes { title } }", {"x-hasura-admin-secret": ADMIN}).body()
    hc.expect(hc.TEMPORARY_SERVER_APIS, "data" in data and len(data["data"]["notes"]) == 2, data)
    for method, path, body in (("POST", "/v1/metadata", {"type": "export_metadata", "args": {}}),
                               ("POST", "/v2/query", {"type": "run_sql", "args": {"sql": "SELECT 1"}}),
                               ("GET", "/v1alpha1/config", None)):
        got = requests.request(method, url(hasura_production, 8080, path), json=body, timeout=10,
                               headers={"X-Hasura-Admin-Secret": ADMIN})
        hc.expect(hc.DISABLED_API, (got.status_code, got.json()) == (404, {
            "error": "resource does not exist", "path": "$", "code": "not-found"}), (path, got.status_code, got.text))


def test_hasura_config_api_is_on_by_default_for_admins(hasura):
    """With the default API set the config API answers an admin (and says an admin secret and a JWT are set)."""
    got = requests.get(url(hasura, 8080, "/v1alpha1/config"), headers={"X-Hasura-Admin-Secret": ADMIN}, timeout=10)
    hc.expect(hc.ENABLED_APIS_VALUES, got.status_code == 200 and got.json()["is_admin_secret_set"] is True and
              got.json()["is_jwt_set"] is True, (got.status_code, got.text))


@pytest.mark.parametrize("origin, allowed", [("https://www.example.com", True), ("https://example.com", True),
                                             ("https://a.b.example.com", False), ("http://www.example.com", False),
                                             ("https://evil.test", False)])
def test_hasura_cors_echoes_only_listed_origins(hasura_production, origin, allowed):
    """An Origin HASURA_GRAPHQL_CORS_DOMAIN lists is echoed with credentials allowed; any other gets no CORS
    header and the usual answer."""
    got = requests.post(url(hasura_production, 8080, "/v1/graphql"), json={"query": "{ notes { title } }"},
                        headers={"X-Hasura-Admin-Secret": ADMIN, "Origin": origin}, timeout=10)
    echoed = got.headers.get("Access-Control-Allow-Origin")
    fact = hc.CORS_ALLOWED if allowed else hc.CORS_REFUSED
    hc.expect(fact, got.status_code == 200 and (echoed == origin) is allowed and
              (got.headers.get("Access-Control-Allow-Credentials") == "true") is allowed,
              (got.status_code, dict(got.headers)))


def test_hasura_user_role_sees_published_only(hasura):
    """The template's `user` permission filters to published rows."""
    token = jwt_token(graphql_client.user_claims())
    data = ask(hasura, "{ notes { title } }", {"Authorization": f"Bearer {token}"}).body()
    hc.expect(hc.ROLE_PERMISSIONS, data == {"data": {"notes": [{"title": "public one"}]}}, data)


def test_hasura_metadata_and_schema_api(hasura):
    """export_metadata lists the tracked table; run_sql runs SQL; both need credentials."""
    meta = metadata_call(hasura, "export_metadata")
    assert meta.status_code == 200, meta.text
    tables = [t["table"] for s in meta.json()["sources"] for t in s["tables"]]
    assert {"schema": "public", "name": "notes"} in tables
    denied = metadata_call(hasura, "export_metadata", secret=None)
    hc.expect(hc.METADATA_API_DENIED, (denied.status_code, denied.json().get("code")) == (400, "invalid-headers"),
              (denied.status_code, denied.text))
    result = requests.post(url(hasura, 8080, "/v2/query"), headers={"X-Hasura-Admin-Secret": ADMIN}, timeout=10,
                           json={"type": "run_sql", "args": {"source": "default", "sql": "SELECT count(*) FROM notes"}})
    assert result.status_code == 200 and result.json()["result"][1] == ["2"], result.text


def test_hasura_console_migration_mode(hasura, database):
    """hasura-cli console's API: migration mode on by default, PUT turns it off, writes are refused, state in cli_state."""
    execute(hasura, "sh", "-c", "hasura-cli console --project /hasura --no-browser --skip-update-check --address 0.0.0.0 "
            f"--api-port 9693 --console-port 9695 --endpoint http://127.0.0.1:8080 --admin-secret {ADMIN} "
            ">/tmp/console.log 2>&1 &")
    settings = url(hasura, 9693, "/apis/migrate/settings")
    try:
        first = until(lambda: requests.get(settings, timeout=3).json(), 60,
                      lambda: f"the console API\n{execute(hasura, 'cat', '/tmp/console.log', check=False).stdout}")
        hc.expect(hc.CONSOLE_SETTINGS, first == {"migration_mode": "true"}, first)
        put = requests.put(settings, json={"name": "migration_mode", "value": "false"}, timeout=5)
        hc.expect(hc.CONSOLE_SETTINGS, (put.status_code, put.json()) == (200, {"message": "Successfuly set"}), put.text)
        now = requests.get(settings, timeout=5).json()
        hc.expect(hc.CONSOLE_SETTINGS, now == {"migration_mode": "false"}, now)
        bad = requests.put(settings, data="not json", timeout=5)
        hc.expect(hc.CONSOLE_SETTINGS, (bad.status_code, bad.json().get("code")) == (500, "internal_error"), bad.text)
        other = requests.delete(settings, timeout=5)
        hc.expect(hc.CONSOLE_SETTINGS, (other.status_code, other.json()) == (405, {"message": "Method not allowed"}),
                  other.text)
        migrate = url(hasura, 9693, "/apis/migrate")
        nameless = requests.post(migrate, json={"name": "x", "up": []}, timeout=5)
        hc.expect(hc.CONSOLE_MIGRATE, (nameless.status_code, nameless.json()) ==
                  (500, {"code": "internal_error", "message": "datasource key not found in body"}), nameless.text)
        step = {"type": "pg_track_table", "args": {"source": "default", "table": {"schema": "public", "name": "notes"}}}
        refused = requests.post(migrate, json={"name": "x", "datasource": "default", "up": [step], "down": []}, timeout=5)
        hc.expect(hc.CONSOLE_MIGRATE, (refused.status_code, refused.json().get("code")) == (400, "migration_mode_disabled"),
                  refused.text)
        cli_state = metadata_call(hasura, "get_catalog_state").json().get("cli_state") or {}
        legacy = psql(database["pg"], "app", "SELECT to_regclass('hdb_catalog.schema_migrations') IS NULL",
                      tuples=True).stdout.strip()
        hc.expect(hc.CLI_STATE, (cli_state.get("settings", {}).get("migration_mode"), legacy) == ("false", "t"),
                  (cli_state, legacy))
    finally:
        set_migration_mode(hasura, "true")


def test_hasura_entrypoint_applies_migrations_into_cli_state(fresh_database, default_project, tmp_path):
    """With a migrations directory the entrypoint applies it after metadata and records it in cli_state, not schema_migrations."""
    up = tmp_path / "migrations/default/1700000000000_probe/up.sql"
    up.parent.mkdir(parents=True)
    up.write_text("CREATE TABLE entrypoint_probe (id int);\n")
    volumes = [(default_project / "db/hasura/metadata", "/hasura-metadata", "ro"),
               (tmp_path / "migrations", "/hasura-migrations", "ro")]
    with contract(HASURA, env=hasura_env(fresh_database), network=fresh_database["network"], ports=[8080],
                  volumes=volumes, wait=hasura_serving()) as h:
        lines = output(h)
        cli_state = metadata_call(h, "get_catalog_state").json().get("cli_state") or {}
    legacy = psql(fresh_database["pg"], fresh_database["name"], "SELECT to_regclass('hdb_catalog.schema_migrations') IS NULL",
                  tuples=True).stdout.strip()
    order = lines.find("applying metadata"), lines.find("applying migrations")
    hc.expect(hc.ENTRYPOINT_ORDER, 0 <= order[0] < order[1], lines)
    applied = (cli_state.get("migrations") or {}).get("default", {})
    hc.expect(hc.CLI_STATE, "1700000000000" in applied and legacy == "t", (cli_state, legacy))


def test_hasura_entrypoint_stops_when_migration_mode_is_off(fresh_database, default_project, tmp_path):
    """A /hasura-migrations directory makes the entrypoint stop once migration mode is off (why the project ships none)."""
    metadata = (default_project / "db/hasura/metadata", "/hasura-metadata", "ro")
    with contract(HASURA, env=hasura_env(fresh_database), network=fresh_database["network"], ports=[8080],
                  volumes=[metadata], wait=hasura_serving()) as first:
        set_migration_mode(first, "false")
    (tmp_path / "migrations/default").mkdir(parents=True)
    volumes = [metadata, (tmp_path / "migrations", "/hasura-migrations", "ro")]
    with contract(HASURA, env=hasura_env(fresh_database), network=fresh_database["network"], volumes=volumes) as h:
        code = exit_code(h, 180)
        hc.expect(hc.MIGRATION_MODE_OFF, code != 0, (code, logs(h)))


@pytest.mark.parametrize("broken", ["wrong-host", "wrong-password"])
def test_hasura_fails_on_bad_database_url(database, default_project, broken):
    """With a wrong database URL Hasura never serves: the entrypoint gives up on its temporary server's port."""
    database_url = {"wrong-host": "postgres://app:pw@no-such-host:5432/app",
                    "wrong-password": database["url"].replace(":pw@", ":nope@")}[broken]
    env = hasura_env(database, HASURA_GRAPHQL_DATABASE_URL=database_url, HASURA_GRAPHQL_MIGRATIONS_SERVER_PORT="9797",
                     HASURA_GRAPHQL_MIGRATIONS_SERVER_TIMEOUT="10")
    volumes = [(default_project / "db/hasura/metadata", "/hasura-metadata", "ro")]
    with contract(HASURA, env=env, network=database["network"], volumes=volumes) as h:
        code = exit_code(h, 120)
        hc.expect(hc.BAD_DATABASE, code != 0, (code, logs(h)))
        hc.expect(hc.ENTRYPOINT_TIMEOUT, "9797" in logs(h, tail=200), logs(h))


def copy_metadata(default_project, tmp_path):
    """A writable copy of the project's Hasura metadata."""
    meta = tmp_path / "metadata"
    shutil.copytree(default_project / "db/hasura/metadata", meta)
    return meta


def healthcheck(container):
    """The generated project's own healthcheck, run inside the container."""
    return execute(container, "sh", "/usr/local/bin/hasura_healthcheck", check=False).returncode


def test_hasura_inconsistent_metadata_is_never_healthy(fresh_database, tmp_path, default_project, request):
    """Metadata tracking a missing table: it stops with a non-zero exit code, or it serves with strict /healthz 500
    and the project's healthcheck fails. Upstream has both behaviours, so either passes, each on its own assertions;
    which one ran goes into the run's report, so a run that only ever takes one branch shows it."""
    meta = copy_metadata(default_project, tmp_path)
    table = meta / "databases/default/tables/public_notes.yaml"
    table.write_text(table.read_text().replace("name: notes", "name: no_such_table"))
    check = default_project / "script/docker/hasura_healthcheck"
    volumes = [(meta, "/hasura-metadata", "ro"), (check, "/usr/local/bin/hasura_healthcheck", "ro")]
    with contract(HASURA, env=hasura_env(fresh_database), network=fresh_database["network"], ports=[8080],
                  volumes=volumes) as h:
        outcome = until(lambda: "exited" if exited(h) else serving(h) and "serving", 180,
                        lambda: f"hasura to serve or stop\n{logs(h, tail=60)}")
        if outcome == "exited":  # packaging/cli-migrations/v3/test/test.sh's expectation: it never comes up
            code = exit_code(h, 10)
            add_to_report(request.config, [f"Hasura with inconsistent metadata stopped (exit code {code}): "
                                            "packaging/cli-migrations/v3/test/test.sh's expectation; the /healthz "
                                            "branch did not run"])
            hc.expect(hc.INCONSISTENT_METADATA, code != 0, (code, logs(h, tail=60)))
        else:
            add_to_report(request.config, ["Hasura with inconsistent metadata served: /healthz, /healthz?strict=true "
                                           "and the project's healthcheck checked; the stopped branch did not run"])
            strict = requests.get(url(h, 8080, "/healthz?strict=true"), timeout=5)
            plain = requests.get(url(h, 8080, "/healthz"), timeout=5)
            got = (plain.status_code, plain.text, strict.status_code, strict.text)
            hc.expect(hc.HEALTHZ, got == (200, "WARN: inconsistent objects in schema",
                                          500, "ERROR: inconsistent objects in schema"), got)
            hc.expect(hc.INCONSISTENT_METADATA, healthcheck(h) != 0, "the project's healthcheck passed")


def test_hasura_healthcheck_recovers_once_the_table_exists(fresh_database, tmp_path, default_project):
    """Metadata that names a table created later (first deploy) becomes healthy once the table exists."""
    meta = copy_metadata(default_project, tmp_path)
    table = meta / "databases/default/tables/public_notes.yaml"
    table.write_text(table.read_text().replace("name: notes", "name: created_later"))
    check = default_project / "script/docker/hasura_healthcheck"
    volumes = [(meta, "/hasura-metadata", "ro"), (check, "/usr/local/bin/hasura_healthcheck", "ro")]
    with contract(HASURA, env=hasura_env(fresh_database), network=fresh_database["network"], ports=[8080],
                  volumes=volumes) as h:
        until(lambda: exited(h) or serving(h), 180, lambda: logs(h, tail=60))
        psql(fresh_database["pg"], fresh_database["name"], "CREATE TABLE created_later (LIKE notes INCLUDING ALL)")
        if exited(h):
            h.get_wrapped_container().start()  # what a restart policy or swarm does
            WithLogs(hasura_serving()).wait_until_ready(h)
        until(lambda: healthcheck(h) == 0, 60, lambda: f"the project's healthcheck to pass\n{logs(h, tail=60)}")
        assert healthcheck(h) == 0


UNREADABLE = {
    "missing-include": lambda meta: (meta / "databases/default/tables/tables.yaml").write_text(
        '- "!include public_missing.yaml"\n'),
    "broken-yaml": lambda meta: (meta / "databases/default/tables/public_notes.yaml").write_text("table: [unclosed\n"),
    "action-not-in-sdl": lambda meta: (meta / "actions.yaml").write_text(
        "actions:\n  - name: ghost\n    definition:\n      kind: synchronous\n      handler: http://lucky:5000/ghost\n"
        "custom_types: {}\n"),
    "allow-list-not-a-list": lambda meta: (meta / "allow_list.yaml").write_text("collection: nope\n"),
}


@pytest.mark.parametrize("broken", list(UNREADABLE))
def test_hasura_refuses_unreadable_metadata(database, tmp_path, default_project, broken):
    """Metadata the CLI cannot build or the server cannot parse stops the container with 'error applying metadata'."""
    meta = copy_metadata(default_project, tmp_path)
    UNREADABLE[broken](meta)
    with contract(HASURA, env=hasura_env(database), network=database["network"],
                  volumes=[(meta, "/hasura-metadata", "ro")]) as h:
        code = exit_code(h, 180)
        text = logs(h, tail=200)
        hc.expect(hc.UNREADABLE_METADATA, code != 0 and "error applying metadata" in text, (code, text))

