"""tls=letsencrypt against Pebble, Let's Encrypt's ACME test server: certificates issued through a real TLS-ALPN-01
challenge for the app's and the monitoring stack's hosts, stored on the edge node's volume, kept across restarts
and redeploys, renewed under load, and watched: the certificate alerts fire on Traefik's real metrics.

The tests run in file order on one module deployment (each leaves it serving over HTTPS), because issuing,
keeping and renewing are one certificate's life. The monitoring stack comes up half-way (the `monitoring`
fixture), after the tests that remove the app stack whole."""

import ssl
import time

import pytest

from harness.acme import (
    APP_ROUTED,
    MONITORING_ROUTED,
    RENEWAL_DUE,
    ROUTED,
    VALIDITY,
    issuer_cn,
    served_certificate,
    unverified_certificate,
)
from harness.docker import docker
from harness.proc import run
from harness.stream import RequestStream
from harness.swarm import SHA1
from harness.wait import until


def served(acme, hosts=APP_ROUTED, timeout=120):
    """host -> the certificate served for it, verified against Pebble's root with SNI, once every host has one."""
    def every_host():
        return {host: served_certificate(host, acme.pebble.root_file, acme.port()) for host in hosts}
    return until(every_host, timeout, f"Traefik to serve a certificate Pebble's root verifies for {hosts}")


def assert_issued_by_pebble(acme, certs):
    for host, cert in certs.items():
        assert issuer_cn(cert).startswith("Pebble Intermediate"), (host, cert["issuer"])
        assert any(value == f"{host}.example.com" for _, value in cert["subjectAltName"]), cert
    issued = [serial.lower().lstrip("0") for serial in acme.pebble.issued()]
    assert all(c["serialNumber"].lower().lstrip("0") in issued for c in certs.values()), (issued, certs)


def test_every_app_host_gets_a_certificate_from_pebble(acme):
    """Each host the app stack routes: the handshake verifies against Pebble's root (from its management API), and
    the certificate is one Pebble logged as issued."""
    env = docker("inspect", "--format", "{{json .Config.Env}}", acme.pebble.pebble).stdout
    assert "PEBBLE_VA_ALWAYS_VALID" not in env and "PEBBLE_VA_NOSLEEP=1" in env
    assert_issued_by_pebble(acme, served(acme))
    assert acme.get("api", "/version").json()["version"] == SHA1


def test_http_redirects_permanently_to_https(acme):
    """A plain HTTP request to a routed host answers with a permanent redirect to HTTPS (TLS-ALPN-01 needs no
    challenge path on port 80)."""
    answer = acme.get("api", "/version", scheme="http")
    assert answer.status_code in (301, 308), answer.status_code
    assert answer.headers["Location"] == "https://api.example.com/version"


def serials(certs):
    return {host: cert["serialNumber"] for host, cert in certs.items()}


def renewal_due(certs):
    """When the first of certs is due for renewal (epoch seconds): RENEWAL_DUE s after its issuance."""
    return min(ssl.cert_time_to_seconds(c["notAfter"]) for c in certs.values()) - (VALIDITY - RENEWAL_DUE)


def assert_no_order_before_due(acme, since, before):
    """Pebble logged no order from `since` until the certificates `before` were due for renewal, and with no order at
    all the same certificates are served. Started after they were due, a test could not tell a kept certificate from
    a renewed one: it says so and fails."""
    due = renewal_due(before)
    assert since < due - 10, f"started {since - due:.0f} s after the certificates were due for renewal: cannot tell"
    orders = [(when, serial) for when, serial in acme.pebble.issued_at() if when >= since]
    assert [order for order in orders if order[0] < due - 2] == [], (f"ordered before the renewal was due "
                                                                    f"({due:.0f}): {orders}")
    if not orders:
        assert serials(served(acme)) == serials(before)


def test_traefik_restart_keeps_certificates_without_a_new_order(acme):
    """`docker service update --force` of Traefik: a new task serves the same certificates; Pebble saw no order."""
    since, before = time.time(), served(acme)
    task = acme.tasks("traefik")[0]["ID"]
    docker("service", "update", "--force", "--detach=false", "--quiet", acme.service("traefik"), timeout=300)
    assert acme.tasks("traefik")[0]["ID"] != task
    assert_no_order_before_due(acme, since, before)


def test_redeploy_keeps_certificates_without_a_new_order(acme):
    """The stack removed and deployed again (`script/deploy --first`, volumes kept): the same certificates, no order."""
    since, before = time.time(), served(acme)
    docker("stack", "rm", acme.swarm_name)
    until(lambda: not acme.stack_containers() and not docker(
        "network", "ls", "-q", "--filter", f"name={acme.swarm_name}_").stdout.split(),
        120, "the stack's containers and networks to be gone", pause=2)
    acme.script("deploy", "--first", SHA1)
    assert_no_order_before_due(acme, since, before)


