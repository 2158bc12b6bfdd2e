"""Fixtures for the conformance tier: every supported combination, rendered once."""

import hashlib
import shutil
import subprocess

import pytest

from tests.combinations import SUPPORTED, combo_id
from tests.conformance.checks import make_cert


@pytest.fixture(scope="session")
def projects(bakes):
    """(combination, project path) for every supported combination."""
    return [(combo, bakes.get(combo)) for combo in SUPPORTED]


def digest(project, relpaths):
    h = hashlib.sha256()
    for rel in relpaths:
        path = project / rel
        h.update(rel.encode())
        h.update(path.read_bytes() if path.is_file() else b"<absent>")
    return h.hexdigest()


@pytest.fixture(scope="session")
def variants(projects):
    """variants(relpaths_fn) -> [(id, combo, project)] unique by the content the check reads."""

    def pick(relpaths_fn):
        seen, chosen = set(), []
        for combo, project in projects:
            rels = sorted(relpaths_fn(project))
            key = digest(project, rels)
            if key not in seen:
                seen.add(key)
                chosen.append((combo_id(combo), combo, project))
        return chosen

    return pick


def rels(project, *patterns):
    """Relative paths of the project's files matching glob patterns."""
    return [str(p.relative_to(project)) for pattern in patterns for p in project.glob(pattern) if p.is_file()]


@pytest.fixture(scope="session")
def prod_env(tmp_path_factory):
    """Per project: a server env file written by the project's own script/bootstrap."""
    cache = {}

    def make(project):
        if project not in cache:
            env_file = tmp_path_factory.mktemp("env") / "production.env"
            env = {"LHD_ENV_FILE": str(env_file), "PATH": "/usr/bin:/bin:/usr/local/bin"}
            subprocess.run([project / "script/bootstrap"], env=env, check=True, capture_output=True, text=True)
            certs = project / "etc/certs"
            if not (certs / "origin.crt").exists():
                cert, key = make_cert(tmp_path_factory.mktemp("cert"), "example.com")
                shutil.copy(cert, certs / "origin.crt")
                shutil.copy(key, certs / "origin.key")
            cache[project] = env_file
        return cache[project]

    return make
