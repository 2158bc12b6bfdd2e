"""script/docker/with_secrets, the entrypoint of the production Lucky and Hasura images, run by this machine's
POSIX sh outside any container (the images run it with busybox ash and dash; the swarm tier runs it there):
Docker secrets become the variables the programs read, and STOP_DELAY holds SIGTERM back while Traefik drops
the task."""

import json
import os
import signal
import sys
import time
import urllib.parse

import pytest

from harness.proc import PIPE, popen, run

# The child: prints the variables it was given, then waits for SIGTERM and reports when it came.
CHILD = """
import json, os, signal, sys, time
start, termed = time.monotonic(), []
signal.signal(signal.SIGTERM, lambda *_: termed.append(time.monotonic() - start))
print(json.dumps({k: v for k, v in os.environ.items() if k not in ("PATH", "PWD")}), flush=True)
while not termed:
    time.sleep(0.05)
print(json.dumps({"term_after": termed[0]}), flush=True)
sys.exit(7)
"""


@pytest.fixture
def with_secrets(default_project):
    return default_project / "script/docker/with_secrets"


def clean_env(**extra):
    return {"PATH": os.environ["PATH"], **extra}


def test_secret_files_become_the_variables_programs_read(with_secrets, tmp_path):
    """NAME_FILE gives NAME (trailing newline dropped); the database URLs and Hasura's JWT secret are assembled."""
    files = {"POSTGRES_PASSWORD": "pw1", "HASURA_JWT_KEY": "k" * 32, "SECRET_KEY_BASE": "s3"}
    env = clean_env(POSTGRES_USER="app", POSTGRES_DB="appdb")
    for name, value in files.items():
        (tmp_path / name).write_text(value + "\n")
        env[f"{name}_FILE"] = str(tmp_path / name)
    result = run(["sh", with_secrets, sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"],
                 env=env, timeout=30)
    seen = json.loads(result.stdout)
    assert {k: seen[k] for k in files} == files
    assert seen["DATABASE_URL"] == seen["HASURA_GRAPHQL_DATABASE_URL"] == "postgres://app:pw1@postgres:5432/appdb"
    assert json.loads(seen["HASURA_GRAPHQL_JWT_SECRET"]) == {"type": "HS256", "key": "k" * 32}


@pytest.mark.parametrize(("content", "message"), [(None, "cannot be read"), ("", "is empty")], ids=["missing", "empty"])
def test_a_bad_secret_file_stops_the_container_naming_it(with_secrets, tmp_path, content, message):
    """A secret file that is missing or empty: exit 1 naming the variable and the file; the program never runs."""
    path = tmp_path / "admin_secret"
    if content is not None:
        path.write_text(content)
    result = run(["sh", with_secrets, "touch", tmp_path / "ran"], check=False, timeout=30,
                 env=clean_env(HASURA_GRAPHQL_ADMIN_SECRET_FILE=str(path)))
    assert result.returncode == 1
    assert message in result.stderr and str(path) in result.stderr
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("value", ["ten", "-1", "1.5"])
def test_stop_delay_must_be_whole_seconds(with_secrets, tmp_path, value):
    result = run(["sh", with_secrets, "touch", tmp_path / "ran"], check=False, timeout=30,
                 env=clean_env(STOP_DELAY=value))
    assert result.returncode == 1 and f"STOP_DELAY must be a whole number of seconds, not '{value}'" in result.stderr
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize(("delay", "at_least", "at_most"), [("0", 0, 1.5), ("2", 1.9, 4)], ids=["no-delay", "delay-2"])
def test_sigterm_reaches_the_program_after_stop_delay(with_secrets, delay, at_least, at_most):
    """SIGTERM to the entrypoint reaches the program STOP_DELAY seconds later (at once without it); the program
    serves meanwhile, and its exit status is the entrypoint's."""
    with popen(["sh", with_secrets, sys.executable, "-c", CHILD], env=clean_env(STOP_DELAY=delay), stdout=PIPE,
               stderr=PIPE, text=True) as proc:
        json.loads(proc.stdout.readline())  # the child runs
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        report = json.loads(proc.stdout.readline())
        waited = time.monotonic() - sent
        assert proc.wait(timeout=30) == 7, proc.stderr.read()
    assert at_least <= waited <= at_most, (waited, report)


def print_env(with_secrets, env, shell="sh"):
    """Run with_secrets (under shell) with env and a program that prints its environment as JSON."""
    result = run([shell, with_secrets, sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"],
                 env=env, timeout=30)
    return json.loads(result.stdout)


@pytest.mark.parametrize("shell", ["sh", "dash", "bash"])
def test_other_file_variables_are_left_alone(with_secrets, tmp_path, shell):
    """Only the application's secrets are read (review L6 a, b): LOG_FILE naming a file not yet made does not stop
    the container, SSL_CERT_FILE is not slurped into SSL_CERT, and a NAME_FILE= line forged inside another
    variable's value is not read."""
    (tmp_path / "cert.pem").write_text("CERT\n")
    seen = print_env(with_secrets, clean_env(LOG_FILE="/var/log/app/not-yet.log", SSL_CERT_FILE=str(tmp_path / "cert.pem"),
                                             NOTE="x\nEVIL_FILE=/etc/hostname"), shell)
    assert seen["LOG_FILE"] == "/var/log/app/not-yet.log" and "SSL_CERT" not in seen and "EVIL" not in seen


def test_with_secrets_reads_the_names_it_is_given(with_secrets, tmp_path):
    """WITH_SECRETS names the secrets to read, replacing the default list."""
    (tmp_path / "extra").write_text("e1\n")
    (tmp_path / "pw").write_text("p1\n")
    seen = print_env(with_secrets, clean_env(WITH_SECRETS="EXTRA", EXTRA_FILE=str(tmp_path / "extra"),
                                             POSTGRES_PASSWORD_FILE=str(tmp_path / "pw")))
    assert seen["EXTRA"] == "e1" and "POSTGRES_PASSWORD" not in seen


@pytest.mark.parametrize("shell", ["sh", "dash", "bash"])
def test_any_password_and_key_make_a_valid_url_and_json(with_secrets, tmp_path, shell):
    """A password set by hand (review L6 c, d) is percent-encoded in the database URLs, a JWT key with " and \\ is
    JSON-escaped, and a CRLF file loses its carriage return: the URL parses back to the very password."""
    password, key = "p@ss/w#rd?:%é ", 'ab"c\\d'
    (tmp_path / "pw").write_bytes(password.encode() + b"\r\n")
    (tmp_path / "jwt").write_bytes(key.encode() + b"\r\n")
    seen = print_env(with_secrets, clean_env(POSTGRES_USER="app", POSTGRES_DB="db", POSTGRES_PASSWORD_FILE=str(tmp_path / "pw"),
                                             HASURA_JWT_KEY_FILE=str(tmp_path / "jwt")), shell)
    assert seen["POSTGRES_PASSWORD"] == password
    url = urllib.parse.urlsplit(seen["DATABASE_URL"])
    assert (url.hostname, url.port, url.path, url.username) == ("postgres", 5432, "/db", "app")
    assert urllib.parse.unquote(url.password) == password
    assert json.loads(seen["HASURA_GRAPHQL_JWT_SECRET"]) == {"type": "HS256", "key": key}


def test_a_secret_with_a_line_break_inside_is_refused(with_secrets, tmp_path):
    """A value that a URL or JSON could not carry whole stops the container, naming the file."""
    (tmp_path / "key").write_text("line1\nline2\n")
    result = run(["sh", with_secrets, "touch", tmp_path / "ran"], check=False, timeout=30,
                 env=clean_env(SECRET_KEY_BASE_FILE=str(tmp_path / "key")))
    assert result.returncode == 1
    assert f"{tmp_path / 'key'} (SECRET_KEY_BASE_FILE) holds a control character" in result.stderr
    assert not (tmp_path / "ran").exists()
