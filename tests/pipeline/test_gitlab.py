"""The generated .gitlab-ci.yml, unchanged, run by gitlab-ci-local job by job in pipeline order against a real
registry (TLS + login) and a real server reached over SSH; then the rules and the planted failures.

The tests run in file order: the rules (which jobs a pipeline holds), template-update-check, deploy-production
without SSH_KEY, build, tag-branch, the first deploy by hand (the README: "Run `script/deploy --first` on each
server once by hand"), deploy-production; then the failures a user would see in the deploy job.
"""

import time

from harness.pipeline import release_compile
from harness.report import add_to_report
from harness.server import ServerStack, keypair
from harness.stack import REGISTRY, STAGING_DOMAIN
from harness.stream import RequestStream
from harness.swarm import ADDED_MIGRATIONS, V1, V2
from harness.wait import until

# Jobs that push images or deploy: a merge request pipeline and an unprotected branch must run none of them.
PUSHING = {"build", "tag-branch", "deploy-staging", "deploy-production", "deploy-staging-subtractive",
           "deploy-production-subtractive"}


def running(plan):
    return {job for job, when in plan.items() if when != "never"}


def deploy_variables(gitlab, server, key, known_hosts=None):
    """The production environment's protected variables (README "CI/CD"), set as GitLab hands them to the job."""
    return gitlab.push_variables(SSH_KEY=key, SERVER_IP=server.host,
                                 SSH_KNOWN_HOSTS=known_hosts or server.known_hosts_line())


def user_graphql(stack):
    """Hasura's answer through Traefik to a query with a JWT of the `user` role signed with the server's key."""
    data = stack.routed_graphql(user=True, timeout=60)
    assert isinstance(data, dict) and isinstance(data.get("notes"), list), data
    return data


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


def test_subtractive_pipeline_holds_only_the_manual_subtractive_deploy(gitlab):
    """DEPLOY=subtractive (git push -o ci.variable=...): the pipeline builds and tags, deploys nothing by
    itself, and offers deploy-production-subtractive as a manual job."""
    plan = gitlab.plan(gitlab.push_variables(DEPLOY="subtractive"))
    assert {"build", "tag-branch"} <= running(plan) and "deploy-production" not in running(plan), plan
    assert plan.get("deploy-production-subtractive") == "manual", plan
    assert gitlab.plan(gitlab.push_variables()).get("deploy-production-subtractive") == "manual"


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
    assert job.script_lines() == ["SSH_KEY is not set for production, see docs/ci.md"], job.output


def test_build_pushes_the_images_and_their_digests(gitlab, prepared, request):
    """The build job pushes lucky-base, lucky-build, lucky and hasura under the commit's SHA8 and records the
    registry's digests; main's compile, as an earlier pipeline leaves it in the registry (here given to the jobs'
    engine: Runner.seed_compile, built from the host's checkout of the commit), is reused although the job's copy
    of the checkout is world-writable; and no file the images copied from it is writable by others."""
    add_to_report(request.config, [f"gitlab: {gitlab.runner.seed_compile(gitlab.repo.path)[1]}"])
    job = gitlab.run("build", gitlab.push_variables())
    assert job.passed, job.output
    digests = (gitlab.repo.path / ".gitlab-ci-local/artifacts/build/images.digests").read_text().split()
    sha8 = gitlab.repo.sha[:8]
    assert [d.split("@")[0] for d in digests] == [f"{REGISTRY}/{n}" for n in ("lucky-base", "lucky", "hasura")]
    for line in digests:
        name = line.split("@")[0].rsplit("/", 1)[1]
        assert prepared.registry_digest(REGISTRY, name, sha8) == line.split("@")[1], line
    # gitlab-ci-local makes the job's copy of the checkout world-writable (4.56.0, src/job.js: `chmod a+rw -R
    # /gcl-builds/` unless --no-umask; GitLab Runner's docker executor checks out with umask 0000). script/build
    # builds the commit (git archive: git's modes), so the seeded compile's COPY cache keys match (before, with the
    # checkout as the context, the first COPY missed: run 16) and the images' files are 0755/0644, not 0777/0666.
    # Its build stage goes along as the next builds' cache (never deployed).
    assert release_compile(job.output) == "reused", job.output
    assert prepared.registry_digest(REGISTRY, "lucky-build", sha8)
    expected = {"lucky": {"/usr/local/bin/with_secrets": "755", "/usr/local/bin/update_db": "755"},
                "hasura": {"/usr/local/bin/with_secrets": "755", "/usr/local/bin/hasura_healthcheck": "755",
                           "/hasura-metadata": "755", "/hasura-metadata/version.yaml": "644"}}
    for image, modes in expected.items():
        out = gitlab.runner.docker("run", "--rm", "--entrypoint", "stat", f"{REGISTRY}/{image}:{sha8}", "-c",
                                   "%n %a", *modes).stdout
        assert dict(line.split() for line in out.splitlines()) == modes, (image, out)


