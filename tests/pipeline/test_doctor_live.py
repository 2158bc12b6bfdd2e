"""script/doctor, the preflight, on the pipeline's real server (issue 27: "each check is tested against a server
where it fails"): the server as the README's "3. Server" leaves it (bootstrapped, logged in, no stack yet), its
real engine, swarm, resolver, sockets and disk. One thing is broken on it at a time, for real, and put back:
doctor names exactly that thing in one ✖ line with its fix; and script/deploy --first refuses at its preflight
having deployed nothing.

DNS: the server resolves names from /etc/hosts here (no DNS server on the test network), so the README's A
records are lines there pointing at the server's own address. Not broken here, with the reason: the engine (the
node's dockerd is the container's main process: stopping it ends the server), the swarm membership and the manager
role (leaving the swarm drops the node labels and secrets the later tests deploy with), and an old Docker CLI
(the server has one CLI); tests/render/test_doctor.py covers those with stand-ins.
"""

import contextlib
import re

import pytest

from harness.certs import make_ca
from harness.stack import DOMAIN, SWARM_NAME

ROUTED = ["api", "traefik", "grafana", "prometheus", "alertmanager"]
CHECKS = ["docker", "swarm", "nodes", "labels", "registry", "env", "stack files", "tls", "dns", "ports", "disk"]
FIX = "Fix the ✖ lines above, then run script/doctor again."


@pytest.fixture(scope="module")
def ready(prepared):
    """The prepared server with its routed names in /etc/hosts (its DNS here), taken out again afterwards."""
    address = prepared.as_root("hostname", "-I").stdout.split()[0]
    lines = "".join(f"{address} {host}.{DOMAIN}\n" for host in ROUTED)
    prepared.as_root("sh", "-c", 'cp /etc/hosts /etc/hosts.lhd-dns && printf "%s" "$0" >>/etc/hosts', lines)
    try:
        yield prepared
    finally:
        prepared.as_root("sh", "-c", "cat /etc/hosts.lhd-dns >/etc/hosts && rm /etc/hosts.lhd-dns")


def doctor(server, env=None):
    return server.script("doctor", check=False, timeout=120, env=env)


def failed_lines(result):
    return [line for line in result.stdout.splitlines() if line.startswith("✖")]


@contextlib.contextmanager
def aside(server, path, user="deploy"):
    """path copied aside (as user) and its content put back afterwards, in the same file (/etc/hosts is a mount
    point in a container: it cannot be replaced, only written)."""
    run_as = server.as_deploy if user == "deploy" else server.as_root
    run_as("cp", "-p", path, f"{path}.lhd-doctor")
    try:
        yield path
    finally:
        run_as("sh", "-c", 'cat "$0.lhd-doctor" >"$0" && rm "$0.lhd-doctor"', path)


def test_the_prepared_server_passes_every_check(ready):
    """Every check passes; the swarm's is a note (!), not a failure: this single node was bootstrapped without
    SWARM_ADVERTISE_ADDR, so it is advertised on 127.0.0.1, which no other node could join."""
    result = doctor(ready)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0][2:] for line in lines[:-1]] == CHECKS, lines
    assert [line[0] for line in lines[:-1]] == ["!" if check == "swarm" else "✔" for check in CHECKS], lines
    assert lines[1].startswith("! swarm: a single node advertised on 127.0.0.1: no other node can join it"), lines
    assert lines[-1] == "✔ All done."


def test_a_node_without_the_db_label_is_named(ready):
    node = ready.as_root("docker", "info", "--format", "{{.Swarm.NodeID}}").stdout.strip()
    ready.as_root("docker", "node", "update", "--label-rm", f"{SWARM_NAME}.db", node)
    try:
        result = doctor(ready)
    finally:
        ready.as_root("docker", "node", "update", "--label-add", f"{SWARM_NAME}.db=true", node)
    assert result.returncode == 1
    assert failed_lines(result) == [
        f"✖ labels: no node carries {SWARM_NAME}.db: run script/bootstrap --swarm on the node that keeps the data, "
        f"or docker node update --label-add {SWARM_NAME}.db=true NODE"], result.stdout
    assert result.stderr.strip().splitlines()[-1] == FIX


def test_a_deploy_user_not_logged_in_is_named(ready):
    config = "/home/deploy/.docker/config.json"
    with aside(ready, config):
        ready.as_deploy("sh", "-c", 'printf "{}\\n" >"$0"', config)
        result = doctor(ready)
    assert result.returncode == 1
    assert failed_lines(result) == [
        "✖ registry: deploy is not logged in to registry.gitlab.com: docker login registry.gitlab.com as deploy, "
        "the user that deploys (--with-registry-auth hands its login to the nodes)"], result.stdout


