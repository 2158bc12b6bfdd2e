"""Production on a local swarm: the generated deploy/rollback scripts, routing,
TLS, HTTPS_SWITCH, updates without downtime, faults, monitoring, teardown.

All requests go to 127.0.0.1:80/443 with the right Host header and SNI;
TLS is verified against the throwaway CA the harness made.
"""

import socket
import ssl

import pytest

from tests.dockerlib import docker, wait_until
from tests.swarm.conftest import BROKEN, SHA1, SHA2, V1, V2, V3
from tests.swarm.harness import DOMAIN

pytestmark = pytest.mark.docker


def order(output, first, second):
    """True when line `first` is printed before line `second`."""
    return 0 <= output.index(first) < output.index(second)


def test_first_deploy_brings_every_service_up(deployment):
    assert "✔ All done." in deployment.first.stdout
    rows = docker("service", "ls", "--filter", f"label=com.docker.stack.namespace={deployment.swarm_name}",
                  "--format", "{{.Name}} {{.Replicas}}").stdout.split("\n")
    replicas = dict(r.split() for r in rows if r)
    assert set(replicas) == {f"lhd_app_{s}" for s in ("postgres", "hasura", "lucky", "traefik", "socket-proxy")}
    assert all(v.split("/")[0] == v.split("/")[1] != "0" for v in replicas.values()), replicas
    assert deployment.migrations() == [V1]


def hasura_answers(deployment):
    """Traefik polls swarm every few seconds: wait (bounded) until it routes to Hasura."""
    def routed():
        answer = deployment.post("api", "/v1/graphql", {"query": "{ notes { title } }"})
        return answer.headers.get("Content-Type", "").startswith("application/json") and answer.json()
    return wait_until(routed, 30, "Traefik to route /v1/graphql to Hasura")


def test_api_routes_to_hasura_and_lucky(deployment):
    """/v1/graphql reaches Hasura, everything else on api. reaches Lucky."""
    denied = hasura_answers(deployment)
    assert denied["errors"][0]["extensions"]["code"] == "invalid-headers", denied  # JWT mode, no unauthorized role
    data = deployment.post("api", "/v1/graphql", {"query": "{ notes { title } }"},
                           {"x-hasura-admin-secret": deployment.admin_secret()}).json()
    assert data == {"data": {"notes": []}}
    assert deployment.version() == SHA1
    assert deployment.get("api", "/").json()["name"] == "lucky"


def test_http_redirects_permanently_to_https(deployment):
    answer = deployment.get("api", "/version", scheme="http")
    assert answer.status_code in (301, 308)
    assert answer.headers["Location"] == f"https://api.{DOMAIN}/version"


def test_dashboard_needs_the_login(deployment):
    assert deployment.get("traefik", "/dashboard/").status_code == 401
    ok = deployment.get("traefik", "/dashboard/", auth=("admin", deployment.dashboard_password))
    assert ok.status_code == 200


def test_unknown_host_gets_traefiks_404(deployment):
    assert deployment.get("nope", "/").status_code == 404


def test_served_certificate_is_the_provided_one(deployment):
    context = ssl.create_default_context(cafile=str(deployment.ca))
    with socket.create_connection(("127.0.0.1", 443), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=f"api.{DOMAIN}") as tls:
            served = tls.getpeercert(binary_form=True)
    provided = ssl.PEM_cert_to_DER_cert((deployment.project / "etc/certs/origin.crt").read_text())
    assert served == provided


def test_socket_proxy_reads_but_never_writes(deployment):
    """Through the proxy Traefik can list services; creating a container is 403."""
    services = deployment.container_exec("traefik", "wget", "-qO-", "http://socket-proxy:2375/services")
    assert "lhd_app_lucky" in services
    cid = deployment.container("traefik")
    post = docker("exec", cid, "wget", "-O-", "--post-data={}", "http://socket-proxy:2375/containers/create",
                  check=False)
    assert post.returncode != 0 and "403" in post.stderr
    mounting = {c["Config"]["Labels"].get("com.docker.swarm.service.name") for c in deployment.stack_containers()
                if any(m.get("Source") == "/var/run/docker.sock" for m in c["Mounts"])}
    assert mounting == {"lhd_app_socket-proxy"}


def test_additive_deploy_migrates_then_updates(deployment):
    result = deployment.script("deploy", SHA2)
    assert order(result.stdout, f"Migrating the database with {SHA2}", f"Updating services to {SHA2}"), result.stdout
    assert deployment.version() == SHA2
    assert deployment.migrations() == [V1, V2, V3]


