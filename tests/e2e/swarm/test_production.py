"""Production on a local swarm: the generated deploy/rollback scripts, routing,
TLS, HTTPS_SWITCH, updates without downtime, faults, monitoring, teardown.

All requests go to 127.0.0.1:80/443 with the right Host header and SNI;
TLS is verified against the throwaway CA the harness made. Each test asks
the fixtures for the state it starts from (`live`: SHA1 over HTTPS; `at(sha)`),
so any subset runs alone and in any order.
"""

import json
import socket
import ssl
from pathlib import Path

import pytest
from gql.transport.exceptions import TransportQueryError

from harness.docker import docker, unix_request
from harness.names import DEFAULT as NAMES
from harness.swarm import APP_STACK_SERVICES, BROKEN, DOMAIN, NOTES, SHA1, SHA2, STAGING_DOMAIN, V1, V2, V3
from harness.wait import until

JWT_DENIAL = "Missing 'Authorization' or 'Cookie' header in JWT authentication mode"


def order(output, first, second):
    """True when line `first` is printed before line `second`."""
    return 0 <= output.index(first) < output.index(second)


def test_first_deploy_brings_every_service_up(live):
    """script/deploy --first SHA1 ends with all done, every app service runs all its replicas, the database at V1."""
    assert "✔ All done." in live.first.stdout
    replicas = live.replicas()
    assert set(replicas) == set(APP_STACK_SERVICES)
    assert all(v.split("/")[0] == v.split("/")[1] != "0" for v in replicas.values()), replicas
    assert live.migrations() == [V1]


def test_graphql_without_credentials_is_denied(live):
    """/v1/graphql on api. reaches Hasura, which refuses a request without a JWT (no unauthorized role)."""
    denied = live.routed_graphql()
    assert isinstance(denied, TransportQueryError), denied
    assert denied.errors[0]["extensions"]["code"] == "invalid-headers", denied.errors
    assert denied.errors[0]["message"] == JWT_DENIAL, denied.errors


def test_graphql_with_a_user_jwt_reads_notes(live, surviving_note):
    """Through Traefik, a `user` JWT reads the published notes."""
    data = live.routed_graphql(user=True)
    assert {"title": surviving_note} in data["notes"]


def test_admin_secret_is_stripped_at_traefik(live):
    """A public request carrying only the admin secret reaches Hasura without it, so it is refused like an
    anonymous one; inside the stack the same secret works."""
    denied = live.routed_graphql(admin=True)
    assert isinstance(denied, TransportQueryError), denied
    assert denied.errors[0]["extensions"]["code"] == "invalid-headers", denied.errors
    assert "notes" in live.admin_graphql("{ notes { title } }")["data"]


def test_hasura_serves_only_graphql_and_metadata(live):
    """HASURA_GRAPHQL_ENABLED_APIS=metadata,graphql: the config API is not found, even for an admin inside the
    stack, while the metadata API the healthcheck uses still answers."""
    assert live.admin_api("GET", "/v1alpha1/config")["code"] == "not-found"
    assert "sources" in live.admin_api("POST", "/v1/metadata", {"type": "export_metadata", "args": {}})


@pytest.mark.parametrize("origin, allowed", [(f"https://app.{DOMAIN}", True), ("https://evil.test", False)],
                         ids=["own-origin", "other-origin"])
def test_cors_allows_only_the_apps_origins(live, origin, allowed):
    """Hasura echoes the Origin back only for the app's own domain (HASURA_GRAPHQL_CORS_DOMAIN)."""
    def asked():
        answer = live.request("POST", "api", "/v1/graphql", json={"query": "{ notes { title } }"},
                              headers={"Origin": origin, "Authorization": f"Bearer {live.user_token()}"})
        return answer.status_code == 200 and [answer]
    answer = until(asked, 60, "hasura behind Traefik")[0]
    assert (answer.headers.get("Access-Control-Allow-Origin") == origin) is allowed, dict(answer.headers)


def test_api_routes_everything_else_to_lucky(live):
    """Every path on api. other than /v1/graphql reaches Lucky."""
    assert live.version() == SHA1
    assert live.get("api", "/").json()["name"] == "lucky"


@pytest.mark.parametrize("host, path", [("api", "/version"), ("api", "/v1/graphql"), ("traefik", "/dashboard/")],
                         ids=["api-version", "api-graphql", "dashboard"])
def test_http_redirects_permanently_to_https(live, host, path):
    """Plain HTTP on port 80 answers with a permanent redirect to the same URL over HTTPS."""
    answer = live.get(host, path, scheme="http")
    assert answer.status_code in (301, 308)
    assert answer.headers["Location"] == f"https://{host}.{DOMAIN}{path}"


