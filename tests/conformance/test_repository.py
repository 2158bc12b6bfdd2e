"""The template repository's own CI and scripts pass the same tools."""

import pytest

from tests.combinations import ROOT
from tests.conformance import checks

pytestmark = pytest.mark.lint

SHEBANGS = ("#!/bin/sh", "#!/usr/bin/env bash", "#!/bin/bash", "#!/usr/bin/env sh")


def own_scripts():
    """Every shell script of the harness and CI (found by shebang), relative to the repository."""
    candidates = [ROOT / ".ci/run", *sorted((ROOT / "tests").rglob("*")), *sorted((ROOT / "benchmarks").rglob("*"))]
    found = []
    for path in candidates:
        if path.is_file() and not {".cache", "node_modules", "fixtures"} & set(path.parts):
            with open(path, "rb") as handle:
                if handle.read(24).decode("latin-1").startswith(SHEBANGS):
                    found.append(str(path.relative_to(ROOT)))
    return found


OWN_SCRIPTS = own_scripts()


def test_template_workflow():
    """The template's GitHub workflow validates and passes actionlint."""
    workflow = [ROOT / ".github/workflows/template.yml"]
    assert not checks.jsonschema("vendor.github-workflows", workflow) + checks.actionlint(workflow)


def test_own_scripts_found():
    """The discovery sees the scripts CI and the kit depend on."""
    assert {".ci/run", "tests/tools/bootstrap", "tests/images/alpine-compat/apk"} <= set(OWN_SCRIPTS)


@pytest.mark.parametrize("script", OWN_SCRIPTS)
def test_own_shell_script(script):
    """This shell script of the harness passes shellcheck."""
    assert not checks.shellcheck([script], cwd=ROOT)
