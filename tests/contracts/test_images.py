"""Contract tests of the images the generated project runs besides Hasura (tests/contracts/test_hasura.py).

Written against the upstream image names and the behaviour their sources define, so they run
unchanged in upstream mode against the official images, and in local mode against the kit (real
PostgreSQL, Traefik, HAProxy, Prometheus, and the real Lucky build).

Containers are testcontainers' (harness/containers.py): ports published on 127.0.0.1 only,
readiness from wait strategies or harness.wait.until, the container's logs in every failure.
"""

import struct
import time

import pytest
import requests
from testcontainers.core.wait_strategies import (
    ExecWaitStrategy,
    HealthcheckWaitStrategy,
    HttpWaitStrategy,
)

from harness.containers import LOOPBACK, address, contract, execute, exit_code, logs, published, run_once, state, url
from harness.docker import docker, package_files, release_build
from harness.postgres import fetch_one, pg_ready, psql
from harness.proc import run
from harness.wait import until
from kit.kit import PINS

POSTGRES = f"postgres:{PINS['_postgres_version']}"
TRAEFIK = f"traefik:{PINS['_traefik_version']}"
PROXY = f"tecnativa/docker-socket-proxy:{PINS['_socket_proxy_version']}"


# --- PostgreSQL -------------------------------------------------------------------

def test_postgres_env_contract(image_mode, tmp_path):
    """POSTGRES_USER/_DB, POSTGRES_PASSWORD_FILE, initdb.d scripts and the PG18 data path."""
    (tmp_path / "pw").write_text("file-password\n")
    (tmp_path / "init").mkdir()
    (tmp_path / "init/10-extra.sql").write_text("CREATE TABLE from_initdb (id int);")
    env = {"POSTGRES_USER": "app", "POSTGRES_DB": "app", "POSTGRES_PASSWORD_FILE": "/run/pw"}
    volumes = [(tmp_path / "pw", "/run/pw", "ro"), (tmp_path / "init", "/docker-entrypoint-initdb.d", "ro")]
    with contract(POSTGRES, env=env, ports=[5432], volumes=volumes, wait=pg_ready()) as pg:
        dsn = f"postgresql://app:file-password@{address(pg, 5432)}/app"
        rows = until(lambda: fetch_one(dsn, "SELECT current_user, to_regclass('from_initdb')::text, "
                                            "current_setting('data_directory')"), 30, "a password login over TCP")
        assert rows[0] == "app" and rows[1] == "from_initdb"
        assert rows[2] == f"/var/lib/postgresql/{PINS['_postgres_version'].split('.')[0]}/docker"


def test_postgres_refuses_to_start_without_password(image_mode):
    """An uninitialised database without a superuser password exits with a clear error."""
    # No LogMessageWaitStrategy: it reads the logs, then the status, so a container that prints the line and exits
    # between the two reads is reported as "exited before emitting" (testcontainers wait_strategies.py; CI, stop 39).
    with contract(POSTGRES) as pg:
        assert exit_code(pg, 60) != 0
        assert "superuser password is not specified" in logs(pg)


def test_contract_ports_are_published_on_loopback_only(image_mode):
    """A contract container's published port is bound to 127.0.0.1 alone (`docker port`), and answers there."""
    ping = HttpWaitStrategy(8080, "/ping").with_startup_timeout(30).with_poll_interval(0.5)
    with contract(TRAEFIK, "--ping=true", "--entrypoints.traefik.address=:8080", ports=[8080], wait=ping) as t:
        assert published(t) == [f"8080/tcp -> {address(t, 8080)}"]
        assert address(t, 8080).startswith(f"{LOOPBACK}:")
        assert requests.get(url(t, 8080, "/ping"), timeout=5).text == "OK"


# --- the Lucky image, built by the project's own script/build ---------------------

@pytest.fixture(scope="module")
def lucky_image(image_mode, default_project):
    """script/build's production image of the rendered project, tagged 0000beef."""
    with release_build():
        run([default_project / "script/build", "0000beef"], timeout=3600)
    registry = "registry.gitlab.com/my-group/lhd-app"
    yield f"{registry}/lucky:0000beef"
    for image in ("lucky", "lucky-base", "hasura"):
        docker("rmi", "-f", f"{registry}/{image}:0000beef", check=False)


