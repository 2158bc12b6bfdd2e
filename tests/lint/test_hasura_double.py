"""The Hasura double's own shell script passes the same tool as the harness's other scripts."""


from harness.combinations import ROOT
from harness.rules import checks


def test_hasura_double_entrypoint_passes_shellcheck():
    """kit/hasura/docker-entrypoint.sh (POSIX sh, like the upstream entrypoint) passes shellcheck."""
    assert not checks.shellcheck(["kit/hasura/docker-entrypoint.sh"], cwd=ROOT)
