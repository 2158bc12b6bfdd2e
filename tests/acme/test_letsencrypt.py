"""tls=letsencrypt against Pebble, Let's Encrypt's ACME test server: certificates issued through a real TLS-ALPN-01
challenge, stored on the edge node's volume, kept across restarts and redeploys, renewed under load.

The tests run in file order on one module deployment (each leaves it serving over HTTPS), because issuing,
keeping and renewing are one certificate's life."""

import ssl
import time

import pytest

from harness.acme import RENEWAL_DUE, ROUTED, VALIDITY, issuer_cn, served_certificate, unverified_certificate
from harness.docker import docker
from harness.proc import run
from harness.stream import RequestStream
from harness.swarm import SHA1
from harness.wait import until


def served(acme, timeout=120):
    """host -> the certificate served for it, verified against Pebble's root with SNI, once every host has one."""
    def every_host():
        return {host: served_certificate(host, acme.pebble.root_file) for host in ROUTED}
    return until(every_host, timeout, "Traefik to serve a certificate Pebble's root verifies for every routed host")


def test_every_routed_host_gets_a_certificate_from_pebble(acme):
    """Each routed host's handshake verifies against Pebble's root (from its management API), issued by Pebble."""
    env = docker("inspect", "--format", "{{json .Config.Env}}", acme.pebble.pebble).stdout
    assert "PEBBLE_VA_ALWAYS_VALID" not in env and "PEBBLE_VA_NOSLEEP=1" in env
    certs = served(acme)
    for host, cert in certs.items():
        assert issuer_cn(cert).startswith("Pebble Intermediate"), (host, cert["issuer"])
        assert any(value == f"{host}.example.com" for _, value in cert["subjectAltName"]), cert
    issued = [serial.lower().lstrip("0") for serial in acme.pebble.issued()]
    assert all(c["serialNumber"].lower().lstrip("0") in issued for c in certs.values()), (issued, certs)
    assert acme.get("api", "/version").json()["version"] == SHA1


def test_acme_json_is_private_on_the_edge_volume(acme):
    """acme.json is on the stack's letsencrypt volume, mode 0600, with Pebble's account and every host's certificate."""
    volume, mode, stored = acme.acme_json()
    assert volume == acme.service("letsencrypt")
    assert mode == "600"
    resolver = stored["letsencrypt"]
    assert resolver["Account"]["Registration"]["uri"].startswith("https://pebble:14000/")
    assert sorted(c["domain"]["main"] for c in resolver["Certificates"]) == sorted(f"{h}.example.com" for h in ROUTED)


def test_http_redirects_permanently_to_https(acme):
    """A plain HTTP request to a routed host answers with a permanent redirect to HTTPS (TLS-ALPN-01 needs no
    challenge path on port 80)."""
    answer = acme.get("api", "/version", scheme="http")
    assert answer.status_code in (301, 308), answer.status_code
    assert answer.headers["Location"] == "https://api.example.com/version"


def serials(certs):
    return {host: certs[host]["serialNumber"] for host in ROUTED}


def test_traefik_restart_keeps_certificates_without_a_new_order(acme):
    """`docker service update --force` of Traefik: a new task serves the same certificates; Pebble saw no order."""
    before, orders = serials(served(acme)), len(acme.pebble.issued())
    task = acme.tasks("traefik")[0]["ID"]
    docker("service", "update", "--force", "--detach=false", "--quiet", acme.service("traefik"), timeout=300)
    assert acme.tasks("traefik")[0]["ID"] != task
    assert serials(served(acme)) == before
    assert len(acme.pebble.issued()) == orders


def test_redeploy_keeps_certificates_without_a_new_order(acme):
    """The stack removed and deployed again (`script/deploy --first`, volumes kept): the same certificates, no order."""
    before, orders = serials(served(acme)), len(acme.pebble.issued())
    docker("stack", "rm", acme.swarm_name)
    until(lambda: not acme.stack_containers() and not docker(
        "network", "ls", "-q", "--filter", f"name={acme.swarm_name}_").stdout.split(),
        120, "the stack's containers and networks to be gone", pause=2)
    acme.script("deploy", "--first", SHA1)
    assert serials(served(acme)) == before
    assert len(acme.pebble.issued()) == orders


