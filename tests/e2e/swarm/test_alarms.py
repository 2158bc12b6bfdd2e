"""Swarm tier: the data-path alarms on the live stack, delivered by the real Alertmanager.

The backup service writes its metrics file, node-exporter serves it, Prometheus evaluates the `data` rules;
Alertmanager, deployed by `script/monitoring up` with ALERT_WEBHOOK_URL_FILE, ALERT_EMAIL_FILE and
DEADMAN_WEBHOOK_URL_FILE, delivers to a sink container on a network of the test's own: an HTTP server (the
webhook and the dead man's switch) and a real SMTP server (aiosmtpd). The sink writes what it receives into a
directory the test reads; the test talks to nothing but that directory and Traefik on 127.0.0.1.

Shortened for the test (harness, not the project): BACKUP_INTERVAL=30 (harness/swarm.py), and the `for:` of
BackupMissing (overdue) and BackupFailing, a minute in the project, set to ALERT_FOR by a harness copy of the
rules file (harness/stack.py short_alert_rules; their expressions are the project's, and the promtool unit tests
in tests/lint keep the minute). So BackupMissing fires about 70 s after the backup service stops (twice the
interval, then ALERT_FOR). The monitoring stack gets those compose files (LHD_MONITORING_EXTRA_COMPOSE_FILES),
one attaching Alertmanager to the sink's network; it is put back as found afterwards.
"""

import email
import json
import time
from email import policy
from pathlib import Path

import aiosmtpd
import attr
import public
import pytest
import yaml

from harness import reaper
from harness.docker import docker, unique
from harness.stack import short_alert_rules
from harness.swarm import ALERT_FOR, SHA1
from harness.wait import until

DATA_ALERTS = {"BackupMissing": "1m", "BackupFailing": "1m"}  # the project's for: (BackupMissing "never" keeps 1h)
SINK_IMAGE = "lhd-kit/runtime:bookworm"  # Debian's python3 (kit/kit.py RUNTIME)
# The sink: POSTs to /<name> are saved as <name>-<n>, mails as mail-<n>, each whole (written aside, then renamed).
SINK = """
import itertools, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from aiosmtpd.controller import Controller

count = itertools.count()

def save(kind, data):
    n = next(count)
    with open(f"/out/.{kind}-{n}", "wb") as f:
        f.write(data)
    os.rename(f"/out/.{kind}-{n}", f"/out/{kind}-{n:05d}")

class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        save(self.path.strip("/").replace("/", "_") or "root", self.rfile.read(int(self.headers.get("Content-Length", 0))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass

class Mail:
    async def handle_DATA(self, server, session, envelope):
        save("mail", envelope.content)
        return "250 OK"

Controller(Mail(), hostname="0.0.0.0", port=2525).start()
server = ThreadingHTTPServer(("0.0.0.0", 8080), Hook)
open("/out/ready", "w").close()
server.serve_forever()
"""


def package_dir(module):
    """The directory a pure-Python package of this venv lives in (mounted into the sink for its python3)."""
    return Path(module.__file__).parent


@pytest.fixture
def sink(tmp_path):
    """A sink container on an attachable overlay network of the test's own (alias `sink`); yields
    (network name, directory of what it received). Removed afterwards."""
    out = tmp_path / "received"
    out.mkdir()
    (tmp_path / "sink.py").write_text(SINK)
    network = unique("lhd-alarms")
    docker("network", "create", "--driver", "overlay", "--attachable", *reaper.label_args(), network)
    name = unique("lhd-alarms-sink")
    mounts = [arg for module in (aiosmtpd, public, attr) for arg in
              ("-v", f"{package_dir(module)}:/deps/{package_dir(module).name}:ro")]
    try:
        docker("run", "-d", "--name", name, *reaper.label_args(), "--network", network, "--network-alias", "sink",
               "-v", f"{out}:/out", "-v", f"{tmp_path / 'sink.py'}:/sink.py:ro", *mounts, "-e", "PYTHONPATH=/deps",
               "--entrypoint", "python3", SINK_IMAGE, "/sink.py")
        until((out / "ready").exists, 60, lambda: f"the sink to start:\n{docker('logs', name, check=False).stderr}")
        yield network, out
    finally:
        docker("rm", "-f", name, check=False)
        until(lambda: docker("network", "rm", network, check=False).returncode == 0
              or network not in docker("network", "ls", "--format", "{{.Name}}").stdout.split(), 120,
              f"the network {network} to be free to remove")


@pytest.fixture
def receivers(live, monitoring, sink, tmp_path):
    """The monitoring stack redeployed with the three receivers aimed at the sink, Alertmanager on its network, and
    the data alerts' `for:` shortened; afterwards deployed again as `monitoring` left it. Yields the sink's
    directory."""
    network, out = sink
    files = {
        "ALERT_WEBHOOK_URL_FILE": "http://sink:8080/webhook\n",
        "DEADMAN_WEBHOOK_URL_FILE": "http://sink:8080/deadman\n",
        "ALERT_EMAIL_FILE": "to=ops@example.test\nfrom=alertmanager@example.test\nsmarthost=sink:2525\nrequire_tls=false\n",
    }
    env = {}
    for variable, text in files.items():
        (tmp_path / variable.lower()).write_text(text)
        env[variable] = str(tmp_path / variable.lower())
    override = tmp_path / "sink-network.yml"
    override.write_text(yaml.safe_dump({"services": {"alertmanager": {"networks": {"sinks": {}}}},
                                        "networks": {"sinks": {"name": network, "external": True}}}))
    short = short_alert_rules(live.project, tmp_path, live.swarm_name, {**live.short_alerts, **DATA_ALERTS},
                              ALERT_FOR)  # in place of the deployment's own short rules (live.alert_override)
    extra = [str(f) for f in (live.monitoring_override, override, short) if f]
    live.script("monitoring", "up", env={**env, "LHD_MONITORING_EXTRA_COMPOSE_FILES": ":".join(extra)})
    try:
        yield out
    finally:
        live.script("monitoring", "up")


