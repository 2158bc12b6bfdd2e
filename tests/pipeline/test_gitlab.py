"""The generated .gitlab-ci.yml, unchanged, run by gitlab-ci-local job by job in pipeline order against a real
registry (TLS + login) and a real server reached over SSH; then the rules and the planted failures.

The tests run in file order: the rules (which jobs a pipeline holds), template-update-check, deploy-production
without SSH_KEY, build, tag-branch, the first deploy by hand (the README: "Run `script/deploy --first` on each
server once by hand"), deploy-production; then the failures a user would see in the deploy job.
"""

import time

from harness.server import keypair
from harness.stack import DOMAIN, REGISTRY, host_header_session
from harness.wait import until

# Jobs that push images or deploy: a merge request pipeline and an unprotected branch must run none of them.
PUSHING = {"build", "tag-branch", "deploy-staging", "deploy-production"}


def running(plan):
    return {job for job, when in plan.items() if when != "never"}


def deploy_variables(gitlab, server, key, known_hosts=None):
    """The production environment's protected variables (README "CI/CD"), set as GitLab hands them to the job."""
    return gitlab.push_variables(SSH_KEY=key, SERVER_IP=server.host,
                                 SSH_KNOWN_HOSTS=known_hosts or server.known_hosts_line())


def version(server):
    """/version through the server's published 443, as api.DOMAIN, verified against the site's CA."""
    answer = host_header_session().get(f"https://127.0.0.1:{server.ports[443]}/version", timeout=5,
                                       headers={"Host": f"api.{DOMAIN}"}, verify=str(server.site_ca))
    answer.raise_for_status()
    return answer.json()["version"]


def registry_digest(server, image, tag):
    """The registry's digest of image:tag (a HEAD of its manifest, asked on the server through the login)."""
    out = server.as_root("curl", "-fsSI", "--cacert", "/etc/docker/certs.d/registry.gitlab.com/ca.crt",
                         "-u", f"{server.registry_user}:{server.registry_password}",
                         "-H", "Accept: application/vnd.docker.distribution.manifest.v2+json",
                         f"https://registry.gitlab.com/v2/{REGISTRY.split('/', 1)[1]}/{image}/manifests/{tag}").stdout
    return next(line.split(":", 1)[1].strip() for line in out.splitlines()
                if line.lower().startswith("docker-content-digest:"))


def built_digest(gitlab, name):
    """The digest the build job recorded for name (its images.digests artifact)."""
    path = gitlab.repo.path / ".gitlab-ci-local/artifacts/build/images.digests"
    return next(line.split("@")[1] for line in path.read_text().split() if line.split("@")[0].endswith(f"/{name}"))


def test_merge_request_pipeline_pushes_and_deploys_nothing(gitlab):
    plan = gitlab.plan(gitlab.push_variables(branch="feature", protected=False, source="merge_request_event"))
    assert not running(plan) & (PUSHING | {"build-check"}), plan
    assert "test" in running(plan), plan


def test_unprotected_branch_builds_but_pushes_and_deploys_nothing(gitlab):
    plan = gitlab.plan(gitlab.push_variables(branch="feature", protected=False))
    assert not running(plan) & PUSHING, plan
    assert {"build-check", "test"} <= running(plan), plan


def test_protected_default_branch_runs_build_tag_and_production_deploy(gitlab):
    plan = gitlab.plan(gitlab.push_variables())
    assert {"build", "tag-branch", "deploy-production"} <= running(plan), plan
    assert not running(plan) & {"build-check", "deploy-staging"}, plan


def test_template_update_check_reports_up_to_date_then_out_of_date(gitlab, template):
    """cruft check against the template the project was rendered from: up to date; after a template commit,
    out of date (the job may fail: allow_failure, so the pipeline goes on)."""
    job = gitlab.run("template-update-check", gitlab.push_variables())
    assert job.passed, job.output
    assert any("is up to date" in line for line in job.script_lines()), job.output
    template.commit("A template change")
    job = gitlab.run("template-update-check", gitlab.push_variables())
    assert any("is out of date" in line for line in job.script_lines()), job.output
    # allow_failure: the job fails as a warning (gitlab-ci-local's WARN, GitLab's orange) and the pipeline passes
    assert job.passed and " WARN  template-update-check" in job.output, job.output


def test_deploy_production_without_ssh_key_stops_in_one_line(gitlab, prepared):
    job = gitlab.run("deploy-production", gitlab.push_variables(SERVER_IP=prepared.host,
                                                                SSH_KNOWN_HOSTS=prepared.known_hosts_line()))
    assert not job.passed, job.output
    assert job.script_lines() == ["SSH_KEY is not set for production, see README (CI/CD)"], job.output


