"""Contract tests of the images the generated project runs.

Written against the upstream image names and documented behaviour
(../shared/contracts.md), so they run unchanged in upstream mode against the
official images, and in local mode against the kit (real PostgreSQL, Traefik,
HAProxy, Prometheus; Hasura and Lucky doubles).
"""

import json
import subprocess

import psycopg
import pytest
import requests

from tests.dockerlib import Container, Network, docker, unique, wait_until
from tests.images.kit import PINS

pytestmark = pytest.mark.docker

POSTGRES = f"postgres:{PINS['postgres_version']}"
HASURA = f"hasura/graphql-engine:{PINS['hasura_version']}.cli-migrations-v3"
TRAEFIK = f"traefik:{PINS['traefik_version']}"
PROXY = f"tecnativa/docker-socket-proxy:{PINS['socket_proxy_version']}"
ADMIN = "admin-secret-for-contract-tests"
JWT_KEY = "k" * 40
NOTES_SQL = """
CREATE TABLE notes (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(), title text NOT NULL, body text NOT NULL DEFAULT '',
  published boolean NOT NULL DEFAULT false);
INSERT INTO notes (title, body, published) VALUES ('public one', 'a', true), ('draft', 'b', false);
"""


def pg_ready(container, user="app", db="app"):
    return container.exec("pg_isready", "-h", "127.0.0.1", "-U", user, "-d", db, check=False).returncode == 0


# --- PostgreSQL -------------------------------------------------------------------

def test_postgres_env_contract(image_mode, tmp_path):
    """POSTGRES_USER/_DB, POSTGRES_PASSWORD_FILE, initdb.d scripts and the PG18 data path."""
    (tmp_path / "pw").write_text("file-password\n")
    (tmp_path / "init").mkdir()
    (tmp_path / "init/10-extra.sql").write_text("CREATE TABLE from_initdb (id int);")
    with Container(POSTGRES, env={"POSTGRES_USER": "app", "POSTGRES_DB": "app", "POSTGRES_PASSWORD_FILE": "/run/pw"},
                   ports=[5432], volumes=[f"{tmp_path}/pw:/run/pw:ro", f"{tmp_path}/init:/docker-entrypoint-initdb.d:ro"]) as pg:
        wait_until(lambda: pg_ready(pg), 60, "postgres to accept connections")
        url = f"postgresql://app:file-password@127.0.0.1:{pg.ports[5432]}/app"
        rows = wait_until(lambda: psycopg.connect(url, connect_timeout=3).execute(
            "SELECT current_user, to_regclass('from_initdb')::text, current_setting('data_directory')").fetchone(),
            30, "a password login over TCP")
        assert rows[0] == "app" and rows[1] == "from_initdb"
        assert rows[2] == f"/var/lib/postgresql/{PINS['postgres_version'].split('.')[0]}/docker"


def test_postgres_refuses_to_start_without_password(image_mode):
    """An uninitialised database without a superuser password exits with a clear error."""
    with Container(POSTGRES) as pg:
        assert pg.wait_exit(60) != 0
        assert "superuser password is not specified" in pg.logs()


# --- Hasura ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def database(image_mode):
    """A network with PostgreSQL holding the example `notes` table."""
    with Network() as net, Container(POSTGRES, name=unique("pg"), network=net,
                                     env={"POSTGRES_USER": "app", "POSTGRES_PASSWORD": "pw", "POSTGRES_DB": "app"}) as pg:
        wait_until(lambda: pg_ready(pg), 60, "postgres")
        pg.exec("psql", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "app", "-d", "app", "-c", NOTES_SQL)
        yield {"network": net, "url": f"postgres://app:pw@{pg.name}:5432/app", "pg": pg}


def hasura_env(database, **extra):
    env = {"HASURA_GRAPHQL_DATABASE_URL": database["url"], "HASURA_GRAPHQL_ADMIN_SECRET": ADMIN,
           "HASURA_GRAPHQL_JWT_SECRET": json.dumps({"type": "HS256", "key": JWT_KEY})}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def hasura(database, default_project):
    """Hasura with the generated project's metadata, as its image bakes it."""
    metadata = default_project / "db/hasura/metadata"
    with Container(HASURA, network=database["network"], env=hasura_env(database), ports=[8080, 9693],
                   volumes=[f"{metadata}:/hasura-metadata:ro", f"{default_project / 'db/hasura'}:/hasura:ro"]) as h:
        wait_until(lambda: requests.get(h.url(8080, "/healthz"), timeout=3).text == "OK", 120,
                   lambda: f"hasura /healthz\n{h.logs()}")
        yield h