def test_an_empty_secret_file_is_named_and_deploy_refuses(ready):
    """Doctor names the file; script/deploy --first, whose own first step reads the env file, names it too (without
    the check's name) in its one stderr line, and no stack is deployed."""
    secret = f"{ready.project}/etc/secrets/secret_key_base"
    with aside(ready, secret):
        ready.as_deploy("truncate", "-s", "0", secret)
        result = doctor(ready)
        deploy = ready.script("deploy", "--first", check=False, timeout=300)
    assert result.returncode == 1
    assert failed_lines(result) == [f"✖ env: SECRET_KEY_BASE_FILE names {secret}, which is missing or empty"], \
        result.stdout
    assert deploy.returncode == 1
    assert deploy.stderr.strip().splitlines() == [
        f"✖ SECRET_KEY_BASE_FILE names {secret}, which is missing or empty"], deploy.stderr
    assert no_stack(ready)


def no_stack(server):
    return server.as_root("docker", "stack", "ls", "--format", "{{.Name}}").stdout.split() == []


def test_a_certificate_of_another_domain_is_named_and_deploy_refuses_at_its_preflight(ready, tmp_path):
    """Doctor names the certificate; script/deploy --first stops at its preflight (script/doctor --for-deploy)
    with the same one line on stderr, before any change: no stack is deployed."""
    _, cert, key = make_ca(tmp_path / "other", "example.org")
    origin = f"{ready.project}/etc/certs/origin.crt"
    origin_key = f"{ready.project}/etc/certs/origin.key"
    with aside(ready, origin), aside(ready, origin_key):
        for source, target in ((cert, origin), (key, origin_key)):
            ready.as_deploy("sh", "-c", 'cat >"$0"', target, input=source.read_text())
        result = doctor(ready)
        deploy = ready.script("deploy", "--first", check=False, timeout=300)
    line = f"✖ tls: {origin} does not cover api.{DOMAIN}: make one for {DOMAIN} and *.{DOMAIN}"
    assert result.returncode == 1
    assert failed_lines(result) == [line], result.stdout
    assert deploy.returncode == 1 and deploy.stdout == "", deploy.stdout + deploy.stderr
    assert deploy.stderr.strip().splitlines() == [line], deploy.stderr
    assert no_stack(ready)


def test_a_routed_host_missing_from_dns_is_named(ready):
    with aside(ready, "/etc/hosts", user="root"):
        ready.as_root("sh", "-c", 'grep -v " $0$" /etc/hosts >/tmp/hosts.lhd && cat /tmp/hosts.lhd >/etc/hosts',
                      f"alertmanager.{DOMAIN}")
        result = doctor(ready)
    assert result.returncode == 1
    assert failed_lines(result) == [
        f"✖ dns: alertmanager.{DOMAIN} do(es) not resolve: add an A record for each at your DNS provider, pointing "
        "at this server"], result.stdout


def test_port_443_taken_by_another_program_is_named(ready):
    """A TLS server of another program (openssl s_server, as root) on 443 where Traefik must listen."""
    certs = f"{ready.project}/etc/certs"
    ready.as_root("sh", "-c", f"nohup openssl s_server -quiet -accept 443 -cert {certs}/origin.crt "
                               f"-key {certs}/origin.key >/dev/null 2>&1 & echo $! >/tmp/lhd-doctor-443.pid")
    try:
        ready.as_root("sh", "-c", "for i in $(seq 50); do ss -Hltn 'sport = :443' | grep -q . && exit 0; "
                                   "sleep 0.1; done; exit 1")
        result = doctor(ready)
    finally:
        ready.as_root("sh", "-c", 'kill "$(cat /tmp/lhd-doctor-443.pid)"; rm -f /tmp/lhd-doctor-443.pid',
                       check=False)
    assert result.returncode == 1
    failed = failed_lines(result)
    # ss names another user's process to root only: as deploy the holder is "another process" (or its name).
    assert len(failed) == 1 and re.fullmatch(
        r"✖ ports: 443 \([^)]+\) taken on this node, where Traefik must listen: stop that service "
        r"\(sudo ss -ltnp shows it\)", failed[0]), result.stdout


def test_too_little_free_disk_is_named(ready):
    result = doctor(ready, env={"DOCTOR_MIN_FREE_MB": "999999999"})
    assert result.returncode == 1
    failed = failed_lines(result)
    assert len(failed) == 1 and re.fullmatch(
        r"✖ disk: \d+ MB free in /var/lib/docker, under 999999999 MB: docker image prune -a \(images of old "
        r"releases\), or a bigger disk", failed[0]), result.stdout
