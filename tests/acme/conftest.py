"""Fixtures of the ACME module: a swarm of its own (harness/acme.py `AcmeNode`, a Docker-in-Docker node), Pebble on
it, and a `tls=letsencrypt` deployment (stack lhd_acme) for this module only; the node is removed at its end, and
with it everything on it."""

import shutil

import pytest

from harness.acme import ANSWERS, DURATION, VALIDITY, AcmeDeployment, AcmeNode, Pebble, TraefikFollower
from harness.bake import bake
from harness.report import add_to_report
from harness.swarm import SHA1


@pytest.fixture(scope="module")
def acme(image_mode, tmp_path_factory, request):
    """The node started, Pebble on it, the project rendered with tls=letsencrypt, its release built here and loaded
    there, its env file naming Pebble as the CA, and `script/deploy --first`; the node removed afterwards."""
    base = tmp_path_factory.mktemp("acme")
    node = AcmeNode(base / "node", base)
    pebble, deployment = None, None
    try:
        node.start()
        pebble = Pebble(VALIDITY, node.ip(node.manager))
        with node.engine():
            pebble.start()
            deployment = AcmeDeployment(bake(base / "out", **ANSWERS), base / "work", image_mode, pebble, node)
            deployment.move_to_node()
            deployment.use_pebble(DURATION)
            with TraefikFollower(deployment) as follower:
                deployment.follower = follower
                deployment.first_deploy(SHA1)
                add_to_report(request.config, [
                    f"acme: Pebble {pebble.validity} s certificates, ACME_CERTIFICATES_DURATION={DURATION} h",
                    f"acme: on a swarm of its own, Docker-in-Docker node {node.manager} (seeded in "
                    f"{node.timings.get('seed', ['-'])[0]} s), Traefik on 127.0.0.1:{deployment.port('http')} "
                    f"and :{deployment.port()}"])
                yield deployment
    finally:
        if deployment is not None:
            deployment.park_images()
        node.close()
        if pebble is not None:
            shutil.rmtree(pebble.workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def monitoring(acme):
    """`script/monitoring up` next to the module's stack, once the tests that remove the app stack whole are done
    (its Prometheus and Alertmanager share the app stack's dashboards network); removed with the stacks."""
    return acme.script("monitoring", "up")