def test_rollback_undoes_code_then_database(deployment):
    """script/rollback SHA1 serves SHA1 and leaves SHA1's last migration, however many came after."""
    result = deployment.script("rollback", SHA1)
    assert order(result.stdout, f"Updating services to {SHA1}", f"Rolling the database back to migration {V1}")
    assert deployment.version() == SHA1
    assert deployment.migrations() == [V1]


def test_subtractive_deploy_updates_then_migrates(deployment):
    result = deployment.script("deploy", "-s", SHA2)
    assert order(result.stdout, f"Updating services to {SHA2}", f"Migrating the database with {SHA2}"), result.stdout
    assert deployment.version() == SHA2
    assert deployment.migrations() == [V1, V2, V3]


def test_subtractive_rollback_undoes_database_then_code(deployment):
    result = deployment.script("rollback", "-s", SHA1)
    assert order(result.stdout, f"Rolling the database back to migration {V1}", f"Updating services to {SHA1}")
    assert deployment.version() == SHA1
    assert deployment.migrations() == [V1]


def test_broken_image_leaves_previous_version_serving(deployment):
    """A version that fails its healthcheck is rolled back by swarm; SHA1 keeps serving throughout."""
    result = deployment.script("deploy", BROKEN, check=False)
    assert result.returncode != 0
    assert f"every service runs {SHA1} again" in result.stderr
    assert deployment.version() == SHA1
    assert deployment.images() == {"lucky": SHA1, "hasura": SHA1}


def test_killed_lucky_task_is_replaced(deployment):
    before = deployment.container("lucky")
    docker("kill", before)
    wait_until(lambda: deployment.container("lucky") not in (None, before) and deployment.version() == SHA1, 120,
               "a new lucky task to serve /version")


def test_killed_postgres_keeps_its_rows(deployment):
    deployment.sql("INSERT INTO notes (title, body, published) VALUES ('survives', 'x', true)")
    before = deployment.container("postgres")
    docker("kill", before)

    def back():
        cid = deployment.container("postgres")
        return cid not in (None, before) and deployment.sql("SELECT count(*) FROM notes WHERE title = 'survives'") == "1"
    wait_until(back, 120, "postgres to come back with the row")
    data = wait_until(lambda: deployment.post("api", "/v1/graphql", {"query": "{ notes { title } }"},
                                              {"x-hasura-admin-secret": deployment.admin_secret()}).json().get("data"),
                      90, "hasura to answer again after the database restart")
    assert {"title": "survives"} in data["notes"]


def test_monitoring_stack(deployment):
    """Prometheus scrapes node-exporter, Traefik and itself, has its rules, and reaches Alertmanager."""
    up = deployment.script("monitoring", "up")
    assert "✔ All done." in up.stdout
    auth = ("admin", deployment.dashboard_password)

    def targets():
        answer = deployment.get("prometheus", "/api/v1/targets", auth=auth)
        if answer.status_code != 200:
            return None
        health = {}
        for t in answer.json()["data"]["activeTargets"]:
            health.setdefault(t["labels"]["job"], set()).add(t["health"])
        wanted = {"prometheus", "node-exporter", "traefik"}
        return health if all(health.get(job) == {"up"} for job in wanted) else None
    wait_until(targets, 120, "prometheus targets node-exporter, traefik and prometheus to be up")
    groups = {g["name"] for g in deployment.get("prometheus", "/api/v1/rules", auth=auth).json()["data"]["groups"]}
    assert groups == {"nodes", "tasks"}
    managers = deployment.get("prometheus", "/api/v1/alertmanagers", auth=auth).json()["data"]["activeAlertmanagers"]
    assert managers
    assert deployment.get("alertmanager", "/-/healthy", auth=auth).status_code == 200
    assert deployment.get("prometheus", "/api/v1/targets").status_code == 401


def test_https_switch_off_serves_plain_http(deployment):
    """HTTPS_SWITCH=off: the same routes over HTTP on port 80, nothing on 443."""
    deployment.https = "off"
    result = deployment.script("deploy", SHA1)
    assert "HTTPS_SWITCH=off" in result.stdout
    answer = wait_until(lambda: (a := deployment.get("api", "/version")).status_code == 200 and a, 60,
                        "lucky over plain HTTP")
    assert answer.json()["version"] == SHA1
    graphql = deployment.post("api", "/v1/graphql", {"query": "{ notes { title } }"}).json()
    assert graphql["errors"][0]["extensions"]["code"] == "invalid-headers", graphql
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", 443), timeout=3).close()


def test_teardown_leaves_nothing(deployment):
    deployment.close()
    assert deployment.leftovers() == {"services": [], "networks": [], "volumes": [], "secrets": [], "configs": []}
