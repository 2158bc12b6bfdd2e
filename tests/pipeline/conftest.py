"""Fixtures of the pipeline tier: a registry and an SSH server (harness/server.py), the jobs' engine and the
rendered project in a git repository with a real remote (harness/pipeline.py); one of each per session."""

import pytest

from harness.docker import engine_available
from harness.github_steps import GITHUB_ANSWERS, GITHUB_NAMES, StepRunner, Workflow, substitutions
from harness.pipeline import GitlabCiLocal, Repository, Runner, TemplateRepository, ToolMissing, gitlab_ci_local
from harness.report import add_to_report
from harness.server import (
    REGISTRY_HOST,
    REMOTE_DIR,
    SERVER_IMAGE,
    SecondServer,
    Server,
    ServerStack,
    build_images,
    keypair,
    seedable,
    upstream_image,
)
from harness.stack import STAGING_DOMAIN
from kit import job_images


@pytest.fixture(scope="session")
def job_stand_ins(image_mode, request):
    """The job images' stand-ins under their upstream names for the session (kit/job_images.py), listed in the
    run's image-mode report (after image_mode, which starts it)."""
    with job_images.lent() as lines:
        add_to_report(request.config, ["pipeline: job images", *lines])
        yield
    left = job_images.leftovers()
    assert not left, f"job stand-ins kept upstream names: {left}"


@pytest.fixture(scope="session")
def server(image_mode, tmp_path_factory):
    """The registry and the server node (sshd, deploy user); at teardown everything is removed, and anything
    left is an error."""
    if not engine_available():
        pytest.fail("the pipeline tier needs a running Docker engine: run tools/bootstrap engine", pytrace=False)
    try:
        gitlab_ci_local()
    except ToolMissing as error:
        pytest.fail(str(error), pytrace=False)
    build_images()
    remote = tmp_path_factory.mktemp("remote")
    s = Server(tmp_path_factory.mktemp("server"), remote, registry_hosts=(REGISTRY_HOST, GITHUB_NAMES.registry_host))
    try:
        yield s.start()
    finally:
        s.close()
    left = s.leftovers()
    assert not any(left.values()), f"the server left {left}"


@pytest.fixture(scope="session")
def template(tmp_path_factory):
    """A git repository of the work tree's template, which the project is rendered from."""
    return TemplateRepository(tmp_path_factory.mktemp("template") / "lhd")


@pytest.fixture(scope="session")
def repository(server, template, tmp_path_factory):
    """The rendered project committed on main and pushed to the server's remote (a bare repository)."""
    repo = Repository(tmp_path_factory.mktemp("project"), server.remote, template=template.path)
    repo.owned_by(server.add_deploy_user())
    return repo


@pytest.fixture(scope="session")
def runner(server, image_mode):
    """The jobs' engine, with the images the project's Dockerfiles build from and (local mode) the dev stack's
    PostgreSQL, which the test job's script/test starts: copied from a seeded store (harness/cluster_nodes.py
    `seeded_store`) when the host has them all, else loaded."""
    images = Runner.build_bases() + ([upstream_image("postgres")] if image_mode == "local" else [])
    r = Runner(server, SERVER_IMAGE).start(seed=seedable(images))
    r.load_build_bases()
    if image_mode == "local":
        r.load_images([upstream_image("postgres")])
    return r


@pytest.fixture(scope="session")
def prepared(image_mode, server, repository, request):
    """The server as the README's "1. Server" leaves it: cloned from the remote, logged in, bootstrapped."""
    server.site_ca = server.prepare(repository.clone_url(REMOTE_DIR), image_mode)
    add_to_report(request.config, list(server.notes) + [
        f"pipeline: server {server.host}: kit/dind node with OpenSSH sshd, user deploy, project cloned from a bare "
        "repository (file://) and bootstrapped as the README says",
        f"pipeline: registry {server.registry} (Debian docker-registry, TLS + htpasswd) answering as registry.gitlab.com",
    ])
    return server


@pytest.fixture(scope="session")
def ci_key(tmp_path_factory):
    """The CI deploy key pair: (private key, public line)."""
    return keypair(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="session")
def gitlab(job_stand_ins, repository, template, prepared, runner, ci_key, request):
    """gitlab-ci-local on the repository (the template mounted where .cruft.json names it); the server
    authorizes the CI key as the README says."""
    prepared.authorize(ci_key[1])
    g = GitlabCiLocal(repository, prepared, runner, volumes=[template.path])
    yield g
    add_to_report(request.config, [f"pipeline: job {job}: {seconds:.0f} s, {'passed' if passed else 'failed'}"
                                   for job, seconds, passed in g.runs]
                  + [f"pipeline: left by gitlab-ci-local's --cleanup, removed: {what}" for what in g.leaked])
    left = g.leftovers()
    assert not left, f"gitlab-ci-local left {left}"


