"""The template repository's own CI and scripts pass the same tools."""

import pytest

from tests.combinations import ROOT
from tests.conformance import checks

pytestmark = pytest.mark.lint

OWN_SCRIPTS = [".ci/run", "tests/tools/bootstrap", "tests/images/postgres/docker-entrypoint.sh",
               "tests/images/doubles/shims.sh", "tests/images/alpine/adduser", "tests/images/alpine/addgroup"]


def test_template_workflow():
    """The template's GitHub workflow validates and passes actionlint."""
    workflow = [ROOT / ".github/workflows/template.yml"]
    assert not checks.jsonschema("vendor.github-workflows", workflow) + checks.actionlint(workflow)


def test_own_shell_scripts():
    """Every shell script of the harness passes shellcheck."""
    assert not checks.shellcheck(OWN_SCRIPTS, cwd=ROOT)
