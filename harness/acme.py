"""Let's Encrypt for real, against Pebble: an ACME CA next to a `tls=letsencrypt` deployment, on a swarm of its own.

`Pebble` runs Let's Encrypt's ACME test server and its challenge test server (ghcr.io/letsencrypt/pebble and
pebble-challtestsrv; in local mode the kit's builds of Debian's `pebble`, kit/pebble) as two containers on an
attachable overlay network the harness creates (labelled for the reaper). Pebble validates for real: no
PEBBLE_VA_ALWAYS_VALID; PEBBLE_VA_NOSLEEP=1 only drops its random 0-15 s wait before each validation, and
PEBBLE_WFE_NONCEREJECT=0 its 5 % of refused nonces (which lego retries anyway), for a run of steady length.
Its validation authority resolves names through challtestsrv, whose A records the harness keeps on Traefik's
task address on that network (`follow_traefik`), and connects to port 443 there (TLS-ALPN-01).

`AcmeDeployment` is harness/swarm.py's Deployment with its own names (stack `lhd_acme` and its own registry path;
the default project_name, so its Lucky build reuses the swarm tier's cached layers: shard.yml names the binary after
the project) and Traefik attached to Pebble's network by a harness-side compose file.

It runs on a swarm of its own, `AcmeNode`: one Docker-in-Docker node (harness/cluster_nodes.py), so that it runs
beside e2e's swarm modules instead of after them on this host's single swarm (whose Traefik holds ports 80 and 443
and whose Traefik and Prometheus would see the other project's services). Its release is built on this host's
engine (cached layers), then loaded into the node; from then on the module's process points DOCKER_HOST at the
node's engine (`AcmeNode.engine`), so the project's scripts, the harness's `docker` calls and Pebble all act on it,
as an operator's shell on the server would. Traefik's 80 and 443 are the node's ports published on 127.0.0.1.
"""

import json
import os
import shutil
import socket
import ssl
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import requests

from harness import reaper
from harness.cluster_nodes import Cluster, seedable, upstream_image
from harness.docker import docker, published_port, unique
from harness.names import names
from harness.stack import DOMAIN, host_header_session, park_images, unpark_images
from harness.swarm import SHA1, SHORT_ALERTS, Deployment
from harness.wait import until
from kit.kit import HARNESS_PINS

ANSWERS = {"swarm_name": "lhd_acme", "repo_name": "lhd-acme", "tls": "letsencrypt", "monitoring": "yes", "ci": "none"}
APP_ROUTED = ("api", "traefik")  # the hosts the app stack routes
# The monitoring stack's hosts that Traefik routes here. grafana. is not among them: no Grafana image can be had
# (shared/ENVIRONMENT.md), the harness scales it to 0, and with endpoint_mode dnsrr (no IPVS) Traefik's swarm
# provider makes routers from running tasks only (traefik/traefik pkg/provider/docker/pswarm.go, listServices),
# so no router asks for its certificate. prometheus. and alertmanager. carry the same labels through the same
# resolver (Docker/prometheus-swarm/docker-compose.https.yml).
MONITORING_ROUTED = ("prometheus", "alertmanager")
ROUTED = APP_ROUTED + MONITORING_ROUTED
# The certificate alerts' `for:` (15m and 1h in the project), shortened to ALERT_FOR with the app's by the
# deployment's harness-side copy of the rules file, so that a live test sees them fire; their expressions are the
# project's, unchanged.
CERTIFICATE_ALERTS = {"CertificateExpiresSoon": "1h", "CertificateIssuanceFailing": "15m"}  # the project's for:
VERSION = HARNESS_PINS["pebble"]
PEBBLE_IMAGE = f"ghcr.io/letsencrypt/pebble:{VERSION}"
CHALLTESTSRV_IMAGE = f"ghcr.io/letsencrypt/pebble-challtestsrv:{VERSION}"
# Pebble's certificate lifetime, and ACME_CERTIFICATES_DURATION in hours: below 24 h Traefik renews a certificate
# 20 min before it expires and checks every minute (traefik/traefik pkg/provider/acme/provider.go,
# getCertificateRenewDurations and the ticker in Provider.Init's goroutine, v3.7.9), so a certificate is due
# RENEWAL_DUE s after it was issued (3 min). The restart and redeploy tests, which assert that no order is made
# before that, start well within it (in the lanes' run 21, 2026-12-05, the redeploy ended 75 s after the issuance;
# in run 14, under more load, 140 s after the module's start) and refuse to conclude if they start after it. The
# renewal test waits out the rest (it was 5 min, 25 min certificates, until run 22: about 130 s more).
VALIDITY = 23 * 60
DURATION = 1
RENEWAL_DUE = VALIDITY - 20 * 60
ISSUED = "Issued certificate serial"  # Pebble's log line for each finalized order (wfe.go)