@pytest.mark.parametrize("login, status", [(False, 401), (True, 200)], ids=["no-login-401", "login-200"])
def test_dashboard_needs_the_login(live, login, status):
    """Traefik's dashboard answers only with the bootstrap's login."""
    auth = ("admin", live.dashboard_password) if login else None
    assert live.get("traefik", "/dashboard/", auth=auth).status_code == status


def test_unknown_host_gets_traefiks_404(live):
    """A Host no router matches gets Traefik's own 404."""
    assert live.get("nope", "/").status_code == 404


def test_routed_domain_is_read_at_deploy_time(live):
    """The same rendered project serves another domain when the server's env file says so: APP_DOMAIN, read at
    deploy time, sets Traefik's routes (and Lucky's APP_DOMAIN); the old domain is no longer routed."""
    live.set_env("APP_DOMAIN", STAGING_DOMAIN)
    try:
        live.deploy(SHA1)
        answer = live.routed_get("api", "/version", domain=STAGING_DOMAIN)
        assert answer.json()["version"] == SHA1
        assert until(lambda: live.get("api", "/version").status_code == 404, 60, f"api.{DOMAIN} to be unrouted")
        assert live.routed_get("traefik", "/dashboard/", domain=STAGING_DOMAIN,
                               auth=("admin", live.dashboard_password)).status_code == 200
    finally:
        live.set_env("APP_DOMAIN", DOMAIN)
        live.deploy(SHA1)
    assert live.routed_get("api", "/version").json()["version"] == SHA1


def test_served_certificate_is_the_provided_one(live):
    """Traefik serves exactly the origin certificate put in etc/certs, valid for api.DOMAIN."""
    context = ssl.create_default_context(cafile=str(live.ca))
    with socket.create_connection(("127.0.0.1", 443), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=f"api.{DOMAIN}") as tls:
            served = tls.getpeercert(binary_form=True)
    provided = ssl.PEM_cert_to_DER_cert((live.project / "etc/certs/origin.crt").read_text())
    assert served == provided


def test_socket_proxy_reads_but_never_writes(live):
    """Through the proxy Traefik can list services; creating a container is 403; only the proxy mounts the socket."""
    services = live.container_exec("traefik", "wget", "-qO-", "http://socket-proxy:2375/services")
    assert NAMES.service("lucky") in services
    cid = live.container("traefik")
    post = docker("exec", cid, "wget", "-O-", "--post-data={}", "http://socket-proxy:2375/containers/create",
                  check=False)
    assert post.returncode != 0 and "403" in post.stderr
    mounting = {c["Config"]["Labels"].get("com.docker.swarm.service.name") for c in live.stack_containers()
                if any(m.get("Source") == "/var/run/docker.sock" for m in c["Mounts"])}
    assert mounting == {NAMES.service("socket-proxy")}


MIGRATE_SHA2, UPDATE_SHA2 = f"Migrating the database with {SHA2}", f"Updating services to {SHA2}"
UPDATE_SHA1, ROLL_TO_V1 = f"Updating services to {SHA1}", f"Rolling the database back to migration {V1}"
# mode -> (script/deploy's flags, script/rollback's, the order of deploy's steps, the order of rollback's)
# --yes: both change data for good here (subtractive migrations, undone migrations), so they would ask.
MODES = {
    "additive": ([], ["--yes"], (MIGRATE_SHA2, UPDATE_SHA2), (UPDATE_SHA1, ROLL_TO_V1)),
    "subtractive": (["-s", "--yes"], ["-s", "--yes"], (UPDATE_SHA2, MIGRATE_SHA2), (ROLL_TO_V1, UPDATE_SHA1)),
}


