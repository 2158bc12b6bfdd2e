"""script/doctor, the preflight: on a server where one thing is missing it names that thing in one line with its
fix and exits 1; where nothing is, every check passes. Stand-ins answer for the engine (`docker`), DNS
(`getent`), this node's addresses (`hostname`) and listening sockets (`ss`), each as the real command prints;
the env file and secret files are script/bootstrap's own, the certificates real (openssl), the disk real (df)."""

import os
import re
import shutil
import subprocess

import pytest

from harness.certs import make_ca
from harness.proc import run

DOMAIN = "example.com"
ROUTED = ["api", "traefik", "grafana", "prometheus", "alertmanager"]
HERE = "10.0.0.5"

# Each stand-in reads its answers from the environment the test sets (FAKE_*), so one case changes one answer.
FAKE_DOCKER = r"""#!/bin/sh
case "$1 $2" in
  "version --format") [ -z "$FAKE_NO_ENGINE" ] || exit 1; echo "28.5.2 28.5.2" ;;
  "info --format")
    case "$3" in
      *LocalNodeState*) echo "${FAKE_SWARM:-active}" ;;
      *ControlAvailable*) echo "${FAKE_MANAGER:-true}" ;;
      *NodeAddr*) echo "${FAKE_ADDR:-10.0.0.5}" ;;
      *Nodes*) echo "${FAKE_NODES:-1}" ;;
      *DockerRootDir*) echo "$FAKE_ROOT" ;;
      *Name*) echo node1 ;;
    esac ;;
  "node ls")
    # Every node (hostname, status, availability), or those a label filter names.
    if [ "$3" = --format ]; then printf '%b\n' "${FAKE_NODE_ROWS:-node1 Ready Active}"
    elif [ "$4" = "node.label=$FAKE_UNLABELLED=true" ]; then :
    elif [ "$4" = "node.label=$FAKE_TWICE=true" ]; then printf 'node1\nnode2\n'
    elif [ "$4" = "node.label=lhd_app.edge=true" ]; then echo "${FAKE_EDGE:-node1}"
    else echo node1; fi ;;
  "node inspect") echo "${FAKE_NODE_STATE:-ready}" ;;
  "stack config")
    # As docker stack config does: the compose files' ${LUCKY_TAG:?...} fails without the variable.
    [ -n "$LUCKY_TAG" ] && [ -n "$HASURA_TAG" ] || { echo "required variable LUCKY_TAG is missing a value" >&2; exit 1; }
    [ -z "$FAKE_OLD_CLI" ] || { echo "yaml: unmarshal errors: field start_interval not found" >&2; exit 1; } ;;
  "service inspect") exit 1 ;;
  *) echo "unexpected docker $*" >&2; exit 99 ;;
esac
"""
FAKE_GETENT = r"""#!/bin/sh
[ "$1" = ahosts ] || exit 2
grep "^$2 " "$FAKE_HOSTS" | while read -r _ ip; do echo "$ip STREAM $2"; done | grep . || exit 2
"""
FAKE_HOSTNAME = '#!/bin/sh\n[ "$1" = -I ] && echo "10.0.0.5 172.17.0.1 "\n'
FAKE_SS = r"""#!/bin/sh
[ -n "$FAKE_BUSY_PORT" ] || exit 0
case "$*" in
  *":$FAKE_BUSY_PORT") echo 'LISTEN 0 511 0.0.0.0:'"$FAKE_BUSY_PORT"' 0.0.0.0:* users:(("nginx",pid=812,fd=6))' ;;
esac
"""


@pytest.fixture(scope="module")
def server(default_project, tmp_path_factory):
    """A copy of the default project bootstrapped as on a server (env file, secrets, origin certificate), the
    stand-ins, and a registry login; returns (project, env) for a server where every check passes."""
    root = tmp_path_factory.mktemp("doctor")
    project = root / "project"
    shutil.copytree(default_project, project, symlinks=True)
    bin_dir = root / "bin"
    bin_dir.mkdir()
    for name, text in {"docker": FAKE_DOCKER, "getent": FAKE_GETENT, "hostname": FAKE_HOSTNAME, "ss": FAKE_SS}.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (root / "hosts").write_text("".join(f"{host}.{DOMAIN} {HERE}\n" for host in ROUTED))
    (root / "docker-config").mkdir()
    (root / "docker-config/config.json").write_text('{"auths": {"registry.gitlab.com": {}}}\n')
    (root / "docker-root").mkdir()
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_HOSTS": str(root / "hosts"),
           "FAKE_ROOT": str(root / "docker-root"), "DOCKER_CONFIG": str(root / "docker-config"),
           "LHD_ENV_FILE": str(project / ".env.production"), "LHD_SECRETS_DIR": str(project / "etc/secrets"),
           "DOCTOR_MIN_FREE_MB": "1"}
    env.pop("SSH_ORIGINAL_COMMAND", None)
    made = run([project / "script/bootstrap"], env=env, check=False, stdin=subprocess.DEVNULL, timeout=60)
    assert made.returncode == 0, made.stderr
    _, cert, key = make_ca(root / "ca", DOMAIN)
    shutil.copy(cert, project / "etc/certs/origin.crt")
    shutil.copy(key, project / "etc/certs/origin.key")
    return project, env


