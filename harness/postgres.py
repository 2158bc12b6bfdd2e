"""PostgreSQL in a contract container: wait until it takes TCP connections, run psql inside it, read a row over TCP."""

import psycopg
from testcontainers.core.wait_strategies import ExecWaitStrategy

from harness.containers import execute


def pg_ready(user="app", db="app", timeout=60):
    """Wait strategy: PostgreSQL accepts TCP connections (initdb's private server listens on no TCP address)."""
    command = ["pg_isready", "-h", "127.0.0.1", "-U", user, "-d", db]
    return ExecWaitStrategy(command).with_startup_timeout(timeout).with_poll_interval(0.5)


def psql(pg, db, sql, tuples=False, check=True):
    """psql -c sql as `app` on db inside the PostgreSQL container (stops on the first error); -tA when tuples."""
    flags = ["-tA"] if tuples else []
    return execute(pg, "psql", "-v", "ON_ERROR_STOP=1", *flags, "-h", "127.0.0.1", "-U", "app", "-d", db, "-c", sql,
                   check=check)


def fetch_one(dsn, sql):
    """The first row of sql over a real TCP connection to dsn."""
    with psycopg.connect(dsn, connect_timeout=3) as connection:
        return connection.execute(sql).fetchone()
