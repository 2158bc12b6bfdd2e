"""Conformance tier: the monitoring stack's app alerts fire when they should and only then (promtool unit
tests on the rendered rules), the app-tasks job turns swarm's tasks into one labelled `up` each (the real
Prometheus against a stand-in Docker API), both Alertmanager configs and every combination of receivers pass
amtool, and the merged stack keeps the Slack receiver a setting and the monitoring UIs as closed as Traefik allows."""

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import yaml

from harness.bake import bake
from harness.combinations import COOKIECUTTER_JSON
from harness.docker import free_port
from harness.proc import popen, run
from harness.rules import checks
from harness.wait import until

FIXTURE = Path(__file__).parent / "fixtures" / "monitoring" / "app_alerts.test.yml"
MONITORING = "Docker/prometheus-swarm"
RULES = f"{MONITORING}/prometheus/rules/task.rules.yml"
DEFAULT_SWARM = COOKIECUTTER_JSON["project_name"]  # swarm_name defaults to project_name
RENAMED_SWARM = "shop_live"
SWARMS = {"default_project": DEFAULT_SWARM, "renamed_project": RENAMED_SWARM}


@pytest.fixture(scope="module")
def renamed_project(tmp_path_factory):
    """The project rendered with a swarm_name of its own: the rules must follow it."""
    return bake(tmp_path_factory.mktemp("renamed"), swarm_name=RENAMED_SWARM)


def promtool_unit_test(rules, swarm, directory, fixture=FIXTURE):
    """Problems from `promtool test rules` of the fixture, its <swarm> set to swarm, against the rule file."""
    spec = yaml.safe_load(fixture.read_text().replace("<swarm>", swarm))
    spec["rule_files"] = [str(rules)]
    test_file = Path(directory) / fixture.name
    test_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    return checks.run_tool(["promtool", "test", "rules", test_file])


@pytest.mark.parametrize("which", sorted(SWARMS))
def test_app_alerts_fire_as_specified(request, which, tmp_path):
    """Scaling lucky to 0, a replica never running and a failing Traefik server each fire their alert; a
    healthy stack (a start-first update included) fires nothing."""
    project = request.getfixturevalue(which)
    assert not promtool_unit_test(project / RULES, SWARMS[which], tmp_path)


def test_every_app_alert_has_a_unit_test(default_project):
    """Each App* alert of the rendered rules is evaluated by the promtool fixture, and every alert the fixture
    evaluates is a rule of the file (a renamed rule cannot leave its test passing on nothing)."""
    groups = yaml.safe_load((default_project / RULES).read_text())["groups"]
    defined = {r["alert"] for g in groups for r in g["rules"] if "alert" in r}
    tested = {t["alertname"] for case in yaml.safe_load(FIXTURE.read_text())["tests"] for t in case["alert_rule_test"]}
    assert {a for a in defined if a.startswith("App")} <= tested <= defined
    assert "TaskHighMemory" in tested


def broken_rules(project, tmp_path, old, new):
    """A copy of the project's rules file with its first `old` replaced by `new` (old must be there)."""
    text = (project / RULES).read_text()
    assert old in text
    rules = tmp_path / "task.rules.yml"
    rules.write_text(text.replace(old, new, 1))
    return rules


# (what breaks, text of the rendered rules, what replaces it): each must fail the unit tests.
BROKEN_RULES = [
    ("scaled to 0 alerts late", "          ) == 0\n        for: 1m\n", "          ) == 0\n        for: 5m\n"),
    ("a service with no series counts for nothing",
     f'            or label_replace(vector(0), "service", "{DEFAULT_SWARM}_lucky", "", "")\n', ""),
    ("counted per task, not per slot", "count by (service, slot) (up{job=\"app-tasks\"})",
     "count by (service, slot, instance) (up{job=\"app-tasks\"})"),
    ("any Traefik service", '{service=~"(lucky|hasura)@swarm"}', ""),
]