def doctor(server, **changes):
    project, env = server
    return run([project / "script/doctor"], env={**env, **changes}, check=False, stdin=subprocess.DEVNULL, timeout=60)


def test_a_ready_server_passes_every_check(server):
    result = doctor(server)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:-1]] == [
        "✔ docker", "✔ swarm", "✔ nodes", "✔ labels", "✔ registry", "✔ env", "✔ stack files", "✔ tls", "✔ dns", "✔ ports",
        "✔ disk"]
    assert lines[-1] == "✔ All done."


def write(path, text):
    path.write_text(text)
    return {}


def other_certificate(server, tmp_path, domain):
    """A certificate for another domain (or, with the same domain, another key pair) in place of the origin one."""
    project, _ = server
    _, cert, key = make_ca(tmp_path / "other", domain)
    shutil.copy(cert, tmp_path / "origin.crt")
    shutil.copy(key, tmp_path / "origin.key")
    return cert, key


# id -> (a function of (server, tmp_path) returning environment changes, the one ✖ line expected)
CASES = {
    "no-engine": (lambda s, t: {"FAKE_NO_ENGINE": "1"},
                  "✖ docker: the Docker engine does not answer: sudo systemctl enable --now docker"),
    "no-swarm": (lambda s, t: {"FAKE_SWARM": "inactive"},
                 "✖ swarm: this node is in no swarm: SWARM_ADVERTISE_ADDR=<this node's private address> "
                 "script/bootstrap --swarm"),
    "worker": (lambda s, t: {"FAKE_MANAGER": "false"},
               "✖ swarm: this node is a worker: run script/deploy (and this check) on a manager"),
    "loopback-with-nodes": (lambda s, t: {"FAKE_ADDR": "127.0.0.1", "FAKE_NODES": "3"},
                            "✖ swarm: advertised on 127.0.0.1, which the other 3 nodes cannot reach: the swarm must be "
                            "made again with SWARM_ADVERTISE_ADDR=<private address> (docs/configuration.md, \"Adding nodes\")"),
    "no-db-label": (lambda s, t: {"FAKE_UNLABELLED": "lhd_app.db"},
                    "✖ labels: no node carries lhd_app.db: run script/bootstrap --swarm on the node that keeps the "
                    "data, or docker node update --label-add lhd_app.db=true NODE"),
    "db-label-on-two-nodes": (lambda s, t: {"FAKE_TWICE": "lhd_app.db",
                                            "FAKE_NODE_ROWS": "node1 Ready Active\\nnode2 Ready Active"},
                              "✖ labels: lhd_app.db is on 2 nodes (node1 node2): db's services keep their data in a "
                              "volume of one node and could start empty on another; keep it on the node that holds the "
                              "data: docker node update --label-rm lhd_app.db NODE on the others"),
    "worker-down": (lambda s, t: {"FAKE_NODE_ROWS": "node1 Ready Active\\nnode2 Down Active"},
                    "✖ nodes: node2 down (the manager hears no engine there; its tasks run elsewhere or not at all): "
                    "start Docker there, or if a node is gone for good: docker node rm --force node2"),
    "no-login": (lambda s, t: write(t / "config.json", "{}") or {"DOCKER_CONFIG": str(t)},
                 "✖ registry: {user} is not logged in to registry.gitlab.com: docker login registry.gitlab.com as "
                 "{user}, the user that deploys (--with-registry-auth hands its login to the nodes)"),
    "no-env-file": (lambda s, t: {"LHD_ENV_FILE": str(t / "missing.env")},
                    "✖ env: {tmp}/missing.env does not exist: run script/bootstrap on this server first (or set "
                    "LHD_ENV_FILE)"),
    "empty-secret": (lambda s, t: write(t / "secrets.env", (s[0] / ".env.production").read_text().replace(
        f"SECRET_KEY_BASE_FILE={s[0]}/etc/secrets/secret_key_base", f"SECRET_KEY_BASE_FILE={t}/empty"))
        or write(t / "empty", "") or {"LHD_ENV_FILE": str(t / "secrets.env")},
        "✖ env: SECRET_KEY_BASE_FILE names {tmp}/empty, which is missing or empty"),
    "old-cli": (lambda s, t: {"FAKE_OLD_CLI": "1"},
                "✖ stack files: this Docker CLI cannot read them (yaml: unmarshal errors: field start_interval not "
                "found): install Docker's own packages (https://docs.docker.com/engine/install/)"),
    "cert-of-another-domain": (lambda s, t: other_certificate(s, t, "example.org") and {
        "TLS_CERT_FILE": str(t / "origin.crt"), "TLS_KEY_FILE": str(t / "origin.key")},
        "✖ tls: {tmp}/origin.crt does not cover api.example.com: make one for example.com and *.example.com"),
    "key-of-another-cert": (lambda s, t: other_certificate(s, t, DOMAIN) and {
        "TLS_CERT_FILE": str(t / "origin.crt"), "TLS_KEY_FILE": str(s[0] / "etc/certs/origin.key")},
        "✖ tls: {project}/etc/certs/origin.key is not the key of {tmp}/origin.crt: put the matching pair there"),
    "no-certificate": (lambda s, t: {"TLS_CERT_FILE": str(t / "none.crt")},
                       "✖ tls: {tmp}/none.crt is missing: put your origin certificate and key there (README, "
                       "\"DNS and TLS\")"),
    "no-dns": (lambda s, t: write(t / "hosts", f"api.{DOMAIN} {HERE}\n") or {"FAKE_HOSTS": str(t / "hosts")},
               "✖ dns: traefik.example.com grafana.example.com prometheus.example.com alertmanager.example.com "
               "do(es) not resolve: add an A record for each at your DNS provider, pointing at this server"),
    "port-taken": (lambda s, t: {"FAKE_BUSY_PORT": "443"},
                   "✖ ports: 443 (nginx) taken on this node, where Traefik must listen: stop that service (sudo ss "
                   "-ltnp shows it)"),
    "disk-full": (lambda s, t: {"DOCTOR_MIN_FREE_MB": "999999999"},
                  "✖ disk: {free} MB free in {root}, under 999999999 MB: docker image prune -a (images of old "
                  "releases), or a bigger disk"),
}


