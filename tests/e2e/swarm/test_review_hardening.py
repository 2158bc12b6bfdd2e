"""The deployed stacks against the security review of 2026-12 (L3, L4, L9): what the conformance rules check in the
files, seen on the running swarm."""

import pytest

from harness.docker import docker


def monitoring_container(live, service):
    """The id of a running container of the monitoring stack's service."""
    ids = docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={live.swarm_name}_monitoring_{service}",
                 "--filter", "status=running").stdout.split()
    assert ids, f"no running container of {service}"
    return ids[0]


def test_socket_proxy_refuses_events(live):
    """/events (every exec's command line) is 403 through Traefik's socket proxy, while /services still answers."""
    cid = live.container("traefik")
    events = docker("exec", cid, "wget", "-T", "5", "-O-", "http://socket-proxy:2375/events", check=False)
    assert events.returncode != 0 and "403" in events.stderr, events.stderr


def test_discovery_proxy_refuses_events(monitoring, live):
    """Prometheus's discovery proxy refuses /events too (asked from Prometheus, which shares its network)."""
    cid = monitoring_container(live, "prometheus")
    events = docker("exec", cid, "wget", "-T", "5", "-O-", "http://discovery-proxy:2375/events", check=False)
    assert events.returncode != 0 and "403" in events.stderr, events.stderr


@pytest.mark.parametrize("host, path", [("traefik", "/dashboard/"), ("prometheus", "/-/healthy"),
                                        ("alertmanager", "/-/healthy")])
def test_dashboards_send_hsts(monitoring, live, host, path):
    """Over HTTPS the dashboards answer with Strict-Transport-Security, like the app."""
    answer = live.routed_get(host, path, auth=("admin", live.dashboard_password))
    assert answer.status_code == 200
    assert answer.headers.get("Strict-Transport-Security", "").startswith("max-age=31536000"), answer.headers


def test_node_exporter_sees_no_docker_data(monitoring, live):
    """node-exporter's /var/lib/docker is an empty volume on Docker's disk: no volume, dump or secret of the node."""
    cid = monitoring_container(live, "node-exporter")
    assert docker("exec", cid, "ls", "-A", "/var/lib/docker").stdout.strip() == ""