def test_tag_branch_tags_the_commits_images_with_the_branch(gitlab, prepared):
    job = gitlab.run("tag-branch", gitlab.push_variables())
    assert job.passed, job.output
    sha8 = gitlab.repo.sha[:8]
    for name in ("lucky-base", "lucky-build", "lucky", "hasura"):
        assert prepared.registry_digest(REGISTRY, name, "main") == prepared.registry_digest(REGISTRY, name, sha8), \
            name


def test_first_deploy_by_hand_then_deploy_production_over_ssh(gitlab, prepared, ci_key, stack):
    sha = gitlab.repo.sha
    started = time.perf_counter()
    prepared.script("deploy", "--first", sha[:8], timeout=900)
    gitlab.runs.append(("script/deploy --first, by hand on the server", time.perf_counter() - started, True))
    until(lambda: prepared.version() == sha[:8], 120, f"the server to serve {sha[:8]} after the first deploy")
    before = prepared.releases()
    job = gitlab.run("deploy-production", deploy_variables(gitlab, prepared, ci_key[0]))
    assert job.passed, job.output
    assert f"Checked out {sha} (on origin/main)" in job.output, job.output
    assert prepared.checkout() == sha
    after = prepared.releases()
    assert len(after) == len(before) + 1 and sha[:8] in after[-1] and "lucky@sha256:" in after[-1], after
    assert prepared.version() == sha[:8]
    assert stack.migrations() == [V1]
    user_graphql(stack)


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
    assert prepared.registry_digest(REGISTRY, "lucky", sha8) != built_digest(gitlab, "lucky")
    before = prepared.releases()
    job = gitlab.run("deploy-production", deploy_variables(gitlab, prepared, ci_key[0]))
    assert not job.passed, job.output
    assert "is not the image the build pushed" in job.output and "nothing was checked out or deployed" in job.output, \
        job.output
    assert prepared.releases() == before
    assert prepared.version() == sha8


def test_second_commit_with_an_additive_migration_deploys_without_a_failed_request(gitlab, prepared, ci_key, stack):
    """A commit adding a column goes through build, tag-branch and deploy-production while a bounded stream of
    requests to /version through the server's published 443 runs: none fails, the server serves the new commit
    with the database at its migrations, and GraphQL answers a user JWT."""
    repo = gitlab.repo
    repo.add_migration(*ADDED_MIGRATIONS[0])
    sha = repo.commit("Notes get a priority")
    repo.push("main")
    for job in ("build", "tag-branch"):
        result = gitlab.run(job, gitlab.push_variables())
        assert result.passed, result.output
        if job == "build":  # a new migration: compiled afresh, never main's cached build of the first commit
            assert release_compile(result.output) == "ran", result.output
    with RequestStream(stack, rate=10, limit=600) as stream:
        stream.mark("deploy-production starts")
        job = gitlab.run("deploy-production", deploy_variables(gitlab, prepared, ci_key[0]))
        stream.mark("deploy-production ended")
        until(lambda: prepared.version() == sha[:8], 120, f"the server to serve {sha[:8]}")
        figures = stream.stop()
    gitlab.runs.append((f"request stream during the second deploy: {figures['requests']} requests, "
                        f"{figures['failures']} failed, p99 {figures['p99_ms']} ms", figures["seconds"], True))
    assert job.passed, job.output
    assert figures["failures"] == 0, figures
    assert figures["requests"] >= 10 * job.seconds * 0.5, figures  # the stream ran through the deploy
    assert prepared.checkout() == sha
    assert stack.migrations() == [V1, V2]
    user_graphql(stack)