def test_lucky_image_keeps_no_package_files(lucky_image):
    """The release image carries no package manager files: its runtime stage's `apk add --no-cache` (in local
    mode, the kit's apk shim on apt) keeps no fetched packages, caches or lists (they were 150 MB of 569)."""
    assert package_files(lucky_image) == []


def lucky_env(database, **extra):
    """Production settings for the Lucky image, its database on the test network."""
    env = {"LUCKY_ENV": "production", "PORT": "5000", "SECRET_KEY_BASE": "s" * 64, "APP_DOMAIN": "example.com",
           "SEND_GRID_KEY": "unused", "DATABASE_URL": database["url"].rsplit("/", 1)[0] + "/lucky_contract"}
    env.update(extra)
    return env


def healthy(timeout):
    """Wait strategy: the image's own HEALTHCHECK reports healthy."""
    return HealthcheckWaitStrategy().with_startup_timeout(timeout).with_poll_interval(0.5)


@pytest.mark.parametrize("missing", ["SECRET_KEY_BASE", "DATABASE_URL", "PORT", "APP_DOMAIN"])
def test_lucky_refuses_to_start_without_required_env(lucky_image, database, missing):
    """In production the app exits naming a missing (empty) variable."""
    env = lucky_env(database, **{missing: ""})
    with contract(lucky_image, env=env, network=database["network"]) as app:
        assert exit_code(app, 60) != 0
        assert missing in logs(app)


def test_lucky_serves_version_and_is_healthy(lucky_image, database):
    """/version reports APP_VERSION (the commit SHA); the image's healthcheck passes; it runs as non-root."""
    with contract(lucky_image, env=lucky_env(database), network=database["network"], ports=[5000],
                  wait=healthy(90)) as app:
        assert state(app)["Health"]["Status"] == "healthy"
        assert requests.get(url(app, 5000, "/version"), timeout=5).json()["version"] == "0000beef"
        assert execute(app, "id", "-u").stdout.strip() == "10001"


def test_lucky_task_runner_bookkeeping(lucky_image, database):
    """db.create, db.migrate, seeds and db.rollback_to keep Avram's migrations table in real PostgreSQL."""
    env = lucky_env(database)

    def task(*args):
        return run_once(lucky_image, *args, env=env, network=database["network"], timeout=300)

    task("lucky_tasks", "db.create")
    task("lucky_tasks", "db.migrate")
    task("lucky_tasks", "db.seed.sample_data")
    versions = task("cat", "/app/db/migration_versions").stdout.split()
    assert versions == ["20250101000000"]

    def query(sql):
        return psql(database["pg"], "lucky_contract", sql, tuples=True).stdout.strip()

    assert query("SELECT version FROM migrations") == "20250101000000"
    assert int(query("SELECT count(*) FROM notes WHERE published")) >= 1
    task("lucky_tasks", "db.rollback_to", "20240101000000")
    assert query("SELECT count(*) FROM migrations") == "0"
    assert query("SELECT to_regclass('notes') IS NULL") == "t"


def program_headers(elf):
    """The p_type of every program header of a 64-bit little-endian ELF file (bytes)."""
    assert elf[:4] == b"\x7fELF" and elf[4] == 2, "not a 64-bit ELF executable"
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    return [struct.unpack_from("<I", elf, phoff + i * phentsize)[0] for i in range(phnum)]


@pytest.mark.parametrize("binary", ["/app/bin/server", "/usr/local/bin/lucky_tasks", "/usr/local/bin/healthcheck"])
def test_lucky_image_binaries_are_static(lucky_image, tmp_path, binary):
    """Each binary is a real ELF executable with no program interpreter (PT_INTERP = 3): fully static."""
    with contract(lucky_image, "-f", "/dev/null", entrypoint="tail") as box:  # tail keeps it up for the copy
        box.copy_from_container(binary, tmp_path / "binary")
    assert 3 not in program_headers((tmp_path / "binary").read_bytes())


