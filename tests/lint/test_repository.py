"""The template repository's own CI and scripts pass the same tools."""

import shutil
import sys
import tomllib
from pathlib import Path

import pytest

from harness.combinations import ROOT
from harness.proc import run
from harness.rules import checks

SHEBANGS = ("#!/bin/sh", "#!/usr/bin/env bash", "#!/bin/bash", "#!/usr/bin/env sh")


def own_scripts():
    """Every shell script of the harness and CI (found by shebang), relative to the repository."""
    candidates = [ROOT / ".ci/run", *(p for d in ("tests", "harness", "kit", "tools", "benchmarks")
                                       for p in sorted((ROOT / d).rglob("*")))]
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
    assert {".ci/run", "tools/bootstrap", "kit/alpine-compat/apk", "kit/hasura/docker-entrypoint.sh"} <= set(OWN_SCRIPTS)


@pytest.mark.parametrize("script", OWN_SCRIPTS)
def test_own_shell_script(script):
    """This shell script of the harness passes shellcheck."""
    assert not checks.shellcheck([script], cwd=ROOT)


# --- the layers: folder = what it is (pyproject.toml [tool.importlinter]) ---------------------------------------

def lint_imports(cwd):
    """lint-imports (import-linter, pinned in requirements/constraints.txt) run in cwd; the finished process."""
    return run([Path(sys.executable).with_name("lint-imports"), "--no-cache"], cwd=cwd, check=False, timeout=120)


def layers():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]["layers"]


def test_no_import_runs_back_up():
    """tests > stack drivers and rules > kit > helpers > proc, docker, wait: every contract kept."""
    result = lint_imports(ROOT)
    assert result.returncode == 0 and "0 broken" in result.stdout, result.stdout + result.stderr


def test_every_harness_module_has_a_layer():
    """A new harness module is placed in a layer, or the contract would say nothing about it."""
    named = {module.strip() for layer in layers() for module in layer.replace(":", "|").split("|")}
    modules = {f"harness.{p.stem}" for p in (ROOT / "harness").glob("*.py") if p.stem != "__init__"}
    assert modules | {"harness.rules"} <= named, sorted(modules - named)


def test_a_back_import_breaks_the_layers(tmp_path):
    """The contract bites: the kit importing the tests (one line added to a copy) is reported as broken."""
    for folder in ("harness", "kit", "tests"):
        shutil.copytree(ROOT / folder, tmp_path / folder,
                        ignore=shutil.ignore_patterns(".cache", "node_modules", "fixtures", "__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    kit_module = tmp_path / "kit/kit.py"
    kit_module.write_text(kit_module.read_text() + "\nimport tests.conftest  # noqa: E402,F401\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1 and "1 broken" in result.stdout
    assert "kit.kit -> tests.conftest" in result.stdout, result.stdout


def test_python_passes_ruff():
    """The harness, kit, tests, hooks and benchmarks pass ruff with the repository's rules (pyproject.toml), among
    them the one process convention: subprocess is used by harness/proc.py alone."""
    result = run([Path(sys.executable).with_name("ruff"), "check", "--no-cache", "."], cwd=ROOT, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_bites_on_a_raw_subprocess(tmp_path):
    """The banned-api rule reports TID251 for a subprocess.run outside harness/proc.py."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    (tmp_path / "stray.py").write_text('import subprocess\n\nsubprocess.run(["true"], check=True)\n')
    result = run([Path(sys.executable).with_name("ruff"), "check", "--no-cache", "stray.py"], cwd=tmp_path, check=False)
    assert result.returncode == 1 and "TID251" in result.stdout and "use harness.proc.run" in result.stdout