def gql(hasura, query, headers=None):
    answer = requests.post(hasura.url(8080, "/v1/graphql"), json={"query": query}, headers=headers or {}, timeout=10)
    assert answer.status_code == 200  # [contracts: /v1/graphql answers 200 even for errors]
    return answer.json()


def test_hasura_healthz(hasura):
    """/healthz answers OK, and strict mode agrees when metadata is consistent."""
    assert requests.get(hasura.url(8080, "/healthz?strict=true"), timeout=5).text == "OK"


def test_hasura_requires_admin_secret(hasura):
    """Without the secret (and no unauthorized role) the answer is access-denied."""
    errors = gql(hasura, "{ notes { title } }")["errors"]
    assert errors[0]["extensions"]["code"] == "access-denied"


def test_hasura_queries_tracked_table_as_admin(hasura):
    """A query on the tracked table returns the rows from PostgreSQL."""
    data = gql(hasura, "{ notes(order_by: [{title: asc}]) { title published } }", {"x-hasura-admin-secret": ADMIN})
    assert data == {"data": {"notes": [{"title": "draft", "published": False}, {"title": "public one", "published": True}]}}


def test_hasura_unknown_field_is_validation_failed(hasura):
    errors = gql(hasura, "{ no_such_table { id } }", {"x-hasura-admin-secret": ADMIN})["errors"]
    assert errors[0]["extensions"]["code"] == "validation-failed"


def test_hasura_user_role_sees_published_only(hasura):
    """The template's `user` permission filters to published rows."""
    token = jwt_token({"https://hasura.io/jwt/claims": {"x-hasura-default-role": "user",
                                                         "x-hasura-allowed-roles": ["user"], "x-hasura-user-id": "1"}})
    data = gql(hasura, "{ notes { title } }", {"Authorization": f"Bearer {token}"})
    assert data == {"data": {"notes": [{"title": "public one"}]}}


