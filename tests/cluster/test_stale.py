"""What a killed cluster run left is removed by the next run (harness/reaper.py `reap_stale`, which
`Cluster.start()` calls), and never a live run's cluster."""

import os

from harness import reaper
from harness.cluster import PREFIX
from harness.cluster_nodes import cluster_resources, remove_cluster
from harness.docker import docker, unique


def leave(owner):
    """A cluster's network and node volume labelled as `Cluster` labels them, owned by pid `owner`; its name."""
    name = unique(PREFIX)
    labels = reaper.label_args(f"{owner}x{os.urandom(3).hex()}", owner)
    docker("network", "create", *labels, name)
    docker("volume", "create", *labels, f"{name}-manager-docker")
    return name


def test_clusters_of_dead_runs_are_removed_and_live_ones_kept():
    """A cluster whose owner pid is gone is removed whole; one owned by a live process stays."""
    dead, live = leave(reaper.dead_pid()), leave(os.getpid())
    try:
        removed = reaper.reap_stale()
        assert dead in removed["network"] and live not in removed["network"]
        assert cluster_resources(dead) == {"containers": [], "volumes": [], "networks": []}
        assert cluster_resources(live) == {"containers": [], "volumes": [f"{live}-manager-docker"], "networks": [live]}
    finally:
        remove_cluster(dead)
        remove_cluster(live)
