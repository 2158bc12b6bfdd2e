"""Least privilege in PostgreSQL on the local swarm (security review M5): Lucky and Hasura connect as the app's
own role `<project_name>_app` (script/deploy's ensure_app_role; `lhd_app_app` for the default answers), which
owns the database and is no superuser; the superuser `<project_name>` stays for maintenance."""

import json

from harness.docker import docker
from harness.names import DEFAULT as NAMES
from harness.wait import until

APP_ROLE = NAMES.app_role


def run_sql(deployment, sql):
    """Hasura's /v2/query run_sql as admin from inside the stack: reachable while the metadata API is enabled
    (upstream gates v1/query, v1/metadata and v2/query together: server/src-lib/Hasura/Server/App.hs)."""
    return deployment.admin_api("POST", "/v2/query", {"type": "run_sql", "args": {"source": "default", "sql": sql}})


def internal_address(deployment, service):
    """The service's running container's address on the stack's internal network (where PostgreSQL sees it)."""
    networks = json.loads(docker("inspect", deployment.container(service), "--format",
                                 "{{json .NetworkSettings.Networks}}").stdout)
    return networks[f"{deployment.swarm_name}_internal"]["IPAddress"]


def users_from(deployment, service):
    """The roles of the service's connections to the database, as pg_stat_activity shows them."""
    address = internal_address(deployment, service)
    rows = deployment.sql(f"SELECT DISTINCT usename FROM pg_stat_activity WHERE client_addr = '{address}' "
                          f"AND datname = current_database()")
    return sorted(rows.split()) or None


def test_hasura_runs_sql_as_the_apps_role_not_a_superuser(live):
    """run_sql answers (the admin secret reaches it), as the app's role, which is no superuser: COPY ... TO
    PROGRAM is refused."""
    answer = run_sql(live, "SELECT current_user::text, rolsuper::text FROM pg_roles WHERE rolname = current_user")
    assert answer["result"][1:] == [[APP_ROLE, "false"]], answer
    refused = run_sql(live, "COPY (SELECT 1) TO PROGRAM 'true'")
    assert "pg_execute_server_program" in json.dumps(refused), refused


def test_lucky_connects_as_the_apps_role(live):
    """Every connection the lucky task holds (its pool, pg_stat_activity by its address) is the app's role's,
    after it answered a request that reads the database. (Hasura's role is asked through run_sql above: the
    local double opens a connection per query, so pg_stat_activity has none of it between requests.)"""
    assert live.get("api", "/api/notes").status_code == 200
    assert until(lambda: users_from(live, "lucky"), 60, "lucky's connections") == [APP_ROLE]
    assert live.sql(f"SELECT rolsuper FROM pg_roles WHERE rolname = '{APP_ROLE}'") == "f"
    assert live.sql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()") == APP_ROLE
