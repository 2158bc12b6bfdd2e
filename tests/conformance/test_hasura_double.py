"""The Hasura double's own shell script passes the same tool as the harness's other scripts."""

import pytest

from tests.combinations import ROOT
from tests.conformance import checks

pytestmark = pytest.mark.lint


def test_hasura_double_entrypoint_passes_shellcheck():
    """tests/images/hasura/docker-entrypoint.sh (POSIX sh, like the upstream entrypoint) passes shellcheck."""
    assert not checks.shellcheck(["tests/images/hasura/docker-entrypoint.sh"], cwd=ROOT)
