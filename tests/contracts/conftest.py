"""Fixtures of the contracts tier shared by its modules: PostgreSQL on a network of its own, holding the example
`notes` table (test_hasura.py and test_images.py run Hasura and Lucky against it)."""

import pytest

from harness.containers import contract, contract_network
from harness.docker import unique
from harness.postgres import pg_ready, psql
from kit.kit import PINS

POSTGRES = f"postgres:{PINS['_postgres_version']}"
NOTES_SQL = """
CREATE TABLE notes (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(), title text NOT NULL, body text NOT NULL DEFAULT '',
  published boolean NOT NULL DEFAULT false);
INSERT INTO notes (title, body, published) VALUES ('public one', 'a', true), ('draft', 'b', false);
"""


@pytest.fixture(scope="module")
def database(image_mode):
    """A network with PostgreSQL (under a name no other network uses) holding the example `notes` table."""
    env = {"POSTGRES_USER": "app", "POSTGRES_PASSWORD": "pw", "POSTGRES_DB": "app"}
    host = unique("pg")
    with contract_network() as net, contract(POSTGRES, env=env, network=net, aliases=[host], wait=pg_ready()) as pg:
        psql(pg, "app", NOTES_SQL)
        yield {"network": net, "url": f"postgres://app:pw@{host}:5432/app", "pg": pg}


@pytest.fixture
def fresh_database(database):
    """A database of its own (with `notes`), for tests that change metadata or catalog state."""
    name = unique("db").replace("-", "_")
    psql(database["pg"], "app", f"CREATE DATABASE {name}")
    psql(database["pg"], name, NOTES_SQL)
    yield dict(database, url=database["url"].rsplit("/", 1)[0] + f"/{name}", name=name)
    psql(database["pg"], "app", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", check=False)