# Class-scoped so a mode's deploy and rollback run next to each other (then rollback
# finds the stack where deploy left it); each still brings the stack to its own start.
@pytest.mark.parametrize("mode", list(MODES), scope="class")
class TestUpdateModes:
    """script/deploy and script/rollback in the additive and the subtractive mode."""

    def test_deploy_sha2_over_sha1(self, at, mode):
        """script/deploy [-s] SHA2 over SHA1 runs its two steps in the mode's order and serves SHA2 with V2 and V3 applied."""
        flags, _, (first, then), _ = MODES[mode]
        deployment = at(SHA1)
        result = deployment.deploy(SHA2, *flags)
        assert order(result.stdout, first, then), result.stdout
        assert "✔ All done." in result.stdout
        assert deployment.version() == SHA2
        assert deployment.images() == {"lucky": SHA2, "hasura": SHA2}
        assert deployment.migrations() == [V1, V2, V3]
        # Built here, never pushed, so no registry digest is known: swarm runs the plain tag, as before, and the
        # release log names SHA2 alone (tests/render/test_deploy_digests.py: a known digest pins the image).
        spec = docker("service", "inspect", f"{deployment.swarm_name}_lucky", "--format",
                      "{{.Spec.TaskTemplate.ContainerSpec.Image}}").stdout.strip()
        assert spec == f"{deployment.registry}/lucky:{SHA2}"
        last = (deployment.project / "var/releases.log").read_text().splitlines()[-1]
        assert last.split(" ")[1:] == [SHA2], last

    def test_rollback_sha2_to_sha1(self, at, mode):
        """script/rollback [-s] SHA1 from SHA2 serves SHA1 and leaves SHA1's last migration, however many came after."""
        _, flags, _, (first, then) = MODES[mode]
        deployment = at(SHA2)
        result = deployment.rollback(SHA1, *flags)
        assert order(result.stdout, first, then), result.stdout
        assert "✔ All done." in result.stdout
        assert deployment.version() == SHA1
        assert deployment.images() == {"lucky": SHA1, "hasura": SHA1}
        assert deployment.migrations() == [V1]


def test_broken_image_leaves_previous_version_serving(live):
    """A version that fails its healthcheck is rolled back by swarm; SHA1 keeps serving throughout."""
    result = live.deploy(BROKEN, check=False)
    assert result.returncode != 0
    assert f"every service runs {SHA1} again" in result.stderr
    assert live.version() == SHA1
    assert live.images() == {"lucky": SHA1, "hasura": SHA1}


def test_killed_lucky_task_is_replaced(live):
    """Swarm replaces a killed Lucky task, and the new one serves SHA1 through Traefik."""
    before = live.container("lucky")
    docker("kill", before)
    replaced = until(lambda: (cid := live.container("lucky")) not in (None, before) and live.version() == SHA1 and cid,
                     120, "a new lucky task to serve /version")
    assert replaced != before


def test_killed_postgres_keeps_its_rows(live, surviving_note):
    """A killed PostgreSQL task comes back on its volume with the row, and Hasura serves it again."""
    before = live.container("postgres")
    docker("kill", before)

    def back():
        cid = live.container("postgres")
        return cid not in (None, before) and live.sql(f"SELECT count(*) FROM notes WHERE title = '{surviving_note}'") == "1"
    until(back, 120, "postgres to come back with the row")
    data = until(lambda: live.graphql(user=True).execute(NOTES), 90, "hasura to answer again after the database restart")
    assert {"title": surviving_note} in data["notes"]


def prometheus_api(live, endpoint):
    """The data of Prometheus's /api/v1/ENDPOINT, through Traefik with the login."""
    return live.routed_get("prometheus", f"/api/v1/{endpoint}", auth=("admin", live.dashboard_password)).json()["data"]


def test_monitoring_up_ends_all_done(monitoring):
    """script/monitoring up deploys the monitoring stack and waits until every replica runs."""
    assert "✔ All done." in monitoring.stdout


@pytest.mark.parametrize("job", ["prometheus", "node-exporter", "traefik"])
def test_prometheus_scrapes(monitoring, live, job):
    """Prometheus reports every target of the job up."""
    def health():
        answer = live.get("prometheus", "/api/v1/targets", auth=("admin", live.dashboard_password))
        if answer.status_code != 200:
            return None
        states = {t["health"] for t in answer.json()["data"]["activeTargets"] if t["labels"]["job"] == job}
        return states if states == {"up"} else None
    assert until(health, 120, f"prometheus to report the {job} targets up") == {"up"}


def test_prometheus_has_the_rule_groups(monitoring, live):
    """Prometheus loaded the generated alerting rules."""
    groups = until(lambda: {g["name"] for g in prometheus_api(live, "rules")["groups"]}, 60, "prometheus to list its rule groups")
    assert groups == {"nodes", "tasks", "data", "certificates"}


def test_prometheus_reaches_alertmanager(monitoring, live):
    """Prometheus discovered Alertmanager, which answers healthy through Traefik."""
    managers = until(lambda: prometheus_api(live, "alertmanagers")["activeAlertmanagers"], 60,
                     "prometheus to discover alertmanager")
    assert managers
    assert live.routed_get("alertmanager", "/-/healthy", auth=("admin", live.dashboard_password)).status_code == 200


def test_prometheus_needs_the_login(monitoring, live):
    """Prometheus through Traefik without the login is 401."""
    assert live.routed_get("prometheus", "/api/v1/targets").status_code == 401


