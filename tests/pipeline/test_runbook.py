"""The generated README's production path, run as written (issue 27, "A runbook that is run"): every shell block
marked `<!-- runbook: step=N where=... as=... -->`, in order, on a fresh server over real SSH and in a
workstation with the test's registry and git host (harness/runbook.py), until step 5's `curl .../version`
prints the commit. A block that cannot run here is skipped with its reason below; every other one runs.
"""

import time

import pytest

from harness.bake import bake
from harness.certs import make_ca
from harness.report import add_to_report
from harness.runbook import WORKDIR, Workstation, assignments, authorize_git, blocks, fences, serve_git, substitute
from harness.server import DEPLOY_USER, PROJECT_DIR, REGISTRY_HOST, THIRD_PARTY, SecondServer, upstream_image
from harness.stack import DOMAIN

GIT_PATH = "my-group/lhd-app.git"  # the default answers' repository, git@gitlab.com:my-group/lhd-app.git

# Blocks that cannot run here, by a text only they hold -> why (each is also listed in the run's report).
CANNOT_RUN = {
    "ufw allow": "the server is a container: a host firewall (ufw) cannot be set from inside one, so the root "
                 "block is not run; the test makes the deploy user and the project folder as it says (useradd ... "
                 "--groups docker deploy, install -d -o deploy) instead",
    "script/monitoring up": "monitoring's Grafana and cAdvisor images cannot be had here (shared/ENVIRONMENT.md); "
                            "the e2e tier starts the monitoring stack with its harness override",
}

# Workstation blocks run in the project's folder (the README), step 4's scp too: the README keeps the reader's
# certificates in the checkout's git-ignored etc/certs/ (anywhere else in the checkout they are untracked files,
# and step 5's `script/build --push` refuses the working tree: seen, "the working tree has changes").
CERTS = "etc/certs"
ELSEWHERE = {}


def reason_to_skip(block, project):
    for text, reason in CANNOT_RUN.items():
        if text in block.body:
            return reason
    if "script/doctor" in block.body and not (project / "script/doctor").exists():
        return "script/doctor is not in this template yet (issue 27's preflight)"
    return None


@pytest.fixture
def runbook_server(server, tmp_path):
    """A fresh server: a kit/dind node with sshd and nothing else, on the registry's network, resolving
    gitlab.com to the test's git host (the first server's node); removed with the first server."""
    return SecondServer(server, tmp_path / "runbook-server", role="runbook", hosts={"gitlab.com": server.manager}).start()


