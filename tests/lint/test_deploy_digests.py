"""The production stack file's image references, merged by the real `docker stack config` (client-side): with
LUCKY_DIGEST and HASURA_DIGEST (script/functions/swarm, deploy_stack) each image is a tag@digest reference,
without them the plain tag, and APP_VERSION stays the SHA either way (review finding M3; the render tier's
tests/render/test_deploy_digests.py checks which values deploy_stack exports)."""

import re

import pytest
import yaml

from harness.proc import run
from harness.rules import checks

SHA, LUCKY, HASURA = "0123abcd", "1" * 64, "2" * 64


@pytest.mark.files("Docker/docker-compose.prod.yml", "script/deploy", "script/functions/*")
@pytest.mark.parametrize("pinned", [True, False], ids=["digests", "tag"])
def test_stack_images_carry_the_digests(variant, prod_env, pinned):
    """`script/deploy --config` (docker stack config) with the digest variables set names tag@digest images."""
    _, project = variant
    digests = {"LUCKY_DIGEST": f"@sha256:{LUCKY}", "HASURA_DIGEST": f"@sha256:{HASURA}"} if pinned else {}
    env = checks.env_with(LHD_ENV_FILE=str(prod_env(project)), HTTPS_SWITCH="on", **digests)
    result = run([project / "script/deploy", "--config", SHA], env=env, check=False, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    registry = re.search(r'^REGISTRY_IMAGE="(.*)"$', (project / "script/functions/common").read_text(), re.M)[1]
    assert services["lucky"]["image"] == f"{registry}/lucky:{SHA}" + (f"@sha256:{LUCKY}" if pinned else "")
    assert services["hasura"]["image"] == f"{registry}/hasura:{SHA}" + (f"@sha256:{HASURA}" if pinned else "")
    assert services["lucky"]["environment"]["APP_VERSION"] == SHA