# cAdvisor's reads (google/cadvisor container/docker, v0.60.5) pass cadvisor-proxy; the rest is 403.
CADVISOR_READS = ["/_ping", "/v1.41/version", "/v1.41/info", "/v1.41/images/json", "/v1.41/containers/{id}/json"]
REFUSED = [("GET", "/v1.41/containers/json"), ("GET", "/v1.41/containers/{id}/archive?path=/etc/hostname"),
           ("GET", "/v1.41/containers/{id}/logs?stdout=1"), ("GET", "/v1.41/services"), ("GET", "/v1.41/secrets"),
           ("POST", "/v1.41/containers/create"), ("POST", "/v1.41/containers/{id}/kill")]


def test_cadvisor_proxy_serves_only_cadvisors_reads_on_a_node_local_socket(monitoring, live):
    """cadvisor-proxy (global) answers on the unix socket in this node's cadvisor_docker_api volume, where cAdvisor
    is told to read Docker, with this node's daemon: cAdvisor's reads pass, every other call is 403."""
    volume = json.loads(docker("volume", "inspect", NAMES.service("cadvisor_docker_api", NAMES.monitoring)).stdout)[0]
    socket_path = Path(volume["Mountpoint"]) / "docker.sock"
    until(socket_path.is_socket, 60, f"cadvisor-proxy to listen on {socket_path}")
    cid = live.container("traefik")
    status, info = unix_request(socket_path, "GET", "/v1.41/info")
    assert status == 200 and json.loads(info)["Name"] == docker("info", "--format", "{{.Name}}").stdout.strip()
    assert [(url, unix_request(socket_path, "GET", url.format(id=cid))[0]) for url in CADVISOR_READS] == [
        (url, 200) for url in CADVISOR_READS]
    assert [(m, url, unix_request(socket_path, m, url.format(id=cid))[0]) for m, url in REFUSED] == [
        (m, url, 403) for m, url in REFUSED]


def test_lucky_scaled_to_zero_fires_an_alert(monitoring, live):
    """Scaled to 0, lucky has no running task: within 3 minutes Alertmanager lists AppServiceNotRunning for it
    (through Traefik, with the login); scaled back to 1, the stack settles again. The rule's `for:` is the harness's
    10 s here (harness/swarm.py SHORT_ALERTS); the promtool unit tests keep the project's minute."""
    service = f"{live.swarm_name}_lucky"
    login = ("admin", live.dashboard_password)

    def listed():
        answer = live.get("alertmanager", "/api/v2/alerts", auth=login)
        if answer.status_code != 200:
            return None
        return [a for a in answer.json()
                if a["labels"].get("alertname") == "AppServiceNotRunning" and a["labels"].get("service") == service]

    live.routed_get("alertmanager", "/-/healthy", auth=login)
    docker("service", "scale", "--detach", f"{service}=0")
    try:
        alerts = until(listed, 180, lambda: f"Alertmanager to list AppServiceNotRunning for {service}:\n"
                       f"{live.service_table()}", pause=5)
    finally:
        docker("service", "scale", "--detach", f"{service}=1")
        until(lambda: live.settled(SHA1), 240,
              lambda: f"{live.swarm_name} to serve {SHA1} with every replica running again:\n{live.service_table()}")
    assert alerts[0]["labels"]["severity"] == "critical"
    assert alerts[0]["labels"]["swarm"] == live.swarm_name


def test_https_switch_off_serves_plain_http(live):
    """HTTPS_SWITCH=off: the same routes over HTTP on port 80, nothing on 443."""
    result = live.deploy(SHA1, https="off")
    assert "HTTPS_SWITCH=off" in result.stdout
    answer = until(lambda: (a := live.get("api", "/version")).status_code == 200 and a, 60, "lucky over plain HTTP")
    assert answer.url.startswith("http://")
    assert answer.json()["version"] == SHA1
    denied = live.routed_graphql(timeout=60)
    assert isinstance(denied, TransportQueryError), denied
    assert denied.errors[0]["extensions"]["code"] == "invalid-headers", denied.errors
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", 443), timeout=3).close()


def test_teardown_leaves_nothing(monitoring, deployment):
    """Removing both stacks and the node labels leaves no service, network, volume, secret, config, label or container."""
    deployment.close()
    deployment.unlabel()
    assert deployment.leftovers() == {"services": [], "networks": [], "volumes": [], "secrets": [], "configs": [],
                                      "node labels": []}
    assert deployment.stack_containers(deployment.swarm_name, f"{deployment.swarm_name}_monitoring") == []
