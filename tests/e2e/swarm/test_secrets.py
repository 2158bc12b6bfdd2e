"""Secrets on the local swarm: the application's secrets reach PostgreSQL, Hasura and Lucky as Docker
secrets (files), so no service definition and no `--config` output holds a value, and one secret can be
rotated while reads keep flowing."""

import json
import threading
import time

from harness.docker import docker
from harness.names import DEFAULT as NAMES
from harness.swarm import NOTES, SHA1
from harness.wait import until

APP_SECRETS = ("POSTGRES_PASSWORD", "POSTGRES_APP_PASSWORD", "HASURA_GRAPHQL_ADMIN_SECRET", "HASURA_JWT_KEY", "SECRET_KEY_BASE")


def test_no_secret_value_in_any_service_definition(live):
    """`docker service inspect` of every service, and `script/deploy --config`, show no secret's value; the services
    mount them under /run/secrets instead."""
    values = {name: live.secret(name) for name in APP_SECRETS}
    services = docker("service", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={NAMES.swarm}").stdout.split()
    inspected = docker("service", "inspect", *services).stdout
    config = live.script("deploy", "--config", SHA1).stdout
    assert [n for n, v in values.items() if v in inspected] == []
    assert [n for n, v in values.items() if v in config] == []
    mounted = {s["Spec"]["Name"].removeprefix(f"{NAMES.swarm}_"):
               sorted(ref["File"]["Name"] for ref in s["Spec"]["TaskTemplate"]["ContainerSpec"].get("Secrets", []))
               for s in json.loads(inspected)}
    # Lucky and Hasura hold the app's role's password, not the superuser's (review M5).
    assert mounted["hasura"] == ["hasura_admin_secret", "hasura_jwt_key", "postgres_app_password"]
    assert mounted["lucky"] == ["postgres_app_password", "secret_key_base", "send_grid_key"]
    assert mounted["postgres"] == mounted["backup"] == ["postgres_password"]


class Reader(threading.Thread):
    """Reads notes through Traefik as the JWT `user` role every 100 ms until stopped (at most `limit` seconds);
    counts answers and failures."""

    def __init__(self, deployment, limit=240):
        super().__init__(daemon=True)
        self.deployment, self.limit = deployment, limit
        self.ok, self.failures = 0, []
        self.stop = threading.Event()

    def run(self):
        client = self.deployment.graphql(user=True)
        deadline = time.monotonic() + self.limit
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                client.execute(NOTES)
                self.ok += 1
            except Exception as error:  # any failure counts: a refused read is downtime
                self.failures.append(repr(error)[:200])
            time.sleep(0.1)


def test_rotating_the_admin_secret_keeps_reads_flowing(live):
    """A new admin secret file, then `script/deploy`: Hasura rolls onto the new Docker secret start-first while
    JWT reads through Traefik never fail; the new secret works and the old one is refused."""
    old = live.admin_secret()
    until(lambda: live.graphql(user=True).execute(NOTES), 90, "JWT reads through Traefik")
    reader = Reader(live)
    reader.start()
    try:
        live.secret_file("HASURA_GRAPHQL_ADMIN_SECRET").write_text("ab" * 32 + "\n")
        result = live.deploy(SHA1)
    finally:
        reader.stop.set()
        reader.join(timeout=30)
    assert "✔ All done." in result.stdout
    assert reader.failures == [] and reader.ok > 100, (reader.ok, reader.failures[:5])
    assert "data" in until(lambda: live.admin_graphql("{ notes { title } }"), 60, "the new admin secret to be accepted")
    refused = live.admin_graphql("{ notes { title } }", secret=old)
    assert refused["errors"][0]["extensions"]["code"] == "access-denied", refused