def test_build_pushes_the_images_and_their_digests(gitlab, prepared):
    job = gitlab.run("build", gitlab.push_variables())
    assert job.passed, job.output
    digests = (gitlab.repo.path / ".gitlab-ci-local/artifacts/build/images.digests").read_text().split()
    sha8 = gitlab.repo.sha[:8]
    assert [d.split("@")[0] for d in digests] == [f"{REGISTRY}/{n}" for n in ("lucky-base", "lucky", "hasura")]
    for line in digests:
        name = line.split("@")[0].rsplit("/", 1)[1]
        assert registry_digest(prepared, name, sha8) == line.split("@")[1], line


def test_tag_branch_tags_the_commits_images_with_the_branch(gitlab, prepared):
    job = gitlab.run("tag-branch", gitlab.push_variables())
    assert job.passed, job.output
    sha8 = gitlab.repo.sha[:8]
    for name in ("lucky-base", "lucky", "hasura"):
        assert registry_digest(prepared, name, "main") == registry_digest(prepared, name, sha8), name


def test_first_deploy_by_hand_then_deploy_production_over_ssh(gitlab, prepared, ci_key):
    sha = gitlab.repo.sha
    started = time.perf_counter()
    prepared.script("deploy", "--first", sha[:8], timeout=900)
    gitlab.runs.append(("script/deploy --first, by hand on the server", time.perf_counter() - started, True))
    until(lambda: version(prepared) == sha[:8], 120, f"the server to serve {sha[:8]} after the first deploy")
    before = prepared.releases()
    job = gitlab.run("deploy-production", deploy_variables(gitlab, prepared, ci_key[0]))
    assert job.passed, job.output
    assert f"Checked out {sha} (on origin/main)" in job.output, job.output
    assert prepared.checkout() == sha
    after = prepared.releases()
    assert len(after) == len(before) + 1 and sha[:8] in after[-1] and "lucky@sha256:" in after[-1], after
    assert version(prepared) == sha[:8]


def test_deploy_with_a_wrong_ssh_key_fails_in_the_job(gitlab, prepared, tmp_path):
    before = prepared.releases()
    wrong, _ = keypair(tmp_path, "not-authorized")
    job = gitlab.run("deploy-production", deploy_variables(gitlab, prepared, wrong))
    assert not job.passed, job.output
    # sshd lists the methods it offers after the refusal: (publickey) or (publickey,password) by its config
    assert any("Permission denied (publickey" in line for line in job.script_lines()), job.output
    assert prepared.releases() == before


def test_deploy_to_a_server_with_another_host_key_fails_in_the_job(gitlab, prepared, ci_key, tmp_path):
    """SSH_KNOWN_HOSTS pins a key the server does not have (a server replaced, or a man in the middle)."""
    before = prepared.releases()
    _, other = keypair(tmp_path, "other-host")
    job = gitlab.run("deploy-production", deploy_variables(gitlab, prepared, ci_key[0],
                                                          known_hosts=f"{prepared.host} {' '.join(other.split()[:2])}"))
    assert not job.passed, job.output
    assert any("Host key verification failed" in line for line in job.script_lines()), job.output
    assert prepared.releases() == before


def test_tag_pushed_over_by_someone_else_is_refused_before_the_checkout(gitlab, prepared, ci_key):
    """Someone who can write the registry pushes lucky:<short SHA> pointing at other bytes: the server pulls the
    tag, finds another digest than the build's, and deploys nothing."""
    sha8 = gitlab.repo.sha[:8]
    lucky = f"{REGISTRY}/lucky:{sha8}"
    runner = gitlab.runner
    runner.docker("login", "registry.gitlab.com", "-u", prepared.registry_user, "--password-stdin",
                  input=prepared.registry_password)
    runner.docker("build", "-q", "-t", lucky, "-", input=f"FROM {lucky}\nLABEL org.lhd.pushed-over=yes\n")
    runner.docker("push", "-q", lucky)
    assert registry_digest(prepared, "lucky", sha8) != built_digest(gitlab, "lucky")
    before = prepared.releases()
    job = gitlab.run("deploy-production", deploy_variables(gitlab, prepared, ci_key[0]))
    assert not job.passed, job.output
    assert "is not the image the build pushed" in job.output and "nothing was checked out or deployed" in job.output, \
        job.output
    assert prepared.releases() == before
    assert version(prepared) == sha8