@pytest.mark.parametrize("case", CASES)
def test_each_missing_piece_is_named_with_its_fix(server, tmp_path, case):
    """One thing wrong: exactly one ✖ line, the one naming it and its fix; exit 1; nothing written."""
    project, env = server
    make, expected = CASES[case]
    before = sorted(p.relative_to(project) for p in project.rglob("*"))
    changes = make(server, tmp_path)
    result = doctor(server, **changes)
    user = run(["id", "-un"]).stdout.strip()
    wanted = re.escape(expected.format(user=user, tmp=tmp_path, project=project, free="FREE", root=env["FAKE_ROOT"]))
    assert result.returncode == 1
    failed = [line for line in result.stdout.splitlines() if line.startswith("✖")]
    assert len(failed) == 1 and re.fullmatch(wanted.replace("FREE", r"\d+"), failed[0]), result.stdout
    assert result.stderr.strip().splitlines()[-1] == "Fix the ✖ lines above, then run script/doctor again."
    assert sorted(p.relative_to(project) for p in project.rglob("*")) == before


def test_a_single_node_on_loopback_is_noted_not_failed(server):
    """127.0.0.1 serves one node well; the note says what it costs before a second node joins."""
    result = doctor(server, FAKE_ADDR="127.0.0.1")
    assert result.returncode == 0, result.stdout
    assert "! swarm: a single node advertised on 127.0.0.1: no other node can join it; before adding nodes see " \
           "docs/configuration.md, \"Adding nodes\" (SWARM_ADVERTISE_ADDR)" in result.stdout.splitlines()


def test_an_edge_node_elsewhere_moves_the_dns_and_port_checks_there(server):
    """With Traefik's edge label on another node, DNS must point there and its ports be free there: notes saying
    so, not a comparison with this node's addresses or ports."""
    result = doctor(server, FAKE_EDGE="node2", FAKE_BUSY_PORT="443",
                    FAKE_NODE_ROWS="node1 Ready Active\\nnode2 Ready Active")
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert "! dns: every routed host of example.com resolves; Traefik listens on node2 (the edge node), not here: " \
           "they must point at its public address (not checked from this node)" in lines
    assert "! ports: Traefik will listen on node2 (the edge node), not here: ports 80 and 443 must be free there" in lines