@pytest.fixture(scope="session")
def stack(prepared, image_mode):
    """The server's stack as the host sees it: Traefik on the published 443, the database, the secrets."""
    return ServerStack(prepared, prepared.site_ca, image_mode)


@pytest.fixture(scope="session")
def operator_key(prepared, tmp_path_factory):
    """An operator's own login key for deploy on the server (not the CI key): its private key's path."""
    directory = tmp_path_factory.mktemp("operator")
    _, public = keypair(directory, "operator")
    prepared.authorize(public, forced=False)
    return directory / "operator"


@pytest.fixture(scope="session")
def staging(server, repository, image_mode, ci_key, tmp_path_factory, request):
    """A staging server: a second node with sshd on the first one's network and registry, prepared as the
    README's "1. Server" says with `script/bootstrap --swarm --domain staging.DOMAIN`, the CI key authorized."""
    s = SecondServer(server, tmp_path_factory.mktemp("staging")).start()
    s.site_ca = s.prepare(repository.clone_url(REMOTE_DIR), image_mode, domain=STAGING_DOMAIN)
    s.authorize(ci_key[1])
    add_to_report(request.config, [f"pipeline: staging server {s.host}: a second kit/dind node with sshd, "
                                   f"bootstrapped with --domain {STAGING_DOMAIN}"])
    return s


@pytest.fixture(scope="session")
def github_repository(server, template, tmp_path_factory):
    """The project rendered with git_host=github (so ci=github: .github/workflows/ci.yml), committed on main and
    pushed to a bare repository of its own under the server's remote folder (remote/github)."""
    remote = server.remote / "github"
    remote.mkdir(mode=0o755, exist_ok=True)
    remote.chmod(0o755)
    repo = Repository(tmp_path_factory.mktemp("github-project"), remote, template=template.path, answers=GITHUB_ANSWERS)
    repo.owned_by(server.add_deploy_user())
    repo.server_url = f"file://{REMOTE_DIR}/github/{repo.bare.name}"
    return repo


@pytest.fixture(scope="session")
def github_server(server, github_repository, image_mode, ci_key, tmp_path_factory, request):
    """The GitHub project's production server: a second kit/dind node with sshd on the session's network and
    registry, prepared as the README's "1. Server" says (docker login ghcr.io, clone, bootstrap), the CI key
    authorized."""
    s = SecondServer(server, tmp_path_factory.mktemp("github-server"), role="github").start()
    s.site_ca = s.prepare(github_repository.server_url, image_mode, registry_host=GITHUB_NAMES.registry_host)
    s.authorize(ci_key[1])
    add_to_report(request.config, [f"pipeline: github server {s.host}: a second kit/dind node with sshd, the "
                                   f"GitHub-rendered project cloned and bootstrapped; registry {server.registry} "
                                   f"also answering as {GITHUB_NAMES.registry_host}"])
    return s


@pytest.fixture(scope="session")
def github(server, runner, github_repository, template, request, tmp_path_factory):
    """harness/github_steps.py on the GitHub project's workflow: job containers (kit job stand-ins, by their kit
    names) on the session's network with the runner engine's socket; GITHUB_TOKEN is the registry's password
    and the actor its user. Environments' secrets are given per test (StepRunner.environments)."""
    job_images.build()
    kit_names = {image.upstream: image.name for image in job_images.images()}
    workflow = Workflow(github_repository.path / ".github/workflows/ci.yml",
                        f"{GITHUB_NAMES.owner}/{GITHUB_NAMES.repo}")
    r = StepRunner(workflow, tmp_path_factory.mktemp("github-runs"), server.network,
                   runner.socket_dir / "docker.sock", github_repository.bare,
                   job_image=kit_names[f"docker:{job_images.DOCKER}"],
                   python_image=kit_names[f"python:{job_images.PYTHON}-slim"],
                   secrets={"GITHUB_TOKEN": server.registry_password}, labels=server.labels, volumes=[template.path])
    r.actor = server.registry_user
    yield r
    add_to_report(request.config, [*substitutions(r)] + [f"pipeline: github job {job}: {seconds:.0f} s, {result}"
                                                          for job, seconds, result in r.runs])
    left = r.leftovers()
    assert not left, f"the GitHub step runner left {left}"