def test_renewal_before_expiry_loses_no_request(acme):
    """With short certificates, Traefik orders new ones before they expire (new serial, later notAfter) while a
    bounded request stream through api.<domain> loses nothing."""
    before, orders = served(acme), len(acme.pebble.issued())
    # Due 20 min before notAfter (RENEWAL_DUE s after issuance), then within Traefik's next 1-minute check.
    due = min(ssl.cert_time_to_seconds(c["notAfter"]) for c in before.values()) - (VALIDITY - RENEWAL_DUE)
    wait = max(0.0, due - time.time()) + 150
    with RequestStream(acme, rate=5, cap=int(wait * 5) + 100, limit=wait + 30) as stream:
        renewed = until(lambda: (lambda now: now if serials(now) != serials(before) else None)(served(acme)),
                        wait, "Traefik to serve renewed certificates", pause=5)
        stream.mark("renewed")
        figures = stream.stop()
    print(f"renewal: {figures}")
    for host in ROUTED:
        if renewed[host]["serialNumber"] != before[host]["serialNumber"]:
            assert ssl.cert_time_to_seconds(renewed[host]["notAfter"]) > ssl.cert_time_to_seconds(before[host]["notAfter"])
    assert len(acme.pebble.issued()) > orders
    assert figures["failures"] == 0, figures


def cert_metrics(acme):
    """Traefik's traefik_tls_certs_not_after lines, read from its metrics entry point inside its container."""
    text = acme.container_exec("traefik", "wget", "-q", "-O", "-", "http://127.0.0.1:8080/metrics")
    return [line for line in text.splitlines() if line.startswith("traefik_tls_certs_not_after")]


def test_ca_unreachable_deploy_converges_on_the_default_certificate(acme):
    """Pebble stopped and the certificates gone (a new edge volume): `script/deploy --first` still converges, the
    app answers over HTTPS with Traefik's self-signed default certificate, and Traefik reports no certificate
    (what CertificateIssuanceFailing fires on); before this, its metrics listed one per routed host."""
    assert {line.split('sans="')[1].split('"')[0] for line in cert_metrics(acme)} >= {f"{h}.example.com" for h in ROUTED}
    acme.pebble.stop()
    try:
        docker("stack", "rm", acme.swarm_name)
        until(lambda: not acme.stack_containers() and not docker(
            "network", "ls", "-q", "--filter", f"name={acme.swarm_name}_").stdout.split(),
            120, "the stack's containers and networks to be gone", pause=2)
        docker("volume", "rm", acme.service("letsencrypt"))
        acme.script("deploy", "--first", SHA1)
        for host in ROUTED:
            with pytest.raises(ssl.SSLCertVerificationError):
                served_certificate(host, acme.pebble.root_file)
            default = ssl.DER_cert_to_PEM_cert(unverified_certificate(host))
            assert "TRAEFIK DEFAULT CERT" in run(["openssl", "x509", "-noout", "-subject"], input=default).stdout
        answer = acme.get("api", "/version", verify=False)
        assert answer.status_code == 200 and answer.json()["version"] == SHA1
        assert cert_metrics(acme) == []
        until(lambda: "unable to obtain acme certificate" in acme.service_logs(300, ("traefik",)).lower(), 60,
              "Traefik to log that it could not obtain a certificate")
    finally:
        acme.pebble.resume()


@pytest.mark.parametrize("https", ["off"])
def test_https_off_serves_http_without_acme(acme, https):
    """HTTPS_SWITCH=off: plain HTTP on port 80 serves the app, port 443 is not published, and Pebble sees no order."""
    orders = len(acme.pebble.issued())
    acme.deploy(SHA1, https=https)
    answer = acme.routed_get("api", "/version")
    assert answer.status_code == 200 and answer.json()["version"] == SHA1
    assert acme.published_https() == "off"
    assert len(acme.pebble.issued()) == orders