def test_server_option_runs_it_over_ssh(server, tmp_path):
    """--server USER@HOST runs the server's own doctor in its clone, through ssh in batch mode."""
    project, env = server
    (tmp_path / "ssh").write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$FAKE_SSH_LOG"\n')
    (tmp_path / "ssh").chmod(0o755)
    result = run([project / "script/doctor", "--server", "admin@203.0.113.7"], check=False, timeout=60,
                 env={**env, "PATH": f"{tmp_path}:{env['PATH']}", "FAKE_SSH_LOG": str(tmp_path / "argv")})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "argv").read_text().splitlines() == [
        "-o", "BatchMode=yes", "--", "admin@203.0.113.7", "cd /srv/lhd_app && script/doctor"]
    refused = run([project / "script/doctor", "--server", "admin@host;reboot"], check=False, env=env, timeout=60)
    assert refused.returncode == 1 and refused.stderr.strip() == "✖ 'admin@host;reboot' is not [USER@]HOST"


# script/deploy's preflight (script/doctor --for-deploy): the checks a deploy cannot succeed without.
FOR_DEPLOY = ["no-engine", "no-swarm", "worker", "loopback-with-nodes", "no-env-file", "empty-secret",
              "cert-of-another-domain", "key-of-another-cert", "no-certificate"]
# Not asked before a deploy: DNS may come later (or HTTPS_SWITCH=off), images built on the node need no login,
# and script/deploy names a missing label itself (require_labels, its own one line).
NOT_FOR_DEPLOY = ["no-login", "old-cli", "no-dns", "port-taken", "disk-full", "no-db-label", "db-label-on-two-nodes",
                  "worker-down"]


def test_preflight_is_silent_on_a_ready_server(server):
    project, env = server
    result = run([project / "script/doctor", "--for-deploy"], env=env, check=False, stdin=subprocess.DEVNULL,
                 timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.parametrize("case", FOR_DEPLOY)
def test_deploy_refuses_in_one_line_naming_the_check(server, tmp_path, case):
    """script/deploy runs the preflight after its lock and before any change: one planted fault, and it stops
    with that check's one ✖ line (the doctor's own) and its fix, exit 1, without deploying or another docker call."""
    project, env = server
    make, expected = CASES[case]
    user = run(["id", "-un"]).stdout.strip()
    wanted = expected.format(user=user, tmp=tmp_path, project=project, free="", root=env["FAKE_ROOT"])
    changes = make(server, tmp_path)
    preflight = run([project / "script/doctor", "--for-deploy"], env={**env, **changes}, check=False,
                    stdin=subprocess.DEVNULL, timeout=60)
    assert (preflight.returncode, preflight.stdout, preflight.stderr) == (1, "", wanted + "\n")
    deploy = run([project / "script/deploy", "--yes", "abcd1234"], env={**env, **changes, "DEPLOY_LOCK_DIR": str(tmp_path)},
                 check=False, stdin=subprocess.DEVNULL, timeout=60)
    assert deploy.returncode == 1 and deploy.stdout == "", deploy.stdout + deploy.stderr
    # The env file is script/deploy's own first step: it names the same fault, without the check's name.
    own = wanted.replace("✖ env: ", "✖ ") if case in ("no-env-file", "empty-secret") else wanted
    assert deploy.stderr.splitlines() == [own], deploy.stderr
    assert "unexpected docker" not in deploy.stderr and "Deploying" not in deploy.stdout + deploy.stderr


@pytest.mark.parametrize("case", NOT_FOR_DEPLOY)
def test_preflight_leaves_the_rest_to_script_doctor(server, tmp_path, case):
    """What a deploy can do without (or names itself) is not a reason to refuse it."""
    project, env = server
    changes = CASES[case][0](server, tmp_path)
    result = run([project / "script/doctor", "--for-deploy"], env={**env, **changes}, check=False,
                 stdin=subprocess.DEVNULL, timeout=60)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr


def test_preflight_and_server_do_not_mix(server):
    project, env = server
    result = run([project / "script/doctor", "--for-deploy", "--server", "admin@host"], env=env, check=False,
                 timeout=60)
    assert result.returncode != 0 and result.stderr.strip().splitlines()[-1].startswith("usage: script/doctor")
