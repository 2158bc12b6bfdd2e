"""harness/acme.py `AcmeDeployment.run_script`: the ACME module's scripts run only against its node's engine (a
script run against this host's would act on e2e's swarm), except script/build, which builds on this host's."""

from types import SimpleNamespace

import pytest

from harness import swarm
from harness.acme import AcmeDeployment

NODE = "unix:///tmp/lhd-acme-x/docker.sock"


@pytest.fixture
def deployment(monkeypatch):
    ran = []
    monkeypatch.setattr(swarm.Deployment, "run_script", lambda self, name, *rest: ran.append(name))
    acme = AcmeDeployment.__new__(AcmeDeployment)  # no render, no engine: only the guard is under test
    acme.node, acme.ran = SimpleNamespace(docker_host=NODE), ran
    return acme


@pytest.mark.parametrize("env", [{}, {"DOCKER_HOST": "unix:///var/run/docker.sock"}], ids=["unset", "host"])
def test_a_script_against_another_engine_is_refused(deployment, env):
    with pytest.raises(RuntimeError, match=r"script/deploy of the ACME module would act on .*'s engine, not its node's"):
        deployment.run_script("deploy", ["--first"], env, True, 10)
    assert deployment.ran == []


def test_the_nodes_engine_runs_scripts_and_build_runs_on_the_host(deployment):
    deployment.run_script("deploy", [], {"DOCKER_HOST": NODE}, True, 10)
    deployment.run_script("build", [], {}, True, 10)
    assert deployment.ran == ["deploy", "build"]