def test_rollback_over_ssh_brings_the_first_commit_and_its_migrations_back(gitlab, prepared, stack, operator_key):
    """The README's rollback: `script/rollback SHA` on the server, as deploy, over SSH from a workstation (--yes:
    no terminal to answer on). The first commit is served again and the second's migration is undone."""
    first, second = gitlab.repo.commits[0], gitlab.repo.commits[-1]
    assert prepared.version() == second[:8]
    before = prepared.releases()
    started = time.perf_counter()
    out = prepared.ssh(operator_key, f"cd {prepared.project} && script/rollback --yes {first[:8]}")
    gitlab.runs.append(("script/rollback over SSH, by hand", time.perf_counter() - started, True))
    assert str(V2) in out.stdout + out.stderr, out.stdout + out.stderr  # it names the migration it undoes
    until(lambda: prepared.version() == first[:8], 120, f"the server to serve {first[:8]} again")
    assert stack.migrations() == [V1]
    after = prepared.releases()
    assert len(after) == len(before) + 1 and first[:8] in after[-1], after
    user_graphql(stack)


def test_deploy_staging_deploys_the_staging_branch_to_the_staging_server(gitlab, prepared, staging, ci_key, image_mode):
    """The staging branch's pipeline (build, tag-branch, deploy-staging; no deploy-production) moves the staging
    server (bootstrapped with --domain staging.DOMAIN, first deployed by hand at the first commit) to the
    staging branch's commit over SSH; production is not touched."""
    repo = gitlab.repo
    first, sha = repo.commits[0], repo.sha
    repo.push(f"{first}:refs/heads/staging")
    staging.as_deploy("git", "checkout", "--quiet", first)
    started = time.perf_counter()
    staging.script("deploy", "--first", first[:8], timeout=900)
    gitlab.runs.append(("script/deploy --first, by hand on the staging server", time.perf_counter() - started, True))
    until(lambda: staging.version(STAGING_DOMAIN) == first[:8], 120, f"staging to serve {first[:8]}")
    production = prepared.version()
    repo.push("main:staging")
    variables = gitlab.push_variables(branch="staging")
    plan = gitlab.plan(variables)
    assert {"build", "tag-branch", "deploy-staging"} <= running(plan) and "deploy-production" not in running(plan), plan
    for job in ("build", "tag-branch"):
        result = gitlab.run(job, variables)
        assert result.passed, result.output
        if job == "build":  # the branch's first build: main built this commit, so its compile is reused
            assert release_compile(result.output) == "reused", result.output
    job = gitlab.run("deploy-staging", {**variables, "SSH_KEY": ci_key[0], "SERVER_IP": staging.host,
                                        "SSH_KNOWN_HOSTS": staging.known_hosts_line()})
    assert job.passed, job.output
    assert f"Checked out {sha} (on origin/staging)" in job.output, job.output
    assert staging.checkout() == sha
    until(lambda: staging.version(STAGING_DOMAIN) == sha[:8], 120, f"staging to serve {sha[:8]}")
    stack = ServerStack(staging, staging.site_ca, image_mode)
    assert stack.migrations() == [V1, V2]
    assert prepared.version() == production


def test_test_job_runs_the_specs_in_the_dev_stack(gitlab):
    """The test job as written: script/test starts the dev stack's PostgreSQL through the service's engine and
    runs `crystal spec` in a one-off lucky container built from the job's checkout; script/down after."""
    job = gitlab.run("test", gitlab.push_variables(), timeout=2400)
    assert job.passed, job.output
    assert any(" 0 failures, 0 errors" in line for line in job.script_lines()), job.output


def test_third_commit_with_a_failing_spec_deploys_nothing(gitlab, prepared, ci_key):
    """A commit whose spec fails: its whole pipeline, run by gitlab-ci-local as GitLab would (build, test, push,
    deploy stages; the deploy key and server set, so a deploy would reach the server), fails at the test job and
    never runs tag-branch or deploy-production: the server's checkout, releases and /version stay."""
    sha = gitlab.repo.commit_failing_spec()
    before = (prepared.checkout(), prepared.releases(), prepared.version())
    pipeline = gitlab.run(None, deploy_variables(gitlab, prepared, ci_key[0]), timeout=3600)
    assert not pipeline.passed, pipeline.output
    assert any("1 failures" in line or "1 failure" in line for line in pipeline.script_lines("test")), pipeline.output
    assert pipeline.script_lines("build"), pipeline.output  # the build ran (stage 1)
    # Only a spec changed: the compile main's last build pushed is reused.
    assert release_compile("\n".join(pipeline.script_lines("build"))) == "reused", pipeline.output
    assert not pipeline.script_lines("tag-branch") and not pipeline.script_lines("deploy-production"), pipeline.output
    assert (prepared.checkout(), prepared.releases(), prepared.version()) == before
    assert prepared.version() != sha[:8]
