"""script/functions/swarm `ensure_app_role` waits for the database at most WAIT_TIMEOUT seconds on the clock, not
WAIT_TIMEOUT tries: on a real swarm, with the postgres service stopped, each `pg_isready` took about 6 s (the
service name does not resolve), so 120 tries held `script/pg_upgrade` for some 14 minutes (seen in the e2e run of
tests/e2e/swarm/test_pg_upgrade.py before its fix). The container's shell runs here: a fake `docker` executes the
`sh -c` program `docker run` is given, with a `pg_isready` that never answers and takes 2 s a try."""

import os
import shutil

from harness.docker import fake_docker
from harness.proc import run

# `docker run [options] --entrypoint sh IMAGE -c PROGRAM ARG0`: run PROGRAM with sh, with the -e variables.
RUN_THE_CONTAINERS_SHELL = r"""
[ "$1" = run ] || { echo "unexpected docker $*" >&2; exit 99; }
shift
while [ "$#" -gt 0 ]; do
  case "$1" in
    -e) export "$2"; shift 2 ;;
    -c) exec sh -c "$2" "$3" ;;
    *) shift ;;
  esac
done
"""


def test_the_wait_for_the_database_is_bounded_in_seconds(default_project, tmp_path):
    """WAIT_TIMEOUT=3 with tries of 2 s each: at most 2 tries (3 with the old count of tries would be 3 tries and
    about 9 s), then the one line naming the stopped service, and psql never runs."""
    project = shutil.copytree(default_project, tmp_path / "project")
    env = {**os.environ, **fake_docker(tmp_path, RUN_THE_CONTAINERS_SHELL)}
    tries = tmp_path / "tries"
    for name, body in (("pg_isready", f'echo try >>"{tries}"; sleep 2; exit 2'),
                       ("psql", f'echo psql >>"{tmp_path / "psql"}"; exit 0')):
        (tmp_path / "bin" / name).write_text(f"#!/bin/sh\n{body}\n")
        (tmp_path / "bin" / name).chmod(0o755)
    script = (f"source '{project}/script/functions/common'; source '{project}/script/functions/swarm'; "
              "SWARM_NAME=x POSTGRES_USER=u POSTGRES_DB=d POSTGRES_IMAGE=postgres POSTGRES_PASSWORD_FILE=/dev/null "
              "POSTGRES_APP_PASSWORD_FILE=/dev/null WAIT_TIMEOUT=3 ensure_app_role")
    result = run(["bash", "-c", script], env=env, check=False, timeout=60)
    assert result.returncode != 0
    assert len(tries.read_text().split()) <= 2, tries.read_text()
    assert not (tmp_path / "psql").exists()
    assert result.stderr.strip().splitlines()[-1].endswith("is x_postgres running?"), result.stderr
