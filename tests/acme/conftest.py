"""Fixtures of the ACME module: Pebble, and a `tls=letsencrypt` deployment of its own (stack lhd_acme) for this
module only, torn down at its end (the swarm tier's session deployment publishes the same ports afterwards)."""

import pytest

from harness.acme import ANSWERS, DURATION, VALIDITY, AcmeDeployment, Pebble, TraefikFollower
from harness.bake import bake
from harness.report import add_to_report
from harness.swarm import SHA1, Swarm


@pytest.fixture(scope="module")
def acme(image_mode, tmp_path_factory, request):
    """Pebble started, the project rendered with tls=letsencrypt, its env file naming Pebble as the CA, and
    `script/deploy --first`; everything removed afterwards."""
    with Swarm() as swarm:
        base = tmp_path_factory.mktemp("acme")
        pebble = Pebble(VALIDITY)
        deployment = None
        try:
            pebble.start()
            deployment = AcmeDeployment(bake(base / "out", **ANSWERS), base / "work", image_mode, pebble)
            deployment.use_pebble(DURATION)
            with TraefikFollower(deployment) as follower:
                deployment.follower = follower
                deployment.first_deploy(SHA1)
                add_to_report(request.config, [
                    f"acme: Pebble {pebble.validity} s certificates, ACME_CERTIFICATES_DURATION={DURATION} h",
                    *(["created a single-node swarm on 127.0.0.1 (left at teardown)"] if swarm.created else [])])
                yield deployment
        finally:
            if deployment is not None:
                deployment.close()
                deployment.unlabel()
                deployment.park_images()
            pebble.close()


@pytest.fixture(scope="module")
def monitoring(acme):
    """`script/monitoring up` next to the module's stack, once the tests that remove the app stack whole are done
    (its Prometheus and Alertmanager share the app stack's dashboards network); removed with the stacks."""
    return acme.script("monitoring", "up")
