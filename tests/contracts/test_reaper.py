"""The reaper (harness/reaper.py) removes what a run whose owner is gone left, and never what a live run owns;
at a session's end it removes what that run labelled."""

import json
import os

from harness import reaper
from harness.docker import docker, unique


def leave(owner, run_id):
    """A network and a volume carrying the run labels of run_id, owned by pid `owner`; their names."""
    name = unique("lhd-reaper-test")
    docker("network", "create", *reaper.label_args(run_id, owner), name)
    docker("volume", "create", *reaper.label_args(run_id, owner), name)
    return name


def compose_leftover(owner):
    """A volume as Docker Compose labels it for a throwaway project named by compose_name(owner); its project."""
    project = reaper.compose_name(owner)
    docker("volume", "create", "--label", f"com.docker.compose.project={project}", f"{project}_db_data")
    return project


def present(name):
    return {"networks": name in docker("network", "ls", "--format", "{{.Name}}").stdout.split(),
            "volumes": name in docker("volume", "ls", "--format", "{{.Name}}").stdout.split()}


def test_leftovers_of_a_dead_owner_are_reaped_and_a_live_owners_kept():
    """reap_stale removes the labelled network and volume, and the compose project, of a pid that is gone; those
    of a live pid stay until reap(run id) of their own run removes them."""
    dead, live = reaper.dead_pid(), os.getpid()
    other_run = f"{live}x{os.urandom(3).hex()}"  # a live run's id, not this session's
    gone, kept = leave(dead, "1x000000"), leave(live, other_run)
    gone_project, kept_project = compose_leftover(dead), compose_leftover(live)
    try:
        removed = reaper.reap_stale()
        assert gone in removed["network"] and gone in removed["volume"] and gone_project in removed["compose"]
        assert kept not in removed["network"] + removed["volume"] and kept_project not in removed["compose"]
        assert present(gone) == {"networks": False, "volumes": False}
        assert present(kept) == {"networks": True, "volumes": True}
        assert f"{kept_project}_db_data" in docker("volume", "ls", "-q").stdout.split()
        assert reaper.leftovers(other_run) == {"container": [], "volume": [kept], "network": [kept]}
        assert reaper.reap(other_run)["volume"] == [kept]
        assert present(kept) == {"networks": False, "volumes": False}
        assert reaper.leftovers(other_run) == {"container": [], "volume": [], "network": []}
    finally:
        for name in (gone, kept):
            docker("network", "rm", name, check=False)
            docker("volume", "rm", name, check=False)
        for project in (gone_project, kept_project):
            reaper.remove_compose_project(project)


def test_a_contract_network_carries_the_run_labels():
    """What harness/containers.py creates is labelled with this run's id and this process as its owner."""
    from harness.containers import contract_network

    with contract_network() as network:
        labels = json.loads(docker("network", "inspect", network.name, "--format", "{{json .Labels}}").stdout)
        assert network.name in reaper.leftovers()["network"]
    assert {k: labels.get(k) for k in (reaper.RUN, reaper.OWNER)} == {reaper.RUN: reaper.RUN_ID, reaper.OWNER: str(os.getpid())}
