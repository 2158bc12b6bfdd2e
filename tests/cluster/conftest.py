"""Fixtures of the cluster tier: one registry + three-node swarm per session, the project deployed on it."""

import pytest

from harness.cluster import Cluster, ClusterDeployment, build_images
from harness.docker import engine_available
from harness.report import add_to_report


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """A real registry and three engine nodes (one manager, two workers) forming one swarm; at teardown
    everything is removed, and anything left is an error."""
    if not engine_available():
        pytest.fail("the cluster tier needs a running Docker engine: run tools/bootstrap engine", pytrace=False)
    build_images()
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield c.start()
    finally:
        c.close()
    left = c.leftovers()
    assert not any(left.values()), f"the cluster left {left}"


@pytest.fixture(scope="session")
def cluster_deployment(image_mode, cluster, tmp_path_factory, request):
    """The rendered project built on the host, its images pushed to the registry, then
    `script/bootstrap --swarm` and `script/deploy --first` run on the manager."""
    d = ClusterDeployment(cluster, tmp_path_factory.mktemp("cluster-project"), image_mode)
    try:
        d.first_deploy()
        report = list(d.notes) + [
            f"cluster: registry {cluster.registry} (Debian docker-registry, TLS + htpasswd) answering as "
            f"{d.image('lucky').split('/')[0]}; project images {d.sha} pushed from the manager, pulled by the workers",
            "cluster: Docker Hub images (postgres, traefik, socket proxy, prometheus, alertmanager, node-exporter) "
            + ("loaded into the nodes from the host's kit images: no registry here can serve Docker Hub's names"
               if image_mode == "local" else "pulled by the nodes themselves"),
        ]
        add_to_report(request.config, report)
        yield d
    finally:
        d.park_images()


@pytest.fixture
def spread(cluster_deployment):
    """The deployment with every node Ready and active, the role labels on the manager, every replica
    running and lucky on every node: where each test starts."""
    return cluster_deployment.settle()
