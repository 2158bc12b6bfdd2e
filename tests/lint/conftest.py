"""Fixtures for the conformance tier: every supported combination, rendered once.

A check that reads a set of files runs once per distinct content of those
files across the supported combinations (`@pytest.mark.files(*globs)` on a
test taking `variant`), so a failing variant has its own id in the report
(`key:value-...`) and identical renderings are checked once.
"""

import shutil

import pytest

from harness.combinations import combo_id
from harness.proc import run
from harness.rules.checks import make_cert
from harness.variants import rendered, unique_variants


def lint_selected(config):
    """True when this run may select lint tests (no -m, or an -m naming lint)."""
    expression = config.option.markexpr or ""
    return not expression or "lint" in expression


def pytest_generate_tests(metafunc):
    """Parametrize `variant` by the files named in the test's `files` marker."""
    if "variant" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("files")
    assert marker is not None, f"{metafunc.function.__name__} takes `variant` but has no @pytest.mark.files(...)"
    found = unique_variants(marker.args, marker.kwargs.get("when", {})) if lint_selected(metafunc.config) else []
    metafunc.parametrize("variant", found, ids=[combo_id(c) for c, _ in found])


@pytest.fixture(scope="session")
def projects():
    """(combination, project path) for every supported combination."""
    return rendered()


@pytest.fixture(scope="session")
def prod_env(tmp_path_factory):
    """Per project: a server env file written by the project's own script/bootstrap."""
    cache_ = {}

    def make(project):
        if project not in cache_:
            env_file = tmp_path_factory.mktemp("env") / "production.env"
            env = {"LHD_ENV_FILE": str(env_file), "PATH": "/usr/bin:/bin:/usr/local/bin"}
            run([project / "script/bootstrap"], env=env)
            certs = project / "etc/certs"
            if not (certs / "origin.crt").exists():
                cert, key = make_cert(tmp_path_factory.mktemp("cert"), "example.com")
                shutil.copy(cert, certs / "origin.crt")
                shutil.copy(key, certs / "origin.key")
            cache_[project] = env_file
        return cache_[project]

    return make
