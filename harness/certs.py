"""Throwaway TLS material made with openssl: a CA and a wildcard certificate it signs."""

from pathlib import Path

from harness.proc import run


def make_ca(directory, domain, *more):
    """A throwaway CA and a certificate for *.domain and domain (and each of more, the same way) signed by it,
    valid 2 days.

    Returns (ca, cert, key) as paths under directory: verify clients against
    ca; serve cert with key (a server needs only those two).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "origin.key", directory / "origin.csr", directory / "origin.crt"
    ext = directory / "ext.cnf"
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", ca_key, "-out", ca,
         "-subj", "/CN=LHD test CA"])
    run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN=*.{domain}"])
    ext.write_text("subjectAltName=" + ",".join(f"DNS:*.{d},DNS:{d}" for d in (domain, *more)) + "\n")
    run(["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
         "-out", cert, "-extfile", ext])
    return ca, cert, key