def test_readme_production_path_runs_as_written(server, runner, runbook_server, image_mode, tmp_path, request):
    project = bake(tmp_path / "render")
    readme = (project / "README.md").read_text()
    found = blocks(readme)
    assert found and len(found) == fences(readme, "## Go to production", "## Staging"), \
        "every sh block of the production path carries a runbook marker"
    target = runbook_server
    # The reader's setting: a git host with their key, the server's root login with their key (the provider's
    # console), both host keys known, the site's CA trusted (a real site's certificate is), a registry login
    # with write access for step 5's push, the certificate files beside the project.
    serve_git(server, GIT_PATH, [])
    ws = Workstation(server, runner, {"gitlab.com": server.manager, f"api.{DOMAIN}": target.manager}).start()
    ws.put(project, f"{WORKDIR}/")
    authorize_git(server, ws.public_key())
    ws.trust_ssh_host(server.known_hosts_line("gitlab.com"))
    ws.trust_ssh_host(target.known_hosts_line())
    target.as_root("sh", "-c", 'umask 077 && mkdir -p /root/.ssh && printf "%s\\n" "$0" >>/root/.ssh/authorized_keys',
                   ws.public_key())
    # Step 4's DNS records, as the test's resolver: every routed host of DOMAIN names the server, for the server
    # itself (script/doctor checks them there) as for the workstation (its --add-host entries).
    routed = " ".join(f"{name}.{DOMAIN}" for name in ("api", "traefik", "grafana", "prometheus", "alertmanager"))
    target.as_root("sh", "-c", 'printf "%s %s\\n" "$0" "$1" >>/etc/hosts', target.ip(target.manager), routed)
    site_ca, cert, key = make_ca(tmp_path / "site-certs", DOMAIN)
    ws.trust_ca(site_ca)
    here = f"{WORKDIR}/{project.name}"
    ws.put(cert, f"{here}/{CERTS}/origin.crt")
    ws.put(key, f"{here}/{CERTS}/origin.key")
    ws.sh(f"docker login {REGISTRY_HOST} -u {server.registry_user} --password-stdin", input=server.registry_password)

    values = {"SERVER": target.host, "REGISTRY_USER": server.registry_user,
              "ADVERTISE_ADDR": target.ip(target.manager)}
    kept = {}  # (where, user) -> the assignments earlier blocks made in that shell
    ran, skipped, log = [], {}, []
    for block in found:
        reason = reason_to_skip(block, project)
        if reason:
            skipped[block.name] = reason
            if "ufw allow" in block.body:
                target.add_deploy_user()
                target.as_root("install", "-d", "-o", DEPLOY_USER, "-g", DEPLOY_USER, PROJECT_DIR)
        else:
            if block.step == "6" and block.where == "server":
                values["CI_PUBLIC_KEY"] = ws.sh("cat ci_deploy_key.pub", cwd=here).stdout.strip()
            body = substitute(block.body, values)
            script = "\n".join([*kept.get((block.where, block.user), []), body])
            started = time.perf_counter()
            if block.where == "workstation":
                cwd = WORKDIR if body.startswith(f"cd {project.name}\n") else here
                cwd = next((folder for text, (folder, _) in ELSEWHERE.items() if text in body), cwd)
                result = ws.sh(script, cwd=cwd, check=False)
            else:
                cwd = PROJECT_DIR if block.user == DEPLOY_USER else "/root"
                stdin = server.registry_password if "--password-stdin" in body else None
                result = ws.ssh(block.user, target.host, script, cwd, input=stdin, check=False)
            log.append(f"  {block.name}: {time.perf_counter() - started:.0f} s")
            assert result.returncode == 0, \
                f"{block.name} failed:\n{body}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
            ran.append((block, result))
            kept.setdefault((block.where, block.user), []).extend(assignments(body))
        after(block, ran[-1][1] if ran and ran[-1][0] is block else None, server, target, ws, image_mode)
    add_to_report(request.config, ["pipeline: runbook blocks", *log,
                                   *[f"  {name}: skipped: {why}" for name, why in skipped.items()]])

    assert {b.name for b, _ in ran} | set(skipped) == {b.name for b in found}
    sha = ws.sh("git rev-parse HEAD", cwd=here).stdout.strip()
    curls = [r.stdout for b, r in ran if "/version" in b.body and b.where == "workstation"]
    assert curls and f'"version":"{sha[:8]}"' in curls[-1].replace(" ", ""), curls


def after(block, result, server, target, ws, mode):
    """What the README leaves to the reader between blocks, done as a reader would."""
    if block.where == "server" and block.user == "root":
        # Step 3's root block copies root's authorized keys to deploy (step 4's scp and doctor --server log in
        # as deploy@SERVER); the workstation key is authorized here as well, since this harness logs root in
        # by its own key, and every deploy block runs over SSH as deploy.
        target.authorize(ws.public_key(), forced=False)
    if result is not None and "ssh-keygen" in block.body and block.where == "server":
        # "add it to the repository as a read-only deploy key": the git host authorizes the printed key.
        authorize_git(server, result.stdout.strip().splitlines()[-1])
    if result is not None and "script/bootstrap" in block.body:
        # This machine's settings (no IPVS: dnsrr; no IPsec between Docker-in-Docker engines), where the README
        # sends per-server settings, and (local mode) the stack's Docker Hub images, which no registry serves here.
        target.tune(mode)
        if mode == "local":
            target.load([upstream_image(name) for name in THIRD_PARTY], [target.manager])