@pytest.mark.parametrize(("broken", "old", "new"), BROKEN_RULES, ids=[b[0] for b in BROKEN_RULES])
def test_unit_tests_bite(default_project, tmp_path, broken, old, new):
    """A rule file broken in a way that matters fails the promtool unit tests."""
    rules = broken_rules(default_project, tmp_path, old, new)
    assert promtool_unit_test(rules, DEFAULT_SWARM, tmp_path), f"{broken}: the unit tests still pass"


# --- the data path: backups, the database, the heartbeat (group `data`) ------------------------

DATA_FIXTURE = FIXTURE.with_name("data_alerts.test.yml")
DATA_ALERTS = {"BackupMissing", "BackupFailing", "PostgresDown", "Watchdog"}


@pytest.mark.parametrize("which", sorted(SWARMS))
def test_data_alerts_fire_as_specified(request, which, tmp_path):
    """A stopped scheduler fires BackupMissing for its store, a failing store BackupFailing until its next
    success, no success ever (or no metrics) BackupMissing after an hour, postgres without a running task
    PostgresDown; Watchdog always fires; a healthy data path fires nothing else."""
    project = request.getfixturevalue(which)
    assert not promtool_unit_test(project / RULES, SWARMS[which], tmp_path, DATA_FIXTURE)


def test_every_data_alert_has_a_unit_test(default_project):
    """The group `data` holds exactly the data-path alerts, and the fixture evaluates each."""
    groups = {g["name"]: g for g in yaml.safe_load((default_project / RULES).read_text())["groups"]}
    assert {r["alert"] for r in groups["data"]["rules"]} == DATA_ALERTS
    tested = {t["alertname"] for case in yaml.safe_load(DATA_FIXTURE.read_text())["tests"] for t in case["alert_rule_test"]}
    assert tested == DATA_ALERTS


def backup_metrics(project, tmp_path, *args, **env):
    """Run the backup service's Docker/backup/backup_metrics (sh) on directories in tmp_path; its samples
    {(name, store): value} and the file's text."""
    metrics, store = tmp_path / "metrics", tmp_path / "backups"
    metrics.mkdir(exist_ok=True)
    store.mkdir(exist_ok=True)
    run(["sh", project / "Docker/backup/backup_metrics", *args], timeout=30, env=checks.env_with(
        BACKUP_METRICS_DIR=str(metrics), BACKUP_ROOT=str(store), BACKUP_INTERVAL="3600", **env))
    text = (metrics / "lhd_backup.prom").read_text()
    samples = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            series, value = line.split(" ")
            name, labels = series.rstrip("}").split("{")
            samples[(name, labels.removeprefix('store="').rstrip('"'))] = int(value)
    return samples, text