def received(out, kind):
    """What the sink saved of kind (webhook, deadman: JSON bodies; mail: parsed messages), oldest first."""
    paths = sorted(out.glob(f"{kind}-*"))
    if kind == "mail":
        return [email.message_from_bytes(p.read_bytes(), policy=policy.default) for p in paths]
    return [json.loads(p.read_text()) for p in paths]


def alert_names(bodies, status="firing"):
    return {a["labels"]["alertname"] for body in bodies for a in body["alerts"] if a["status"] == status}


def prometheus_query(live, query):
    answer = live.get("prometheus", "/api/v1/query", params={"query": query}, auth=("admin", live.dashboard_password))
    return answer.json()["data"]["result"] if answer.status_code == 200 else None


def test_backup_stopped_fires_backup_missing_to_webhook_and_email_and_watchdog_reaches_the_dead_mans_switch(
        live, receivers):
    """The backup service's metrics reach Prometheus through node-exporter; the Watchdog heartbeat arrives at the
    dead man's receiver (and only there); with the backup service scaled to 0, BackupMissing for the local store
    reaches the webhook and, as a real e-mail, the SMTP server; scaled back, the service runs again."""
    success = until(lambda: prometheus_query(live, 'lhd_backup_last_success_timestamp_seconds{store="local"}'), 120,
                    "Prometheus to have the backup service's last success (node-exporter's textfile)", pause=3)
    assert time.time() - float(success[0]["value"][1]) < 600
    assert success[0]["metric"]["job"] == "node-exporter"

    # The backup service stops first, so BackupMissing's two intervals and its minute run while the heartbeat is
    # awaited (they were waited out one after the other).
    service = f"{live.swarm_name}_backup"
    docker("service", "scale", "--detach", f"{service}=0")
    stopped = time.monotonic()
    try:
        heartbeats = until(lambda: "Watchdog" in alert_names(received(receivers, "deadman"))
                           and received(receivers, "deadman"), 180,
                           "the Watchdog heartbeat to reach the dead man's receiver", pause=2)
        assert alert_names(heartbeats) == {"Watchdog"}
        assert "Watchdog" not in alert_names(received(receivers, "webhook"))
        until(lambda: "BackupMissing" in alert_names(received(receivers, "webhook")), 300,
              lambda: f"BackupMissing to reach the webhook; the sink has {sorted(p.name for p in receivers.iterdir())}",
              pause=5)
        missing = time.monotonic() - stopped
        mails = until(lambda: [m for m in received(receivers, "mail") if "BackupMissing" in m["Subject"]], 120,
                      "the BackupMissing e-mail to reach the SMTP server", pause=2)
    finally:
        docker("service", "scale", "--detach", f"{service}=1")
        until(lambda: docker("service", "ls", "--filter", f"name={service}", "--format", "{{.Replicas}}").stdout.split()
              == ["1/1"], 180, f"{service} to run again", pause=2)
    alert = next(a for body in received(receivers, "webhook") for a in body["alerts"]
                 if a["labels"]["alertname"] == "BackupMissing")
    assert alert["labels"]["store"] == "local" and alert["labels"]["severity"] == "critical"
    assert alert["labels"]["reason"] == "overdue"
    assert alert["labels"]["swarm"] == live.swarm_name
    assert mails[0]["To"] == "ops@example.test" and mails[0]["From"] == "alertmanager@example.test"
    print(f"BackupMissing reached the webhook {missing:.0f} s after the backup service was scaled to 0")


OFFSITE = {"OFFSITE_REPOSITORY": "s3:http://lhd-no-store.invalid:8080/backups", "OFFSITE_CONNECT_TIMEOUT": "5",
           "OFFSITE_POLL": "10"}


@pytest.fixture
def unreachable_offsite(live, tmp_path):
    """Offsite copies on, aimed at a store that does not exist; the env file put back and redeployed afterwards."""
    keys = {"OFFSITE_S3_KEY_ID_FILE": "key-id\n", "OFFSITE_S3_SECRET_FILE": "secret\n"}
    for key, text in keys.items():
        (tmp_path / key.lower()).write_text(text)
    with live.changed_settings(SHA1, {**OFFSITE, **{key: str(tmp_path / key.lower()) for key in keys}}):
        yield live


def test_an_offsite_failure_fires_backup_failing_to_the_webhook(unreachable_offsite, receivers):
    """A store that does not answer: script/backup keeps its local dump and says so in one line; the backup service
    exports the offsite failure the offsite copy recorded, and BackupFailing{store="offsite"} reaches the webhook."""
    live = unreachable_offsite
    started = time.monotonic()
    result = live.script("backup", check=False)
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(errors) == 1, errors
    assert "cannot be opened" in errors[0] and "lhd-no-store.invalid" in errors[0], errors
    assert "Wrote " in result.stdout  # the local dump was written before the upload failed
    failing = until(lambda: [a for body in received(receivers, "webhook") for a in body["alerts"]
                             if a["labels"]["alertname"] == "BackupFailing" and a["status"] == "firing"], 300,
                    "BackupFailing for the offsite store to reach the webhook", pause=5)
    assert {a["labels"]["store"] for a in failing} == {"offsite"}
    assert failing[0]["labels"]["swarm"] == live.swarm_name
    print(f"BackupFailing (offsite) reached the webhook {time.monotonic() - started:.0f} s after the failed upload")
