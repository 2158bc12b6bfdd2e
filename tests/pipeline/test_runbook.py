"""The generated README's production path, run as written (issue 27, "A runbook that is run"; issue 24, "section
1 is two commands"): every shell block marked `<!-- runbook: step=N where=... as=... -->`, in order, from a
workstation with the test's registry and git host (harness/runbook.py) against a FRESH server, until step 5's
`curl .../version` prints the commit. A block that cannot run here is skipped with its reason below; every
other one runs.

The server is a fresh Debian container with sshd and nothing else (harness/provision.py `FreshServers`, the
kit/provision-node image: no Docker, no git, no firewall, no deploy user), on the pipeline session's network
where the registry answers as registry.gitlab.com; root takes the workstation's key, as a cloud image takes
yours. Step 3's `script/provision` runs in the workstation over real SSH and installs everything else there
with Debian's real packages. What this server is not, and so what is not proven here: it runs Debian sid (the
README names Debian 12/13 and Ubuntu 24.04), so Docker comes from the distribution's docker.io (auto), never
from Docker's apt repository (download.docker.com cannot be reached here); systemd is not PID 1 (tini is, as in
tests/pipeline/test_provision.py), so Docker and sshd are started by Debian's init.d scripts and the nftables
firewall is loaded but has no boot unit.
"""

import re
import time

import pytest

from harness.bake import bake
from harness.certs import make_ca
from harness.provision import FreshServers, build_image
from harness.report import add_to_report
from harness.runbook import WORKDIR, Workstation, assignments, authorize_git, blocks, fences, serve_git, substitute
from harness.server import DEPLOY_USER, PROJECT_DIR, REGISTRY_HOST, THIRD_PARTY, upstream_image
from harness.stack import DOMAIN

GIT_PATH = "my-group/lhd-app.git"  # the default answers' repository, git@gitlab.com:my-group/lhd-app.git

# Blocks that cannot run here, by a text only they hold -> why (each is also listed in the run's report).
CANNOT_RUN = {
    "script/monitoring up": "monitoring's Grafana and cAdvisor images cannot be had here (shared/ENVIRONMENT.md); "
                            "the e2e tier starts the monitoring stack with its harness override",
}

# Workstation blocks run in the project's folder (the README), step 4's scp too: the README keeps the reader's
# certificates in the checkout's git-ignored etc/certs/ (anywhere else in the checkout they are untracked files,
# and step 5's `script/build --push` refuses the working tree: seen, "the working tree has changes").
CERTS = "etc/certs"


def reason_to_skip(block):
    return next((reason for text, reason in CANNOT_RUN.items() if text in block.body), None)


@pytest.fixture
def fresh(server, tmp_path):
    """One fresh server (sshd only) on the session's network: registry.gitlab.com is the test registry (its CA
    where Docker looks for it, the stand-in for a public CA) and gitlab.com the test's git host (the session
    server's node); removed at the end."""
    build_image()
    fleet = FreshServers(tmp_path / "fresh", network=server.network, registry=(server.registry_ip, server.ca),
                         hosts={"gitlab.com": server.ip(server.manager)})
    try:
        fleet.add("runbook")
        yield fleet
    finally:
        fleet.close()


