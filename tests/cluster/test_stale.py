"""The cluster harness removes what runs killed before their teardown left, and never a live run's cluster."""

import os

from harness.cluster import PREFIX, cluster_resources, remove_cluster, remove_stale_clusters
from harness.docker import docker, unique


def leave(owner):
    """A cluster's network and node volume labelled as `Cluster` labels them, owned by pid `owner`; its name."""
    name = unique(PREFIX)
    labels = ["--label", f"{PREFIX}={name}", "--label", f"{PREFIX}.owner={owner}"]
    docker("network", "create", *labels, name)
    docker("volume", "create", *labels, f"{name}-manager-docker")
    return name


def test_clusters_of_dead_runs_are_removed_and_live_ones_kept():
    """A cluster whose owner pid is gone is removed whole; one owned by a live process stays."""
    dead_pid = max(int(p) for p in os.listdir("/proc") if p.isdigit()) + 100_000  # no such process
    dead, live = leave(dead_pid), leave(os.getpid())
    try:
        removed = remove_stale_clusters()
        assert dead in removed and live not in removed
        assert cluster_resources(dead) == {"containers": [], "volumes": [], "networks": []}
        assert cluster_resources(live) == {"containers": [], "volumes": [f"{live}-manager-docker"], "networks": [live]}
    finally:
        remove_cluster(dead)
        remove_cluster(live)