def test_backup_metrics_file_is_what_the_rules_read(default_project, tmp_path):
    """backup_metrics writes the interval always, the local success from .last_scheduled_success's time, the
    local failure when one is recorded, the offsite ones from .offsite-status (whole numbers only); promtool
    accepts the file, and every metric it writes is one the `data` rules read."""
    samples, _ = backup_metrics(default_project, tmp_path)
    assert samples == {("lhd_backup_interval_seconds", "local"): 3600}
    success = tmp_path / "backups/.last_scheduled_success"
    success.write_text("2026-01-01T00:00:00Z x.dump\n")
    os.utime(success, (1_700_000_000, 1_700_000_000))
    (tmp_path / "backups/.offsite-status").write_text(  # as Docker/backup/offsite records it
        "last_error=boom\nlast_failure=2023-11-14T22:15:00Z\nlast_failure_epoch=17e9\n"
        "last_success=2023-11-14T22:15:00Z\nlast_success_epoch=1700000100\n")
    before = int(time.time())
    samples, text = backup_metrics(default_project, tmp_path, "failure")
    assert samples.pop(("lhd_backup_last_failure_timestamp_seconds", "local")) >= before
    assert samples == {("lhd_backup_interval_seconds", "local"): 3600, ("lhd_backup_interval_seconds", "offsite"): 3600,
                       ("lhd_backup_last_success_timestamp_seconds", "local"): 1_700_000_000,
                       ("lhd_backup_last_success_timestamp_seconds", "offsite"): 1_700_000_100}
    checked = run(["promtool", "check", "metrics"], input=text, check=False, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rules = (default_project / RULES).read_text()
    assert all(name in rules for name, _ in samples)


BROKEN_DATA_RULES = [
    ("one interval late is enough", "> 2 * lhd_backup_interval_seconds", "> 4 * lhd_backup_interval_seconds"),
    ("a store that never succeeded is never failing", " or lhd_backup_last_failure_timestamp_seconds * 0", ""),
    ("no metrics at all counts for nothing", '\n          or absent(lhd_backup_interval_seconds{store="local"})', ""),
    ("postgres with no series counts for nothing",
     f'            or label_replace(vector(0), "service", "{DEFAULT_SWARM}_postgres", "", "")\n', ""),
    ("a starting postgres task counts as up", 'up{job="db-tasks", task_state="running"}', 'up{job="db-tasks"}'),
    ("the heartbeat stops", "expr: vector(1)\n", "expr: vector(1) == 0\n"),
]


@pytest.mark.parametrize(("broken", "old", "new"), BROKEN_DATA_RULES, ids=[b[0] for b in BROKEN_DATA_RULES])
def test_data_unit_tests_bite(default_project, tmp_path, broken, old, new):
    """A data-path rule broken in a way that matters fails the promtool unit tests."""
    rules = broken_rules(default_project, tmp_path, old, new)
    assert promtool_unit_test(rules, DEFAULT_SWARM, tmp_path, DATA_FIXTURE), f"{broken}: the unit tests still pass"


# --- the app-tasks job, in the real Prometheus, against a stand-in Docker API ------------------

NETWORKS = [("net-public", f"{DEFAULT_SWARM}_public"), ("net-internal", f"{DEFAULT_SWARM}_internal")]
SERVICES = {"svc-lucky": "lucky", "svc-hasura": "hasura", "svc-traefik": "traefik"}
# (task id, service, slot, desired state, state): what `docker service ps` would list.
TASKS = [
    ("lucky1a", "lucky", 1, "running", "running"),
    ("lucky1old", "lucky", 1, "shutdown", "shutdown"),  # replaced by an update
    ("lucky2a", "lucky", 2, "remove", "running"),  # scaled down, still stopping
    ("hasura1a", "hasura", 1, "running", "starting"),
    ("hasura1old", "hasura", 1, "shutdown", "failed"),
    ("hasura2b", "hasura", 2, "ready", "ready"),  # restarting: waits out the restart delay
    ("traefik1a", "traefik", 1, "running", "running"),
]
# (instance, service, slot, task_state) of the `up` series the job must give.
WANTED = {(f"{DEFAULT_SWARM}_{service}.{slot}.{task}", f"{DEFAULT_SWARM}_{service}", str(slot), state)
          for task, service, slot, desired, state in TASKS if service != "traefik" and desired in ("running", "ready")}


def docker_api_answers():
    """path suffix -> JSON body, shaped like the Docker Engine API's (moby api/types/swarm)."""
    ids = {name: sid for sid, name in SERVICES.items()}
    tasks = [{
        "ID": task, "ServiceID": ids[service], "NodeID": "node1", "Slot": slot, "DesiredState": desired,
        "Spec": {"ContainerSpec": {"Image": f"{service}:1"}},
        "Status": {"State": state, "ContainerStatus": {"ContainerID": f"c-{task}"}, "PortStatus": {}},
        "NetworksAttachments": [{"Network": {"ID": nid}, "Addresses": [f"10.0.{n}.{i}/24"]}
                                for n, (nid, _) in enumerate(NETWORKS, 1)],
    } for i, (task, service, slot, desired, state) in enumerate(TASKS, 2)]
    services = [{"ID": sid, "Spec": {"Name": f"{DEFAULT_SWARM}_{name}", "Mode": {"Replicated": {"Replicas": 2}},
                                     "TaskTemplate": {"ContainerSpec": {"Image": f"{name}:1"}}},
                 "Endpoint": {"Ports": [], "VirtualIPs": []}} for sid, name in SERVICES.items()]
    nodes = [{"ID": "node1", "Description": {"Hostname": "node-one", "Platform": {"OS": "linux"}, "Engine": {}},
              "Spec": {"Role": "manager", "Availability": "active"}, "Status": {"State": "ready", "Addr": "10.0.0.1"}}]
    networks = [{"Id": nid, "Name": name, "Scope": "swarm", "Driver": "overlay"} for nid, name in NETWORKS]
    return {"/tasks": tasks, "/services": services, "/nodes": nodes, "/networks": networks}


class DockerAPI(BaseHTTPRequestHandler):
    """Answers the read-only calls of Prometheus's dockerswarm_sd (discovery/moby) and its client's ping."""

    answers = docker_api_answers()

    def do_HEAD(self):
        self.reply(b"")

    def do_GET(self):
        path = self.path.split("?")[0]
        if path.endswith("/_ping"):
            return self.reply(b"OK")
        body = next((json.dumps(v).encode() for k, v in self.answers.items() if path.endswith(k)), None)
        if body is None:
            self.send_error(404)
            return None
        return self.reply(body)

    def reply(self, body):
        self.send_response(200)
        self.send_header("Api-Version", "1.41")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def docker_api():
    """The stand-in Docker API on a loopback port; yields its tcp:// address."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), DockerAPI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"tcp://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_app_tasks_job_gives_one_up_per_wanted_task(default_project, docker_api, tmp_path):
    """The rendered app-tasks job, run by the real Prometheus against a stand-in Docker API: one target per
    lucky or hasura task swarm wants (desired running or ready; not shut down, removed, nor Traefik's), one
    per task although each is on two networks, scraped at Prometheus itself, its `up` carrying service,
    slot, task_state and node, and nothing else kept from the scrape."""
    port = free_port()
    rendered = yaml.safe_load((default_project / MONITORING / "prometheus/prometheus.yml").read_text())
    job = next(j for j in rendered["scrape_configs"] if j["job_name"] == "app-tasks")
    assert [c["host"] for c in job["dockerswarm_sd_configs"]] == ["tcp://discovery-proxy:2375"]
    job["dockerswarm_sd_configs"][0]["host"] = docker_api
    address = next(r for r in job["relabel_configs"] if r.get("target_label") == "__address__")
    assert address["replacement"] == "127.0.0.1:9090"
    address["replacement"] = f"127.0.0.1:{port}"
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"global": {"scrape_interval": "1s"}, "scrape_configs": [job]}))
    log = tmp_path / "prometheus.log"
    api = f"http://127.0.0.1:{port}/api/v1"
    with popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}"], log=log):
        def scraped():
            targets = requests.get(f"{api}/targets", timeout=2).json()["data"]["activeTargets"]
            return targets and all(t["health"] == "up" for t in targets)
        until(scraped, 30, lambda: f"Prometheus to discover and scrape the app-tasks targets; its log ends:\n"
              f"{log.read_text()[-3000:]}")
        series = requests.get(f"{api}/query", params={"query": 'up{job="app-tasks"}'}, timeout=2).json()["data"]["result"]
        names = requests.get(f"{api}/label/__name__/values", params={"match[]": '{job="app-tasks"}'}, timeout=2)
    assert {tuple(s["metric"][k] for k in ("instance", "service", "slot", "task_state")) for s in series} == WANTED
    assert all(s["value"][1] == "1" for s in series)
    assert {s["metric"]["node"] for s in series} == {"node-one"}
    kept = set(names.json()["data"])
    assert "up" in kept and all(n == "up" or n.startswith("scrape_") for n in kept), kept


# --- Alertmanager: the two configs --------------------------------------------------------------

ALERTMANAGER_CONFIGS = ["alertmanager.yml", "alertmanager.slack.yml"]


@pytest.mark.parametrize("name", ALERTMANAGER_CONFIGS)
def test_alertmanager_config_passes_amtool(default_project, name):
    """amtool check-config accepts each Alertmanager config (with and without Slack)."""
    assert not checks.amtool(default_project / MONITORING / "alertmanager" / name)


def test_slack_config_differs_only_by_its_receiver(default_project):
    """alertmanager.slack.yml is alertmanager.yml plus a slack_configs entry reading the webhook secret."""
    base, slack = (yaml.safe_load((default_project / MONITORING / "alertmanager" / n).read_text())
                   for n in ALERTMANAGER_CONFIGS)
    receivers = slack["receivers"]
    found = [r.pop("slack_configs") for r in receivers if "slack_configs" in r]
    assert found == [[{"api_url_file": "/run/secrets/slack_webhook", "send_resolved": True}]]
    assert slack == base


# --- receivers besides Slack: a webhook, e-mail, the dead man's switch -----------------------------

RECEIVERS = ("slack", "webhook", "email", "deadman")
COMBINATIONS = [tuple(k for i, k in enumerate(RECEIVERS) if bits >> i & 1) for bits in range(2 ** len(RECEIVERS))]


def receiver_files(directory, on):
    """The env settings switching on the receivers named in `on`, their files written in directory."""
    contents = {
        "SLACK_WEBHOOK_URL_FILE": ("slack", "https://hooks.slack.com/services/T000/B000/XXXX\n"),
        "ALERT_WEBHOOK_URL_FILE": ("webhook", "https://hooks.example.com/alerts?token=a\"b\\c\n"),
        "ALERT_EMAIL_FILE": ("email", "# the team's relay\nto=ops@example.com\nfrom=alerts@example.com\n"
                                      "smarthost=smtp.example.com:587\nusername=alerts\npassword=p\"w:rd\n"),
        "DEADMAN_WEBHOOK_URL_FILE": ("deadman", "https://hc-ping.com/0f0e0d0c\n"),
    }
    env = {}
    for variable, (name, text) in contents.items():
        env[variable] = ""
        if name in on:
            (directory / name).write_text(text)
            env[variable] = str(directory / name)
    return env


def receivers_config(project, env_file, **env):
    result = run([project / "script/monitoring", "receivers"], check=False, timeout=60,
                 env=checks.env_with(LHD_ENV_FILE=str(env_file), **env))
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("on", COMBINATIONS, ids=["+".join(c) or "none" for c in COMBINATIONS])
def test_every_receiver_combination_passes_amtool(default_project, prod_env, tmp_path, on):
    """Each combination of receiver files makes a configuration amtool accepts, whose `team` receiver has exactly
    the switched-on kinds (with the files' values, quotes and all), whose `deadman` receiver has the dead man's
    URL alone, and whose routes are alertmanager.yml's (Watchdog to deadman)."""
    text = receivers_config(default_project, prod_env(default_project), **receiver_files(tmp_path, on))
    written = tmp_path / "alertmanager.yml"
    written.write_text(text)
    assert not checks.amtool(written)
    config = yaml.safe_load(text)
    receivers = {r.pop("name"): r for r in config["receivers"]}
    assert sorted(receivers) == ["deadman", "team"]
    kinds = {"slack_configs": "slack", "webhook_configs": "webhook", "email_configs": "email"}
    assert {kinds[k] for k in receivers["team"]} == set(on) - {"deadman"}
    if "webhook" in on:
        assert receivers["team"]["webhook_configs"] == [{"url": 'https://hooks.example.com/alerts?token=a"b\\c',
                                                         "send_resolved": True}]
    if "email" in on:
        assert receivers["team"]["email_configs"] == [{
            "to": "ops@example.com", "from": "alerts@example.com", "smarthost": "smtp.example.com:587",
            "require_tls": True, "auth_username": "alerts", "auth_password": 'p"w:rd', "send_resolved": True}]
    assert receivers["deadman"] == ({"webhook_configs": [{"url": "https://hc-ping.com/0f0e0d0c", "send_resolved": False}]}
                                    if "deadman" in on else {})
    base = yaml.safe_load((default_project / MONITORING / "alertmanager/alertmanager.yml").read_text())
    assert config["route"] == base["route"] and config["inhibit_rules"] == base["inhibit_rules"]
    assert base["route"]["routes"][0]["matchers"] == ['alertname="Watchdog"']
    assert base["route"]["routes"][0]["receiver"] == "deadman"


@pytest.mark.parametrize("on", [(), ("slack",), ("webhook",), ("email", "deadman")],
                         ids=["none", "slack", "webhook", "email+deadman"])
def test_receivers_reach_alertmanager_as_a_secret(default_project, prod_env, tmp_path, on):
    """With a webhook, e-mail or dead man's file, the merged stack hands Alertmanager its whole configuration as
    a Docker secret (named by a keyed hash) and points --config.file at it; otherwise the config as before."""
    config = monitoring_config(default_project, prod_env(default_project), **receiver_files(tmp_path, on))
    alertmanager = config["services"]["alertmanager"]
    if set(on) - {"slack"}:
        assert "--config.file=/run/secrets/alertmanager.yml" in alertmanager["command"]
        assert {"source": "alertmanager_receivers", "target": "alertmanager.yml"} in alertmanager["secrets"]
        assert config["secrets"]["alertmanager_receivers"]["name"].startswith(f"{DEFAULT_SWARM}_alertmanager_receivers_")
    else:
        assert "--config.file=/etc/alertmanager/alertmanager.yml" in alertmanager["command"]
        assert "alertmanager_receivers" not in config.get("secrets", {})


# --- the merged monitoring stack (docker stack config, no engine) -----------------------------------

def monitoring_config(project, env_file, **env):
    result = run([project / "script/monitoring", "config"], check=False, timeout=60,
                 env=checks.env_with(LHD_ENV_FILE=str(env_file), **env))
    assert result.returncode == 0, result.stdout + result.stderr
    return yaml.safe_load(result.stdout)


@pytest.mark.parametrize("slack", [False, True], ids=["without-slack", "with-slack"])
def test_slack_receiver_is_a_setting(default_project, prod_env, tmp_path, slack):
    """With SLACK_WEBHOOK_URL_FILE, the merged stack mounts the webhook as a secret and deploys the Slack
    config under a name of its own; without it, neither."""
    env = {"SLACK_WEBHOOK_URL_FILE": ""}
    if slack:
        webhook = tmp_path / "slack_webhook"
        webhook.write_text("https://hooks.slack.com/services/T000/B000/XXXX\n")
        env["SLACK_WEBHOOK_URL_FILE"] = str(webhook)
    config = monitoring_config(default_project, prod_env(default_project), **env)
    alertmanager = config["services"]["alertmanager"]
    am_config = config["configs"]["alertmanager_config"]
    if slack:
        assert alertmanager["secrets"] == [{"source": "slack_webhook", "target": "slack_webhook"}]
        assert config["secrets"]["slack_webhook"]["file"] == str(webhook)
        assert am_config["file"].endswith("/alertmanager/alertmanager.slack.yml")
        assert am_config["name"].startswith(f"{DEFAULT_SWARM}_alertmanager_slack_")
    else:
        assert "secrets" not in alertmanager and "slack_webhook" not in config.get("secrets", {})
        assert am_config["file"].endswith("/alertmanager/alertmanager.yml")
        assert "slack" not in am_config["name"]


def test_only_routed_uis_join_the_dashboards_network_and_prometheus_has_no_lifecycle(default_project, prod_env):
    """No monitoring service joins the app's public network; on the dashboards network (shared with Traefik only)
    sit exactly the services Traefik routes to; Prometheus's lifecycle API is off."""
    config = monitoring_config(default_project, prod_env(default_project))
    networks = {name: set(svc.get("networks") or {}) for name, svc in config["services"].items()}
    routed = {name for name, svc in config["services"].items()
              if ((svc.get("deploy") or {}).get("labels") or {}).get("traefik.enable") == "true"}
    assert [name for name, nets in networks.items() if "public" in nets] == []
    assert {name for name, nets in networks.items() if "dashboards" in nets} == routed == {"prometheus", "alertmanager",
                                                                                          "grafana"}
    assert config["networks"]["dashboards"]["name"] == f"{DEFAULT_SWARM}_dashboards"
    assert not [flag for flag in config["services"]["prometheus"]["command"] if "lifecycle" in flag or "admin-api" in flag]


# --- the certificates group (Traefik's certificate metrics) ----------------------------------------

CERT_FIXTURE = Path(__file__).parent / "fixtures" / "monitoring" / "certificate_alerts.test.yml"
CERT_ALERTS = {"CertificateExpiresSoon", "CertificateIssuanceFailing"}


def promtool_certificate_test(rules, directory):
    """Problems from `promtool test rules` of the certificate fixture against the rule file."""
    spec = yaml.safe_load(CERT_FIXTURE.read_text())
    spec["rule_files"] = [str(rules)]
    test_file = Path(directory) / CERT_FIXTURE.name
    test_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    return checks.run_tool(["promtool", "test", "rules", test_file])


def test_certificate_alerts_fire_as_specified(default_project, tmp_path):
    """A certificate left unrenewed fires CertificateExpiresSoon (and a renewed one's old series does not); Traefik
    up with no certificate for 15 minutes fires CertificateIssuanceFailing."""
    assert not promtool_certificate_test(default_project / RULES, tmp_path)


def test_certificate_alerts_are_the_last_group_and_all_tested(default_project):
    """The certificates group ends the file and each of its alerts is evaluated by the fixture."""
    groups = yaml.safe_load((default_project / RULES).read_text())["groups"]
    assert groups[-1]["name"] == "certificates"
    assert {r["alert"] for r in groups[-1]["rules"]} == CERT_ALERTS
    tested = {t["alertname"] for case in yaml.safe_load(CERT_FIXTURE.read_text())["tests"]
              for t in case["alert_rule_test"]}
    assert tested == CERT_ALERTS


BROKEN_CERT_RULES = [
    ("a renewed certificate's old series fires", "max by (sans) (traefik_tls_certs_not_after)",
     "traefik_tls_certs_not_after"),
    ("certificates without a common name count as one", "max by (sans)", "max by (cn)"),
    ("a day left is too late", "< 7 * 86400", "< 1 * 86400"),
    ("no certificate never fires", 'up{job="traefik"} == 1 unless on (instance) traefik_tls_certs_not_after',
     'up{job="traefik"} == 0'),
    ("issuance failing alerts late", "        for: 15m\n", "        for: 30m\n"),
]


@pytest.mark.parametrize(("broken", "old", "new"), BROKEN_CERT_RULES, ids=[b[0] for b in BROKEN_CERT_RULES])
def test_certificate_unit_tests_bite(default_project, tmp_path, broken, old, new):
    """A certificates group broken in a way that matters fails the promtool unit tests."""
    rules = broken_rules(default_project, tmp_path, old, new)
    assert promtool_certificate_test(rules, tmp_path), f"{broken}: the unit tests still pass"
