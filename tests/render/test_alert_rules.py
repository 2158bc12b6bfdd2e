"""Where alerts go: script/monitoring adds the Slack receiver's overlay when SLACK_WEBHOOK_URL_FILE is set,
and only then, and refuses a setting naming a missing file in one line. No Docker: a fake `docker` prints
the arguments and the webhook's version it is given (the lint tier merges the real files)."""

import hashlib
import hmac
import os
import re

import pytest

from harness.docker import fake_docker
from harness.proc import run

OVERLAY = "Docker/prometheus-swarm/docker-compose.slack.yml"
FAKE_DOCKER = """printf 'SLACK_WEBHOOK_VERSION=%s\\n' "${SLACK_WEBHOOK_VERSION:-}"
printf '%s\\n' "$@"
"""
WEBHOOK = "https://hooks.slack.com/services/T000/B000/XXXX\n"


@pytest.fixture
def server(default_project, tmp_path):
    """The environment of a server: the env file and secrets script/bootstrap writes (in tmp_path), and a fake
    `docker` first on PATH."""
    env = {k: v for k, v in os.environ.items() if k != "SLACK_WEBHOOK_URL_FILE"}
    env.update(fake_docker(tmp_path, FAKE_DOCKER), LHD_ENV_FILE=str(tmp_path / "production.env"),
               LHD_SECRETS_DIR=str(tmp_path / "secrets"), HTTPS_SWITCH="on")
    run([default_project / "script/bootstrap"], env=env, timeout=60)
    return env


def monitoring_config(project, env, **extra):
    return run([project / "script/monitoring", "config"], env={**env, **extra}, check=False, timeout=60)


def compose_files(stdout):
    """The files a `docker stack config` call was given, in order."""
    args = stdout.splitlines()[1:]
    assert args[:2] == ["stack", "config"], args
    return [args[i + 1] for i, arg in enumerate(args) if arg == "-c"]


def uncomment_slack_line(env_file):
    """Uncomment the SLACK_WEBHOOK_URL_FILE line script/bootstrap wrote; return the path it names."""
    text = env_file.read_text()
    match = re.search(r"^# (SLACK_WEBHOOK_URL_FILE=(.+))$", text, re.M)
    assert match, f"script/bootstrap wrote no commented SLACK_WEBHOOK_URL_FILE line:\n{text}"
    env_file.write_text(text.replace(match.group(0), match.group(1)))
    return match.group(2)


def test_without_the_setting_no_slack_overlay(default_project, server):
    """The env file as script/bootstrap writes it (the setting commented out): no Slack overlay, no version."""
    result = monitoring_config(default_project, server)
    assert result.returncode == 0, result.stdout + result.stderr
    files = compose_files(result.stdout)
    assert files[0] == str(default_project / "Docker/prometheus-swarm/docker-compose.yml")
    assert str(default_project / OVERLAY) not in files
    assert result.stdout.splitlines()[0] == "SLACK_WEBHOOK_VERSION="


def test_uncommented_setting_adds_the_overlay(default_project, server, tmp_path):
    """Uncommenting script/bootstrap's line, with the webhook in the file it names, adds the overlay after
    the stack's own files and before site overrides, and names the secret by a keyed hash of the file."""
    webhook = uncomment_slack_line(tmp_path / "production.env")
    assert webhook == str(tmp_path / "secrets/slack_webhook")
    (tmp_path / "secrets/slack_webhook").write_text(WEBHOOK)
    site = tmp_path / "site.yml"
    result = monitoring_config(default_project, server, LHD_MONITORING_EXTRA_COMPOSE_FILES=str(site))
    assert result.returncode == 0, result.stdout + result.stderr
    files = compose_files(result.stdout)
    assert files[-2:] == [str(default_project / OVERLAY), str(site)]
    # A keyed hash under the server's .version_key (script/functions/swarm content_hash_of_files).
    key = bytes.fromhex((tmp_path / "secrets/.version_key").read_text().strip())
    version = hmac.new(key, WEBHOOK.encode(), hashlib.sha256).hexdigest()[:12]
    assert result.stdout.splitlines()[0] == f"SLACK_WEBHOOK_VERSION={version}"


