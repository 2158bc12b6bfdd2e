"""The metadata database and the catalog the double keeps in it (part of `graphql-engine serve`)."""

import json

import psycopg
from psycopg import sql

from hasura_double.config import Failure

# --- databases and the catalog ------------------------------------------------------

def connect(url):
    return psycopg.connect(url, connect_timeout=3, autocommit=True)


def query(url, statement, params=()):
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        if cur.description is None:
            return None, []
        return [d.name for d in cur.description], cur.fetchall()


class Catalog:
    """The metadata and catalog state in `hdb_catalog` of the metadata database.

    Upstream: server/src-lib/Hasura/Server/Migrate.hs creates hdb_catalog (hdb_version with
    cli_state/console_state, hdb_metadata); server/src-lib/Hasura/RQL/DDL/Metadata.hs
    (runGetCatalogState / runSetCatalogState) serves get_catalog_state / set_catalog_state,
    where config v3 CLIs keep migration state and settings, not in schema_migrations
    (cli/migrate/database/hasuradb/migration_state_catalog_state.go, settings.go)."""

    def __init__(self, url):
        self.url = url

    def prepare(self):
        query(self.url, """
            CREATE SCHEMA IF NOT EXISTS hdb_catalog;
            CREATE TABLE IF NOT EXISTS hdb_catalog.hdb_version (
              hasura_uuid uuid PRIMARY KEY DEFAULT gen_random_uuid(), version text NOT NULL,
              upgraded_on timestamptz NOT NULL DEFAULT now(),
              cli_state jsonb NOT NULL DEFAULT '{}'::jsonb, console_state jsonb NOT NULL DEFAULT '{}'::jsonb);
            CREATE TABLE IF NOT EXISTS hdb_catalog.hdb_metadata (
              id integer PRIMARY KEY, metadata json NOT NULL, resource_version integer NOT NULL DEFAULT 1);
            INSERT INTO hdb_catalog.hdb_version (version)
              SELECT '48' WHERE NOT EXISTS (SELECT 1 FROM hdb_catalog.hdb_version);
        """)

    def metadata(self):
        _, rows = query(self.url, "SELECT metadata FROM hdb_catalog.hdb_metadata WHERE id = 1")
        return rows[0][0] if rows else None

    def store(self, metadata):
        query(self.url, "INSERT INTO hdb_catalog.hdb_metadata (id, metadata) VALUES (1, %s) ON CONFLICT (id) "
                        "DO UPDATE SET metadata = EXCLUDED.metadata, resource_version = "
                        "hdb_catalog.hdb_metadata.resource_version + 1", (json.dumps(metadata),))

    def state(self):
        _, rows = query(self.url, "SELECT hasura_uuid::text, cli_state, console_state FROM hdb_catalog.hdb_version")
        uuid, cli, console = rows[0]
        return {"id": uuid, "cli_state": cli, "console_state": console}

    def set_state(self, kind, state):
        column = {"cli": "cli_state", "console": "console_state"}.get(kind)
        if column is None:
            raise Failure(400, "parse-failed", f"unexpected catalog state type: {kind}", "$.args.type")
        query(self.url, sql.SQL("UPDATE hdb_catalog.hdb_version SET {} = %s").format(sql.Identifier(column)),
              (json.dumps(state),))