def test_readme_production_path_runs_as_written(server, runner, fresh, image_mode, tmp_path, request):
    """From a fresh server to /version serving the commit, by the README's marked blocks run verbatim."""
    started_all = time.perf_counter()
    project = bake(tmp_path / "render")
    readme = (project / "README.md").read_text()
    found = blocks(readme)
    assert found and len(found) == fences(readme, "## Go to production", "## Staging"), \
        "every sh block of the production path carries a runbook marker"
    assert any("script/provision" in b.body and b.where == "workstation" for b in found), \
        "step 3 provisions the server from the workstation"
    target = fresh.servers[0]
    # The reader's setting: a git host with their key, the server's root login with their key (the provider's
    # console), both host keys known, the site's CA trusted (a real site's certificate is), a registry login
    # with write access for step 5's push, the certificate files beside the project.
    serve_git(server, GIT_PATH, [])
    # The server's own name too, as the reader's resolver has it: Docker's embedded DNS once answered "Name or service
    # not known" for it under the lanes' load, eight blocks into the run (2026-12-04), and that is not the README's.
    ws = Workstation(server, runner, {"gitlab.com": server.manager, f"api.{DOMAIN}": target, target: target}).start()
    ws.put(project, f"{WORKDIR}/")
    authorize_git(server, ws.public_key())
    ws.trust_ssh_host(server.known_hosts_line("gitlab.com"))
    ws.trust_ssh_host(fresh.known_hosts_line(target, target))
    fresh.on(target, "sh", "-c", 'printf "%s\\n" "$0" >>/root/.ssh/authorized_keys', ws.public_key())
    # Step 4's DNS records, as the test's resolver: every routed host of DOMAIN names the server, for the server
    # itself (script/doctor checks them there) as for the workstation (its --add-host entries).
    routed = " ".join(f"{name}.{DOMAIN}" for name in ("api", "traefik", "grafana", "prometheus", "alertmanager"))
    fresh.on(target, "sh", "-c", 'printf "%s %s\\n" "$0" "$1" >>/etc/hosts', fresh.ip(target), routed)
    site_ca, cert, key = make_ca(tmp_path / "site-certs", DOMAIN)
    ws.trust_ca(site_ca)
    here = f"{WORKDIR}/{project.name}"
    ws.put(cert, f"{here}/{CERTS}/origin.crt")
    ws.put(key, f"{here}/{CERTS}/origin.key")
    ws.sh(f"docker login {REGISTRY_HOST} -u {server.registry_user} --password-stdin", input=server.registry_password)

    values = {"SERVER": target, "REGISTRY_USER": server.registry_user}
    kept = {}  # (where, user) -> the assignments earlier blocks made in that shell
    ran, skipped, log, notes = [], {}, [], []
    for block in found:
        reason = reason_to_skip(block)
        if reason:
            skipped[block.name] = reason
            continue
        body = substitute(block.body, values)
        script = "\n".join([*kept.get((block.where, block.user), []), body])
        stdin = server.registry_password if "--password-stdin" in body else None
        started = time.perf_counter()
        if block.where == "workstation":
            cwd = WORKDIR if body.startswith(f"cd {project.name}\n") else here
            result = ws.sh(script, cwd=cwd, input=stdin, check=False)
        else:
            cwd = PROJECT_DIR if block.user == DEPLOY_USER else "/root"
            result = ws.ssh(block.user, target, script, cwd, input=stdin, check=False)
        log.append(f"  {block.name}: {time.perf_counter() - started:.0f} s")
        assert result.returncode == 0, \
            f"{block.name} failed:\n{body}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        ran.append((block, result))
        kept.setdefault((block.where, block.user), []).extend(assignments(body))
        notes += after(block, result, server, fresh, target, image_mode)
    total = time.perf_counter() - started_all
    add_to_report(request.config, [f"pipeline: runbook from a fresh server to /version: {total:.0f} s", *log,
                                   *[f"  {name}: skipped: {why}" for name, why in skipped.items()],
                                   *[f"  provision: {note}" for note in notes]])

    assert {b.name for b, _ in ran} | set(skipped) == {b.name for b in found}
    provisioned = next(r.stdout for b, r in ran if "script/provision" in b.body)
    assert "✔ Provisioned:" in provisioned, provisioned
    sha = ws.sh("git rev-parse HEAD", cwd=here).stdout.strip()
    curls = [r.stdout for b, r in ran if "/version" in b.body and b.where == "workstation"]
    assert curls and f'"version":"{sha[:8]}"' in curls[-1].replace(" ", ""), curls
    # The server fetches with its own read-only key (the clone's core.sshCommand), as CI's deploys will.
    assert fresh.as_deploy(target, "git", "fetch", "--dry-run", "origin").returncode == 0


def after(block, result, server, fresh, target, mode):
    """What the README leaves to the reader between blocks, done as a reader would, and this machine's settings;
    returns notes for the run's report."""
    if re.search(r"^cat \S*_clone\.pub", block.body, re.M):
        # "add it to the project [as a] read-only [deploy key]": the git host authorizes the printed key.
        authorize_git(server, result.stdout.strip().splitlines()[-1])
    if "script/provision" in block.body:
        # This machine's settings (no IPVS: dnsrr; no IPsec between Docker-in-Docker engines), where the README
        # sends per-server settings, and (local mode) the stack's Docker Hub images, which no registry serves here.
        notes = fresh.tune(target, mode)
        if mode == "local":
            server.load([upstream_image(name) for name in THIRD_PARTY], [target])
        return notes
    return []