def jwt_token(claims):
    import base64
    import hashlib
    import hmac

    def b64(raw):
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    head, body = b64(b'{"alg":"HS256","typ":"JWT"}'), b64(json.dumps(claims).encode())
    sig = b64(hmac.new(JWT_KEY.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"


def test_hasura_metadata_and_schema_api(hasura):
    """export_metadata lists the tracked table; run_sql runs SQL; both need the secret."""
    meta = requests.post(hasura.url(8080, "/v1/metadata"), json={"type": "export_metadata", "args": {}},
                         headers={"X-Hasura-Admin-Secret": ADMIN}, timeout=10)
    assert meta.status_code == 200
    tables = [t["table"] for s in meta.json()["sources"] for t in s["tables"]]
    assert {"schema": "public", "name": "notes"} in tables
    denied = requests.post(hasura.url(8080, "/v1/metadata"), json={"type": "export_metadata", "args": {}}, timeout=10)
    assert denied.status_code in (400, 401) and denied.json()["code"] == "access-denied"
    result = requests.post(hasura.url(8080, "/v2/query"), headers={"X-Hasura-Admin-Secret": ADMIN}, timeout=10,
                           json={"type": "run_sql", "args": {"source": "default", "sql": "SELECT count(*) FROM notes"}})
    assert result.status_code == 200 and result.json()["result"][1] == ["2"]


def test_hasura_console_migration_mode(hasura):
    """hasura-cli console's API: migration mode on by default, PUT turns it off, writes are refused."""
    hasura.exec("sh", "-c", "hasura-cli console --project /hasura --no-browser --skip-update-check --address 0.0.0.0 "
                f"--api-port 9693 --console-port 9695 --endpoint http://127.0.0.1:8080 --admin-secret {ADMIN} "
                ">/tmp/console.log 2>&1 &")
    settings = hasura.url(9693, "/apis/migrate/settings")
    first = wait_until(lambda: requests.get(settings, timeout=3).json(), 60, "the console API")
    assert first == {"migration_mode": "true"}
    put = requests.put(settings, json={"name": "migration_mode", "value": "false"}, timeout=5)
    assert put.status_code == 200 and put.json() == {"message": "Successfuly set"}
    assert requests.get(settings, timeout=5).json() == {"migration_mode": "false"}
    assert requests.delete(settings, timeout=5).status_code == 405
    refused = requests.post(hasura.url(9693, "/apis/migrate"), json={}, timeout=5)
    assert refused.status_code == 400 and refused.json()["code"] == "migration_mode_disabled"


@pytest.mark.parametrize("broken", ["wrong-host", "wrong-password"])
def test_hasura_fails_on_bad_database_url(database, default_project, broken):
    """With a wrong database URL Hasura never becomes healthy: it exits."""
    url = {"wrong-host": "postgres://app:pw@no-such-host:5432/app",
           "wrong-password": database["url"].replace(":pw@", ":nope@")}[broken]
    env = hasura_env(database, HASURA_GRAPHQL_DATABASE_URL=url)
    with Container(HASURA, network=database["network"], env=env,
                   volumes=[f"{default_project / 'db/hasura/metadata'}:/hasura-metadata:ro"]) as h:
        assert h.wait_exit(180) != 0, h.logs()


def test_hasura_fails_on_inconsistent_metadata(database, tmp_path, default_project):
    """Metadata tracking a missing table stops start-up."""
    import shutil
    meta = tmp_path / "metadata"
    shutil.copytree(default_project / "db/hasura/metadata", meta)
    table = meta / "databases/default/tables/public_notes.yaml"
    table.write_text(table.read_text().replace("name: notes", "name: no_such_table"))
    with Container(HASURA, network=database["network"], env=hasura_env(database), volumes=[f"{meta}:/hasura-metadata:ro"]) as h:
        assert h.wait_exit(180) != 0, h.logs()


# --- the Lucky image, built by the project's own script/build ---------------------

@pytest.fixture(scope="module")
def lucky_image(image_mode, default_project):
    """script/build's production image of the rendered project, tagged 0000beef."""
    subprocess.run([default_project / "script/build", "0000beef"], check=True, capture_output=True, text=True,
                   timeout=3600)
    registry = "registry.gitlab.com/my-group/lhd-app"
    yield f"{registry}/lucky:0000beef"
    for image in ("lucky", "lucky-base", "hasura"):
        docker("rmi", "-f", f"{registry}/{image}:0000beef", check=False)


def lucky_env(database, **extra):
    env = {"LUCKY_ENV": "production", "PORT": "5000", "SECRET_KEY_BASE": "s" * 64, "APP_DOMAIN": "example.com",
           "SEND_GRID_KEY": "unused", "DATABASE_URL": database["url"].rsplit("/", 1)[0] + "/lucky_contract"}
    env.update(extra)
    return env


@pytest.mark.parametrize("missing", ["SECRET_KEY_BASE", "DATABASE_URL", "PORT", "APP_DOMAIN"])
def test_lucky_refuses_to_start_without_required_env(lucky_image, database, missing):
    """In production the app exits naming a missing (empty) variable."""
    env = lucky_env(database, **{missing: ""})
    with Container(lucky_image, network=database["network"], env=env) as app:
        assert app.wait_exit(60) != 0
        assert missing in app.logs()


def test_lucky_serves_version_and_is_healthy(lucky_image, database):
    """/version reports APP_VERSION (the commit SHA); the image's healthcheck passes; it runs as non-root."""
    with Container(lucky_image, network=database["network"], env=lucky_env(database), ports=[5000]) as app:
        app.wait_healthy(90)
        assert requests.get(app.url(5000, "/version"), timeout=5).json()["version"] == "0000beef"
        assert app.exec("id", "-u").stdout.strip() == "10001"


def test_lucky_task_runner_bookkeeping(lucky_image, database):
    """db.create, db.migrate, seeds and db.rollback_to keep Avram's migrations table in real PostgreSQL."""
    env = lucky_env(database)
    flags = [f"-e{k}={v}" for k, v in env.items()]

    def task(*args):
        return docker("run", "--rm", "--network", database["network"], *flags, lucky_image, *args)

    task("lucky_tasks", "db.create")
    task("lucky_tasks", "db.migrate")
    task("lucky_tasks", "db.seed.sample_data")
    versions = task("cat", "/app/db/migration_versions").stdout.split()
    assert versions == ["20250101000000"]
    pg = database["pg"]

    def psql(q):
        return pg.exec("psql", "-tA", "-h", "127.0.0.1", "-U", "app", "-d", "lucky_contract", "-c", q).stdout.strip()

    assert psql("SELECT version FROM migrations") == "20250101000000"
    assert int(psql("SELECT count(*) FROM notes WHERE published")) >= 1
    task("lucky_tasks", "db.rollback_to", "20240101000000")
    assert psql("SELECT count(*) FROM migrations") == "0"
    assert psql("SELECT to_regclass('notes') IS NULL") == "t"


# --- socket proxy, Traefik, Prometheus ------------------------------------------------

def test_socket_proxy_allows_only_configured_reads(image_mode):
    """GET on allowed sections passes; POST and disallowed sections get 403."""
    env = {"SERVICES": "1", "TASKS": "1", "NETWORKS": "1", "POST": "0"}
    with Container(PROXY, env=env, ports=[2375], volumes=["/var/run/docker.sock:/var/run/docker.sock:ro"]) as proxy:
        version = wait_until(lambda: requests.get(proxy.url(2375, "/version"), timeout=3), 30, "the proxy")
        assert version.status_code == 200 and "ApiVersion" in version.json()
        assert requests.get(proxy.url(2375, "/v1.41/networks"), timeout=5).status_code == 200
        assert requests.get(proxy.url(2375, "/containers/json"), timeout=5).status_code == 403
        assert requests.post(proxy.url(2375, "/containers/create"), json={"Image": "x"}, timeout=5).status_code == 403
        assert requests.post(proxy.url(2375, "/v1.41/networks/create"), json={"Name": "x"}, timeout=5).status_code == 403


def test_traefik_binary_version_and_ping(image_mode):
    """The image runs Traefik at the pinned version; `traefik healthcheck --ping` works."""
    out = docker("run", "--rm", TRAEFIK, "version").stdout
    assert PINS["traefik_version"].lstrip("v") in out
    with Container(TRAEFIK, "--ping=true", "--entrypoints.traefik.address=:8080") as t:
        wait_until(lambda: t.exec("traefik", "healthcheck", "--ping", check=False).returncode == 0, 30, "traefik ping")


@pytest.mark.parametrize(("image", "port", "path"), [
    (f"prom/prometheus:{PINS['prometheus_version']}", 9090, "/-/healthy"),
    (f"prom/alertmanager:{PINS['alertmanager_version']}", 9093, "/-/healthy"),
    (f"prom/node-exporter:{PINS['node_exporter_version']}", 9100, "/metrics"),
], ids=["prometheus", "alertmanager", "node-exporter"])
def test_prometheus_family_serves(image_mode, image, port, path, default_project):
    """Each monitoring image serves its health/metrics endpoint and has wget for the healthcheck."""
    volumes, args = [], []
    if "prometheus:" in image:
        cfg = default_project / "Docker/prometheus-swarm/prometheus/prometheus.yml"
        volumes, args = [f"{cfg}:/etc/prometheus/prometheus.yml:ro"], ["--config.file=/etc/prometheus/prometheus.yml",
                                                                       "--storage.tsdb.path=/tmp/prom"]
    if "alertmanager:" in image:
        cfg = default_project / "Docker/prometheus-swarm/alertmanager/alertmanager.yml"
        volumes, args = [f"{cfg}:/etc/alertmanager/alertmanager.yml:ro"], [
            "--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/tmp/am"]
    with Container(image, *args, ports=[port], volumes=volumes) as c:
        wait_until(lambda: requests.get(c.url(port, path), timeout=3).status_code == 200, 60,
                   lambda: f"{image}{path}\n{c.logs()}")
        assert c.exec("wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{port}{path}", check=False).returncode == 0
