"""A fresh server provisioned by script/provision, first deployed as the README says, then deployed to by
script/ci_deploy, the path the pipeline's deploy jobs take (issue 24: "fresh server to first deploy").

The server is a fresh Debian container (harness/provision.py) on the pipeline session's network, where its
registry answers as registry.gitlab.com (the `server` fixture); the images are those of the project's commits,
built and pushed with the jobs' engine (the `runner` fixture) by `script/build --push --digests`, as the
pipeline's `build` job runs it. The project is a rendered one in git whose remote is a bare repository of this
module, which the server clones and fetches (file://).

In file order: provisioned, then the first deploy by hand on the server (docker login, the origin certificate,
`script/deploy --first SHA8`) until /version answers the commit through the server's 443; then a second commit,
built and pushed, deployed from the host by `script/ci_deploy --digests FILE production SHA` over real SSH with
the CI key (in an ssh-agent, as the deploy job loads SSH_KEY) and the server's host key pinned in
SSH_KNOWN_HOSTS, until /version answers that commit.
"""

import os
import time

import pytest

from harness.pipeline import Repository
from harness.proc import run
from harness.provision import REMOTE_DIR, FreshServers, build_image, push_images
from harness.report import add_to_report
from harness.server import PROJECT_DIR, keypair, served_version
from harness.wait import until

TIMES = {}
STATE = {}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """The rendered project committed on main and pushed to a bare repository the servers mount read-only."""
    remote = tmp_path_factory.mktemp("provision-remote")
    remote.chmod(0o755)  # the mount point: the deploy user must reach the repository in it
    repository = Repository(tmp_path_factory.mktemp("provision-project"), remote)
    run(["chmod", "-R", "a+rX", remote])
    return repository


@pytest.fixture(scope="module")
def fleet(server, repo, tmp_path_factory):
    """One fresh server, alpha, on the pipeline session's network, its 443 published on 127.0.0.1."""
    build_image()
    servers = FreshServers(tmp_path_factory.mktemp("provision-deploy"), remote=repo.bare.parent,
                           network=server.network, registry=(server.registry_ip, server.ca))
    try:
        servers.add("alpha", publish=(443,))
        yield servers
    finally:
        servers.close()


@pytest.fixture(scope="module")
def ci_key(tmp_path_factory):
    """The CI deploy key pair's private key file (its public half next to it, .pub)."""
    directory = tmp_path_factory.mktemp("provision-ci-key")
    keypair(directory, "ci")
    return directory / "ci"


def version(fleet, container, site_ca):
    """/version through the container's published 443 (harness/server.py served_version)."""
    return served_version(fleet.ports[container][443], site_ca)


def test_a_fresh_server_is_provisioned_and_first_deployed(server, runner, repo, fleet, ci_key, image_mode,
                                                          tmp_path_factory, request):
    """script/provision, then the README's first deploy by hand: /version answers the commit."""
    sha8 = repo.sha[:8]
    # main's compile, as an earlier pipeline of the project leaves it (the GitLab part's second commit proves a
    # compile in a job): the build job's --cache-from main reuses it here and for the second commit.
    # The seed holds the compile's whole chain, so the runbook's workstation build (`script/build --push` as the
    # README says, no --cache-from) on this engine reuses it too (the runbook 120 s, was 403 s). Cold instead (run
    # 16, 2026-12-04), this build took 567 s and the second commit's 282 s (no main to reuse): the servers' step
    # 1551 s, against 1011 s seeded (run 17) and 619 s with the whole chain (alone on the machine).
    TIMES["seed"], seeded = runner.seed_compile(repo.path)
    _, TIMES["build"] = push_images(runner, repo, server, tmp_path_factory.mktemp("build-1"))
    alpha = fleet.servers[0]
    started = time.perf_counter()
    result = run([repo.path / "script/provision", "-F", fleet.ssh_config, "--key", f"{ci_key}.pub",
                  "--repo", f"file://{REMOTE_DIR}/{repo.bare.name}", "root@alpha"], timeout=1500, cwd=repo.path)
    TIMES["provision"] = time.perf_counter() - started
    print(result.stdout, result.stderr, sep="\n")
    assert "✔ Provisioned:" in result.stdout, result.stdout
    step = time.perf_counter()
    STATE["site_ca"], notes = fleet.ready_for_first_deploy(alpha, server, image_mode)
    TIMES["ready"] = time.perf_counter() - step
    step = time.perf_counter()
    deployed = fleet.as_deploy(alpha, f"{PROJECT_DIR}/script/deploy", "--first", sha8, timeout=900)
    print(deployed.stdout, deployed.stderr, sep="\n")
    until(lambda: version(fleet, alpha, STATE["site_ca"]) == sha8, 120, f"alpha to serve {sha8} after the first deploy")
    TIMES["first deploy"] = time.perf_counter() - step
    total = TIMES["fresh server to first deploy"] = time.perf_counter() - started
    figure = (f"provision: fresh server to first deploy {total:.0f} s (script/provision "
              f"{TIMES['provision']:.0f} s, docker login + origin certificate + this machine's tuning + "
              f"local-mode Docker Hub images {TIMES['ready']:.0f} s, "
              f"script/deploy --first until /version answers {TIMES['first deploy']:.0f} s; the images "
              f"built and pushed beforehand by the jobs' engine in {TIMES['build']:.0f} s, main's compile "
              f"given to it in {TIMES['seed']:.0f} s)")
    print(figure)
    add_to_report(request.config, [figure, f"provision: {seeded}", *[f"provision: {note}" for note in notes]])


def test_a_second_commit_is_deployed_by_script_ci_deploy(server, runner, repo, fleet, ci_key, tmp_path_factory,
                                                         request):
    """A new commit, built and pushed, deployed from the host with script/ci_deploy and the CI key: the server
    checks the digests, checks out the commit and serves it."""
    assert "site_ca" in STATE, "the first deploy did not happen"
    alpha = fleet.servers[0]
    with open(repo.path / "CHANGELOG.md", "a") as changelog:
        changelog.write("\n- Deployed by CI to a provisioned server.\n")
    sha = repo.commit("Deployed by CI")
    repo.push("main")
    run(["chmod", "-R", "a+rX", repo.bare])
    digests, TIMES["second build"] = push_images(runner, repo, server, tmp_path_factory.mktemp("build-2"))
    address = fleet.ip(alpha)
    env = {**os.environ, "SERVER_IP": address, "SSH_KNOWN_HOSTS": fleet.known_hosts_line(alpha, address),
           "DEPLOY_USER": "deploy"}
    started = time.perf_counter()
    # As the deploy job: an agent holding SSH_KEY (here the key file), then script/ci_deploy; the agent ends with it.
    result = run(["ssh-agent", "bash", "-c", 'ssh-add -q "$0" && exec "$@"', ci_key,
                  "script/ci_deploy", "--digests", digests, "production", sha], cwd=repo.path, env=env, timeout=900)
    output = result.stdout + result.stderr
    print(output)
    assert f"Checked out {sha} (on origin/main)" in output, output
    assert fleet.as_deploy(alpha, "git", "rev-parse", "HEAD").stdout.strip() == sha
    until(lambda: version(fleet, alpha, STATE["site_ca"]) == sha[:8], 120, f"alpha to serve {sha[:8]}")
    TIMES["ci_deploy"] = time.perf_counter() - started
    line = (f"provision: script/ci_deploy of a second commit to the provisioned server {TIMES['ci_deploy']:.0f} s "
            f"(its build {TIMES['second build']:.0f} s)")
    print(line, "times:", TIMES, sep="\n")
    add_to_report(request.config, [line])