def test_lucky_healthcheck_fails_when_nothing_answers(lucky_image):
    """The healthcheck binary exits 1 when the app does not answer on PORT."""
    result = run_once(lucky_image, env={"PORT": "5999"}, entrypoint="healthcheck", timeout=60, check=False)
    assert result.returncode == 1 and "healthcheck:" in result.stderr


def test_lucky_keeps_serving_for_shutdown_delay(lucky_image, database):
    """After SIGTERM the app answers for SHUTDOWN_DELAY seconds, then exits 0 (rolling updates drain)."""
    env = lucky_env(database, SHUTDOWN_DELAY="4")
    with contract(lucky_image, env=env, network=database["network"], ports=[5000], wait=healthy(90)) as app:
        version = url(app, 5000, "/version")
        app.get_wrapped_container().kill(signal="SIGTERM")
        stopped_at = time.monotonic()
        assert requests.get(version, timeout=5).status_code == 200
        assert state(app)["Running"], "the app stopped before its shutdown delay"
        assert exit_code(app, 30) == 0
        assert time.monotonic() - stopped_at >= 3


# --- socket proxy, Traefik, Prometheus ------------------------------------------------

def test_socket_proxy_allows_only_configured_reads(image_mode):
    """GET on allowed sections passes; POST and disallowed sections get 403."""
    env = {"SERVICES": "1", "TASKS": "1", "NETWORKS": "1", "POST": "0"}
    sock = ("/var/run/docker.sock", "/var/run/docker.sock", "ro")
    ready = HttpWaitStrategy(2375, "/version").with_startup_timeout(30).with_poll_interval(0.5)
    with contract(PROXY, env=env, ports=[2375], volumes=[sock], wait=ready) as proxy:
        version = requests.get(url(proxy, 2375, "/version"), timeout=5)
        assert version.status_code == 200 and "ApiVersion" in version.json()
        assert requests.get(url(proxy, 2375, "/v1.41/networks"), timeout=5).status_code == 200
        assert requests.get(url(proxy, 2375, "/containers/json"), timeout=5).status_code == 403
        assert requests.post(url(proxy, 2375, "/containers/create"), json={"Image": "x"}, timeout=5).status_code == 403
        assert requests.post(url(proxy, 2375, "/v1.41/networks/create"), json={"Name": "x"}, timeout=5).status_code == 403


def test_traefik_binary_version_and_ping(image_mode):
    """The image runs Traefik at the pinned version; `traefik healthcheck --ping` works."""
    out = run_once(TRAEFIK, "version", timeout=60).stdout
    assert PINS["_traefik_version"].lstrip("v") in out
    ping = ExecWaitStrategy(["traefik", "healthcheck", "--ping"]).with_startup_timeout(30).with_poll_interval(0.5)
    with contract(TRAEFIK, "--ping=true", "--entrypoints.traefik.address=:8080", wait=ping) as t:
        assert execute(t, "traefik", "healthcheck", "--ping", check=False).returncode == 0


MONITORING = {
    "prometheus": (f"prom/prometheus:{PINS['_prometheus_version']}", 9090, "/-/healthy",
                   [("Docker/prometheus-swarm/prometheus/prometheus.yml", "/etc/prometheus/prometheus.yml")],
                   ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/tmp/prom"]),
    "alertmanager": (f"prom/alertmanager:{PINS['_alertmanager_version']}", 9093, "/-/healthy",
                     [("Docker/prometheus-swarm/alertmanager/alertmanager.yml", "/etc/alertmanager/alertmanager.yml")],
                     ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/tmp/am"]),
    "node-exporter": (f"prom/node-exporter:{PINS['_node_exporter_version']}", 9100, "/metrics", [], []),
}


@pytest.mark.parametrize("name", list(MONITORING))
def test_prometheus_family_serves(image_mode, default_project, name):
    """Each monitoring image serves its health/metrics endpoint and has wget for the healthcheck."""
    image, port, path, configs, args = MONITORING[name]
    volumes = [(default_project / source, target, "ro") for source, target in configs]
    ready = HttpWaitStrategy(port, path).with_startup_timeout(60).with_poll_interval(0.5)
    with contract(image, *args, ports=[port], volumes=volumes, wait=ready) as c:
        assert requests.get(url(c, port, path), timeout=5).status_code == 200
        assert execute(c, "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{port}{path}", check=False).returncode == 0