def test_monitoring_hosts_get_certificates_and_expires_soon_fires(acme, monitoring):
    """`script/monitoring up`: prometheus. and alertmanager. get Pebble certificates too, and CertificateExpiresSoon
    fires for every routed host's certificate (Pebble's live 23 minutes, under the rule's 7 days), read from
    Alertmanager through Traefik over a handshake Pebble's root verifies."""
    assert_issued_by_pebble(acme, served(acme, MONITORING_ROUTED))
    wanted = {f"{host}.example.com" for host in ROUTED}

    def every_host_alerted():
        alerts = acme.alerts("CertificateExpiresSoon")
        return alerts if {a["labels"].get("sans") for a in alerts} >= wanted else None
    alerts = until(every_host_alerted, 240, lambda: "Alertmanager to list CertificateExpiresSoon for "
                   f"{sorted(wanted)}: {acme.alerts('CertificateExpiresSoon')}", pause=5)
    assert {a["labels"]["severity"] for a in alerts} == {"warning"}
    assert acme.alerts("CertificateIssuanceFailing") == []


def test_acme_json_is_private_on_the_edge_volume(acme, monitoring):
    """acme.json is on the stack's letsencrypt volume, mode 0600, with Pebble's account and every host's certificate."""
    volume, mode, stored = acme.acme_json()
    assert volume == acme.service("letsencrypt")
    assert mode == "600"
    resolver = stored["letsencrypt"]
    assert resolver["Account"]["Registration"]["uri"].startswith("https://pebble:14000/")
    assert sorted(c["domain"]["main"] for c in resolver["Certificates"]) == sorted(f"{h}.example.com" for h in ROUTED)


def test_renewal_before_expiry_loses_no_request(acme, monitoring):
    """With short certificates, Traefik orders new ones before they expire (new serial, later notAfter) while a
    bounded request stream through api.<domain> loses nothing."""
    before, orders = served(acme, ROUTED), len(acme.pebble.issued())
    # Due 20 min before notAfter (RENEWAL_DUE s after issuance), then within Traefik's next 1-minute check.
    due = renewal_due(before)
    wait = max(0.0, due - time.time()) + 150
    with RequestStream(acme, rate=5, cap=int(wait * 5) + 100, limit=wait + 30) as stream:
        renewed = until(lambda: (lambda now: now if serials(now) != serials(before) else None)(served(acme, ROUTED)),
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


def test_ca_unreachable_deploy_converges_and_issuance_failing_fires(acme, monitoring):
    """Pebble stopped and the certificates gone (Traefik's service and its edge volume removed): `script/deploy`
    still converges, every routed host answers over HTTPS with Traefik's self-signed default certificate, Traefik
    reports no certificate in its metrics and logs why, and CertificateIssuanceFailing fires (it did not while
    certificates were served)."""
    assert {line.split('sans="')[1].split('"')[0] for line in cert_metrics(acme)} >= {f"{h}.example.com" for h in ROUTED}
    assert acme.alerts("CertificateIssuanceFailing") == []
    acme.pebble.stop()
    try:
        docker("service", "rm", acme.service("traefik"))
        until(lambda: docker("volume", "rm", acme.service("letsencrypt"), check=False).returncode == 0, 60,
              "the letsencrypt volume to be free of Traefik's container, and removed", pause=2)
        acme.deploy(SHA1)
        for host in ROUTED:
            with pytest.raises(ssl.SSLCertVerificationError):
                served_certificate(host, acme.pebble.root_file, acme.port())
            default = ssl.DER_cert_to_PEM_cert(unverified_certificate(host, acme.port()))
            assert "TRAEFIK DEFAULT CERT" in run(["openssl", "x509", "-noout", "-subject"], input=default).stdout
        answer = acme.get("api", "/version", verify=False)
        assert answer.status_code == 200 and answer.json()["version"] == SHA1
        assert cert_metrics(acme) == []
        until(lambda: "unable to obtain acme certificate" in acme.service_logs(300, ("traefik",)).lower(), 60,
              "Traefik to log that it could not obtain a certificate")
        alerts = until(lambda: acme.alerts("CertificateIssuanceFailing", verify=False), 240,
                       lambda: f"Alertmanager to list CertificateIssuanceFailing:\n{acme.service_table()}", pause=5)
        assert alerts[0]["labels"]["severity"] == "critical"
    finally:
        acme.pebble.resume()


@pytest.mark.parametrize("https", ["off"])
def test_https_off_serves_http_without_acme(acme, https):
    """HTTPS_SWITCH=off: plain HTTP on port 80 serves the app, port 443 is not published, and the new Traefik task
    runs no ACME provider (the HTTPS tasks before it log "Starting provider *acme.Provider"). Pebble's order count is
    not the measure here: orders of the task before the switch may still be under way when it runs."""
    acme.deploy(SHA1, https=https)
    # script/deploy waits for the app services' updates, and for the others only to have all their replicas: the
    # old Traefik task still counts, so the deploy can end before Traefik runs with its new static configuration
    # (seen: a 301 from the old task right after "All done"). Hence the wait for the plain answer here.
    answer = until(lambda: (lambda got: [got] if got.status_code == 200 else None)(acme.get("api", "/version")), 120,
                   "Traefik's new task to serve api. over plain HTTP", pause=2)[0]
    assert answer.json()["version"] == SHA1
    assert acme.published_https() == "off"
    logged = docker("logs", acme.container("traefik"))
    assert "Starting provider *traefik.Provider" in logged.stdout + logged.stderr
    assert "acme.Provider" not in logged.stdout + logged.stderr