# The stacks' Docker Hub images (the kit's under their upstream names in local mode): the node starts with them and
# Pebble's (harness/cluster_nodes.py `seeded_store`, made once per machine).
NODE_THIRD_PARTY = ("postgres", "traefik", "tecnativa/docker-socket-proxy", "prom/prometheus", "prom/alertmanager",
                    "prom/node-exporter")


def epoch(stamp):
    """Epoch seconds of an RFC 3339 UTC timestamp with up to nanoseconds, as `docker logs --timestamps` prints it."""
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp() + float(f"0.{fraction or 0}")


class Pebble:
    """Pebble + challtestsrv on their own attachable overlay network of the engine DOCKER_HOST names (the ACME node's,
    which takes them with it when it goes)."""

    def __init__(self, validity, address="127.0.0.1"):
        """address: where the engine running Pebble publishes its management API and challtestsrv's, for this
        process to reach (the ACME node's address on its cluster network)."""
        self.address = address
        self.ports = {}  # container -> its management port's host port on address
        # Not named <swarm_name>_...: reaper.remove_stacks waits for every network named so to go.
        prefix = unique("lhdacme")
        self.validity = validity
        self.network = f"{prefix}-ca"
        self.pebble = f"{prefix}-pebble"
        self.dns = f"{prefix}-challtestsrv"
        self.workdir = reaper.owned_temp_dir("pebble")
        self.root_file = self.workdir / "pebble-root.pem"
        self.listener_root = self.workdir / "pebble.minica.pem"

    def config(self):
        """Pebble's config: the validation ports where Traefik answers (80, 443), and `validity` seconds for every
        certificate (Pebble 2.10's profiles; Traefik asks for no profile, so `default` applies)."""
        return {"pebble": {
            "listenAddress": "0.0.0.0:14000", "managementListenAddress": "0.0.0.0:15000",
            "certificate": "/test/certs/localhost/cert.pem", "privateKey": "/test/certs/localhost/key.pem",
            "httpPort": 80, "tlsPort": 443, "ocspResponderURL": "", "externalAccountBindingRequired": False,
            "retryAfter": {"authz": 3, "order": 5},
            "profiles": {"default": {"description": "lhd harness", "validityPeriod": self.validity}}}}

    def start(self):
        docker("network", "create", "--driver", "overlay", "--attachable", *reaper.label_args(), self.network)
        docker("run", "-d", "--name", self.dns, *reaper.label_args(), "--network", self.network,
               "--network-alias", "challtestsrv", "-p", f"{self.address}::8055", CHALLTESTSRV_IMAGE,
               "-defaultIPv4", "", "-defaultIPv6", "", "-dnsserver", ":8053", "-management", ":8055",
               "-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "")
        docker("create", "--name", self.pebble, *reaper.label_args(), "--network", self.network,
               "--network-alias", "pebble", "-p", f"{self.address}::15000",
               "-e", "PEBBLE_VA_NOSLEEP=1", "-e", "PEBBLE_WFE_NONCEREJECT=0", PEBBLE_IMAGE,
               "-config", "/test/config/lhd-pebble.json", "-dnsserver", "challtestsrv:8053")
        config = self.workdir / "lhd-pebble.json"
        config.write_text(json.dumps(self.config()))
        docker("cp", config, f"{self.pebble}:/test/config/lhd-pebble.json")
        docker("cp", f"{self.pebble}:/test/certs/pebble.minica.pem", self.listener_root)
        docker("start", self.pebble)
        self.ports = {self.pebble: published_port(self.pebble, 15000), self.dns: published_port(self.dns, 8055)}
        until(self.fetch_root, 60, "Pebble's management API to hand out its root")
        return self

    @property
    def directory(self):
        """The ACME directory as Traefik reaches it (the `pebble` alias is in the listener certificate)."""
        return "https://pebble:14000/dir"

    def fetch_root(self):
        """Pebble's issuing root (management API /roots/0), written to root_file; returns its PEM."""
        # As `pebble`, a name of its listener certificate (the address is not).
        answer = host_header_session().get(f"https://{self.address}:{self.ports[self.pebble]}/roots/0",
                                           headers={"Host": "pebble"}, verify=str(self.listener_root), timeout=5)
        answer.raise_for_status()
        self.root_file.write_text(answer.text)
        return answer.text

    def set_a(self, host, address):
        """challtestsrv answers A queries for host with address alone. Its add-a appends to the host's records
        (challtestsrv dns.go AddDNSARecord) and Pebble's VA dials only the first address for TLS-ALPN-01 (va/va.go
        validateTLSALPN01, addrs[0]; pebble v2.10.1), so the old records go first: one left from an earlier
        Traefik task would fail every later challenge ("Failed to connect")."""
        self.clear_a(host)
        requests.post(f"http://{self.address}:{self.ports[self.dns]}/add-a",
                      json={"host": host, "addresses": [address]}, timeout=5).raise_for_status()

    def clear_a(self, host):
        requests.post(f"http://{self.address}:{self.ports[self.dns]}/clear-a", json={"host": host},
                      timeout=5).raise_for_status()

    def log(self):
        """Pebble's log, each line after the engine's timestamp of it (`docker logs --timestamps`: RFC 3339 with
        nanoseconds, UTC)."""
        result = docker("logs", "--timestamps", self.pebble, check=False)
        return result.stdout + result.stderr

    def issued(self):
        """Serials of the certificates Pebble issued, one per finalized order, from its log."""
        return [serial for _, serial in self.issued_at()]

    def issued_at(self):
        """(when, serial) of every certificate Pebble issued, when in epoch seconds (its log line's timestamp)."""
        return [(epoch(line.split(" ", 1)[0]), line.split(ISSUED, 1)[1].split()[0])
                for line in self.log().splitlines() if ISSUED in line]

    def stop(self):
        docker("stop", "-t", "2", self.pebble, check=False)

    def resume(self):
        docker("start", self.pebble, check=False)


@contextmanager
def docker_host(value):
    """DOCKER_HOST set to value (None: unset) in this process's environment within, as it was afterwards."""
    before = os.environ.get("DOCKER_HOST")
    os.environ.pop("DOCKER_HOST", None)
    if value is not None:
        os.environ["DOCKER_HOST"] = value
    try:
        yield
    finally:
        os.environ.pop("DOCKER_HOST", None)
        if before is not None:
            os.environ["DOCKER_HOST"] = before


class AcmeNode(Cluster):
    """One Docker-in-Docker node, a single-node swarm of its own, for the ACME module: its engine also answers on a
    unix socket in a host directory (`engine()`), its ports 80 and 443 are published on 127.0.0.1 (`ports`), and
    the directory holding the project is at the same path in it."""

    def __init__(self, workdir, shared):
        """shared: a host directory mounted at the same path in the node, for the project's scripts' bind mounts
        (their files, e.g. the secrets a one-off container reads, are where the scripts run: on this host)."""
        self.shared = Path(shared)
        self.tmp = self.shared / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        super().__init__(workdir, workers=0, publish=(80, 443),
                         seed=seedable([*(upstream_image(name) for name in NODE_THIRD_PARTY),
                                        PEBBLE_IMAGE, CHALLTESTSRV_IMAGE]))
        # Short: a unix socket's path is at most 107 bytes, pytest's tmp paths are long.
        self.socket_dir = reaper.owned_temp_dir("acme")
        self.docker_host = f"unix://{self.socket_dir}/docker.sock"

    def node_options(self, node):
        return ["-v", f"{self.socket_dir}:/lhd-engine", "-v", f"{self.shared}:{self.shared}"]

    def node_command(self, node):
        return ["--host", "unix:///lhd-engine/docker.sock"]

    @contextmanager
    def engine(self):
        """Within: this process's `docker` calls and the scripts it starts act on the node's engine (DOCKER_HOST)."""
        with docker_host(self.docker_host):
            yield self

    @contextmanager
    def host(self):
        """Within `engine()`: back on this host's engine (building, saving, `docker exec` into the node)."""
        with docker_host(None):
            yield self

    def close(self):
        super().close()
        shutil.rmtree(self.socket_dir, ignore_errors=True)


class AcmeDeployment(Deployment):
    """Deployment of a `tls=letsencrypt` project as the stack lhd_acme, its Traefik also on Pebble's network."""

    names = names(**ANSWERS)
    short_alerts = {**SHORT_ALERTS, **CERTIFICATE_ALERTS}

    def __init__(self, project, workdir, mode, pebble, node):
        self.pebble = pebble
        self.node = node
        self.acme_override = Path(workdir) / "acme-ca-network.yml"
        self.acme_override.parent.mkdir(parents=True, exist_ok=True)
        self.acme_override.write_text(
            "# Harness-side: Traefik joins the network Pebble and challtestsrv run on.\n"
            "services:\n  traefik:\n    networks:\n      - acme_ca\n"
            f"networks:\n  acme_ca:\n    external: true\n    name: {pebble.network}\n")
        super().__init__(project, workdir, mode)

    def base_url(self, scheme):
        return f"{scheme}://127.0.0.1:{self.port(scheme)}"

    def run_script(self, name, args, env, check, timeout):
        """The project's script, on the node's engine: refused elsewhere (on this host's swarm, e2e's), except
        script/build, which builds on this host's (`move_to_node`)."""
        if name != "build" and env.get("DOCKER_HOST") != self.node.docker_host:
            raise RuntimeError(f"script/{name} of the ACME module would act on {env.get('DOCKER_HOST') or 'this host'}"
                               f"'s engine, not its node's: run it within AcmeNode.engine()")
        return super().run_script(name, args, env, check, timeout)

    def port(self, scheme="https"):
        """Where the node's port 443 (https) or 80 (http), Traefik's, is published on 127.0.0.1."""
        return self.node.ports[443 if scheme == "https" else 80]

    def move_to_node(self):
        """SHA1's release built on this host's engine (its Lucky layers cached there), then loaded into the node."""
        with self.node.host():
            unpark_images({SHA1}, self.registry)
            self.release(SHA1)
            self.node.load([f"{self.registry}/{image}:{SHA1}" for image in ("lucky", "hasura")], [self.node.manager])

    def park_images(self):
        """SHA1's images on this host's engine under their cache names (harness/stack.py `park_images`)."""
        with self.node.host():
            return park_images({SHA1}, self.registry)

    def script_env(self):
        env = super().script_env()
        # The scripts' temporary files (run_lucky_task's copies of the secrets, bind-mounted into a one-off
        # container) in the directory the node shares, as on a server where they are its own /tmp.
        env["TMPDIR"] = str(self.node.tmp)
        env["LHD_EXTRA_COMPOSE_FILES"] = ":".join(filter(None, [env.get("LHD_EXTRA_COMPOSE_FILES"),
                                                               str(self.acme_override)]))
        return env

    def alerts(self, name, verify=True):
        """Alertmanager's active alerts named `name`, read through Traefik as alertmanager.DOMAIN with the
        dashboard login ([] while it does not answer)."""
        try:
            answer = self.get("alertmanager", "/api/v2/alerts", auth=("admin", self.dashboard_password),
                              **({} if verify else {"verify": False}))
        except requests.RequestException:
            return []
        if answer.status_code != 200:
            return []
        return [a for a in answer.json() if a["labels"].get("alertname") == name]

    def use_pebble(self, certificates_duration):
        """The server's env file names Pebble as the CA (its listener root to trust) and the lifetime in hours."""
        self.set_env("ACME_CA_SERVER", self.pebble.directory)
        self.set_env("ACME_CA_ROOT", str(self.pebble.listener_root))
        self.set_env("ACME_CERTIFICATES_DURATION", str(certificates_duration))
        self.ca = self.pebble.root_file  # requests through Traefik verify against Pebble's root

    def traefik_address(self):
        """Traefik's running task's address on Pebble's network, or None."""
        for task in self.tasks("traefik"):
            for attachment in task.get("NetworksAttachments") or []:
                if attachment["Network"]["Spec"]["Name"] == self.pebble.network and attachment.get("Addresses"):
                    return attachment["Addresses"][0].split("/")[0]
        return None

    def acme_json(self):
        """(volume mounted at /letsencrypt, mode of acme.json, its parsed content), read in Traefik's container."""
        cid = self.container("traefik")
        mounts = json.loads(docker("inspect", "--format", "{{json .Mounts}}", cid).stdout)
        volume = next(m["Name"] for m in mounts if m["Destination"] == "/letsencrypt")
        mode = self.container_exec("traefik", "stat", "-c", "%a", "/letsencrypt/acme.json")
        return volume, mode, json.loads(self.container_exec("traefik", "cat", "/letsencrypt/acme.json"))


class TraefikFollower:
    """A thread keeping challtestsrv's A records for every routed host on Traefik's current task address (a new
    task, after an update or a redeploy, gets a new one); bounded by `limit` seconds."""

    def __init__(self, deployment, limit=3600):
        self.deployment, self.limit = deployment, limit
        self.address = None
        self.error = None  # the last reason the records could not be set (the stack starting or updating)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)

    def _run(self):
        started = time.monotonic()
        while not self._stop.is_set() and time.monotonic() - started < self.limit:
            try:
                address = self.deployment.traefik_address()
                if address and address != self.address:
                    for host in ROUTED:
                        self.deployment.pebble.set_a(f"{host}.{DOMAIN}", address)
                    self.address = address
            except Exception as error:  # noqa: BLE001 - the stack is starting or updating; look again
                self.error = error
            self._stop.wait(0.5)


def served_certificate(host, cafile, port, timeout=5):
    """The certificate Traefik serves for host.DOMAIN through 127.0.0.1:port, after a handshake verified (chain and
    name) against cafile with SNI host.DOMAIN: Python ssl's parsed dict (serialNumber, issuer, notAfter...)."""
    context = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname=f"{host}.{DOMAIN}") as tls:
            return tls.getpeercert()


def unverified_certificate(host, port, timeout=5):
    """The DER certificate served for host.DOMAIN (SNI) without verifying it, e.g. Traefik's default one."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname=f"{host}.{DOMAIN}") as tls:
            return tls.getpeercert(binary_form=True)


def issuer_cn(cert):
    """The issuer's common name of an ssl.getpeercert() dict."""
    return next(value for rdn in cert["issuer"] for key, value in rdn if key == "commonName")
