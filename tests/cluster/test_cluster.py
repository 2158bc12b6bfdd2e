"""The production stack on a three-node swarm (one manager, two workers) in containers, with a real
registry: workers pull the project's images with the manager's login, replicas spread across nodes,
Traefik on the manager routes to every node, stateful services stay with their node label, losing a
worker loses no request, Prometheus sees every node.
"""

import pytest

from tests.harness.cluster import REGISTRY_HOST
from tests.harness.wait import until

pytestmark = pytest.mark.cluster


def test_the_swarm_has_a_manager_and_two_workers(cluster):
    """Three engines in containers form one swarm: one leader, two workers, all Ready."""
    status = cluster.nodes_status()
    assert set(status) == set(cluster.nodes)
    assert {node: s[0] for node, s in status.items()} == {node: "Ready" for node in cluster.nodes}
    assert status[cluster.manager][2] == "Leader"
    assert all(status[w][2] == "" for w in cluster.workers)


def test_workers_pull_from_the_registry_only_with_the_managers_login(cluster):
    """An image pushed after `docker login` reaches a worker through --with-registry-auth; without the
    login the push is refused, and without --with-registry-auth the worker cannot pull it."""
    from tests.images import kit

    image = f"{REGISTRY_HOST}/lhd-cluster/probe:{cluster.name.rsplit('-', 1)[1]}"
    cluster.load([kit.BASE], [cluster.manager])
    cluster.docker_on(cluster.manager, "tag", kit.BASE, image)
    refused = cluster.docker_on(cluster.manager, "push", image, check=False)
    assert refused.returncode != 0 and "no basic auth credentials" in refused.stderr + refused.stdout
    cluster.login(cluster.manager)
    cluster.docker_on(cluster.manager, "push", "--quiet", image)
    assert "lhd-cluster/probe" in cluster.catalog()

    worker = cluster.workers[0]
    try:
        for name, auth in (("lhd-cluster-probe-noauth", []), ("lhd-cluster-probe", ["--with-registry-auth"])):
            cluster.docker_on(cluster.manager, "service", "create", "--detach", "--name", name, *auth,
                              "--constraint", f"node.hostname=={worker}", "--restart-condition", "none",
                              image, "sleep", "600")

        def state(name):
            return cluster.docker_on(cluster.manager, "service", "ps", "--no-trunc", "--format",
                                     "{{.CurrentState}}|{{.Error}}", name).stdout
        until(lambda: state("lhd-cluster-probe").startswith("Running"), 120, "the probe to run on the worker")
        until(lambda: "No such image" in state("lhd-cluster-probe-noauth") or "Rejected" in state("lhd-cluster-probe-noauth"),
              120, "the probe without the login to be rejected")
        pulled = cluster.docker_on(worker, "images", "--digests", "--format", "{{.Repository}}@{{.Digest}}").stdout
        assert f"{REGISTRY_HOST}/lhd-cluster/probe@sha256:" in pulled
    finally:
        cluster.docker_on(cluster.manager, "service", "rm", "lhd-cluster-probe", "lhd-cluster-probe-noauth", check=False)