@pytest.mark.parametrize("content", [None, ""], ids=["missing", "empty"])
def test_setting_naming_no_webhook_is_refused_in_one_line(default_project, server, tmp_path, content):
    """SLACK_WEBHOOK_URL_FILE naming a missing or empty file stops script/monitoring with one line naming
    both, before Docker is called."""
    webhook = tmp_path / "nowhere" / "slack_webhook"
    if content is not None:
        webhook.parent.mkdir()
        webhook.write_text(content)
    result = monitoring_config(default_project, server, SLACK_WEBHOOK_URL_FILE=str(webhook))
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "SLACK_WEBHOOK_URL_FILE" in lines[0] and str(webhook) in lines[0]


def test_empty_setting_means_no_slack(default_project, server):
    """SLACK_WEBHOOK_URL_FILE= (set but empty) is the same as unset."""
    result = monitoring_config(default_project, server, SLACK_WEBHOOK_URL_FILE="")
    assert result.returncode == 0, result.stdout + result.stderr
    assert str(default_project / OVERLAY) not in compose_files(result.stdout)


# --- receivers besides Slack: a webhook, e-mail, the dead man's switch -------------------------------

RECEIVERS_OVERLAY = "Docker/prometheus-swarm/docker-compose.receivers.yml"
# (setting, file content or None for a missing file, what the one line must name)
BAD_RECEIVERS = [
    ("ALERT_WEBHOOK_URL_FILE", None, "missing or empty"),
    ("ALERT_WEBHOOK_URL_FILE", "hooks.example.com/no-scheme\n", "one http:// or https:// URL"),
    ("DEADMAN_WEBHOOK_URL_FILE", "https://hc-ping.com/a\nhttps://hc-ping.com/b\n", "one http:// or https:// URL"),
    ("ALERT_EMAIL_FILE", "to=ops@example.com\nfrom=alerts@example.com\n", "sets no smarthost"),
    ("ALERT_EMAIL_FILE", "to=a@b.c\nfrom=d@e.f\nsmarthost=smtp.example.com\n", "must be HOST:PORT"),
    ("ALERT_EMAIL_FILE", "to=a@b.c\nfrom=d@e.f\nsmarthost=smtp:25\npasword=x\n", "line 4"),
    ("ALERT_EMAIL_FILE", "to=a@b.c\nfrom=d@e.f\nsmarthost=smtp:25\npassword=x\n", "no username"),
]


@pytest.mark.parametrize(("setting", "content", "named"), BAD_RECEIVERS,
                         ids=[f"{s}-{n.replace(' ', '-')}" for s, _, n in BAD_RECEIVERS])
def test_bad_receiver_file_is_refused_in_one_line(default_project, server, tmp_path, setting, content, named):
    """A receiver setting naming a missing file, a file without one URL, or e-mail settings that cannot work
    stops script/monitoring with one line naming the setting and the file, before Docker is called; the URL or
    password is never printed."""
    path = tmp_path / "receiver"
    if content is not None:
        path.write_text(content)
    result = monitoring_config(default_project, server, **{setting: str(path)})
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert setting in lines[0] and str(path) in lines[0] and named in lines[0], lines[0]
    assert "hc-ping.com" not in lines[0] and "=x" not in lines[0]


def test_receiver_settings_add_their_overlay_last_but_site_overrides(default_project, server, tmp_path):
    """A webhook file adds the receivers overlay after the stack's own files (Slack's included) and before site
    overrides, and names its secret by a version; without one, no overlay."""
    (tmp_path / "hook").write_text("https://hooks.example.com/x\n")
    site = tmp_path / "site.yml"
    result = monitoring_config(default_project, server, ALERT_WEBHOOK_URL_FILE=str(tmp_path / "hook"),
                               LHD_MONITORING_EXTRA_COMPOSE_FILES=str(site))
    assert result.returncode == 0, result.stdout + result.stderr
    assert compose_files(result.stdout)[-2:] == [str(default_project / RECEIVERS_OVERLAY), str(site)]
    plain = monitoring_config(default_project, server)
    assert str(default_project / RECEIVERS_OVERLAY) not in compose_files(plain.stdout)
