"""CI conformance: the generated pipelines deploy one at a time from environment-scoped
secrets, pass the full commit SHA and check the server's host key, push images only from
push events and protected refs, log in to no registry before building pull request code,
pin actions by commit, job images and pip installs by version, and tag images with valid
names; script/build writes an inline cache and reads it back.

Each check in ci_checks.py runs on every rendered variant that has the file (must be
clean) and on a deliberately broken fixture in fixtures/ci/ (must complain).
"""

import json
from pathlib import Path

import pytest
import yaml

from harness.rules import ci_checks

FIX = Path(__file__).resolve().parent / "fixtures" / "ci"
GITLAB = ".gitlab-ci.yml"
WORKFLOWS = ".github/workflows/*.yml"
BUILD = ("script/build", "script/functions/common")


def gitlab_config(project):
    return yaml.safe_load((project / GITLAB).read_text())


def on_workflows(project, check):
    """Problems of check(text, parsed workflow) over every generated workflow, prefixed with its file name."""
    paths = sorted((project / ".github/workflows").glob("*.yml"))
    assert paths
    return [f"{path.name}: {problem}" for path in paths
            for problem in check(path.read_text(), yaml.safe_load(path.read_text()))]


# --- GitLab ---------------------------------------------------------------------------

@pytest.mark.files(GITLAB, when={"ci": "gitlab"})
def test_gitlab_deploys_one_at_a_time(variant):
    """Each GitLab deploy job holds its environment's resource_group."""
    assert not ci_checks.gitlab_resource_groups(gitlab_config(variant[1]))


@pytest.mark.files(GITLAB, when={"ci": "gitlab"})
def test_gitlab_deploy_variables_are_protected(variant):
    """GitLab deploys read SSH_KEY/SERVER_IP scoped by environment, on protected branches only."""
    assert not ci_checks.gitlab_protected_deploys(gitlab_config(variant[1]))


@pytest.mark.files(GITLAB, when={"ci": "gitlab"})
def test_gitlab_push_jobs_skip_merge_requests(variant):
    """GitLab jobs that push images never run in merge request pipelines."""
    assert not ci_checks.gitlab_push_rules(gitlab_config(variant[1]))


@pytest.mark.files(GITLAB, when={"ci": "gitlab"})
def test_gitlab_cache_tags_are_slugs(variant):
    """GitLab tags images and reads the cache with $CI_COMMIT_REF_SLUG."""
    assert not ci_checks.gitlab_cache_tags(gitlab_config(variant[1]))


@pytest.mark.files(GITLAB, when={"ci": "gitlab"})
def test_gitlab_pushes_only_from_protected_refs(variant):
    """GitLab jobs that push images (cache tags included) run only for protected refs."""
    assert not ci_checks.gitlab_protected_pushes(gitlab_config(variant[1]))


@pytest.mark.files(GITLAB, when={"ci": "gitlab"})
def test_gitlab_deploys_the_full_sha_over_checked_ssh(variant):
    """GitLab deploys pass $CI_COMMIT_SHA, never accept an unknown host key, and pin what pip installs."""
    assert not ci_checks.gitlab_deploy_trust(gitlab_config(variant[1]))


@pytest.mark.files(GITLAB, when={"ci": "gitlab"})
def test_gitlab_job_images_are_pinned(variant):
    """Every GitLab job and service image names an exact version."""
    assert not ci_checks.gitlab_pinned_images(gitlab_config(variant[1]))


@pytest.mark.files(GITLAB, when={"ci": "gitlab"})
def test_gitlab_subtractive_deploys_are_manual_jobs(variant):
    """Each environment has a manual `script/ci_deploy ... -s` job in the pipelines of its automatic deploy
    (so it gets this pipeline's build digests); DEPLOY=subtractive holds the automatic one back."""
    assert not ci_checks.gitlab_subtractive_deploys(gitlab_config(variant[1]))


@pytest.mark.files(GITLAB, when={"ci": "gitlab"})
def test_gitlab_environments_link_their_own_address(variant):
    """Staging's environment url is not production's (review: both were https://api.<domain>)."""
    assert not ci_checks.gitlab_environment_urls(gitlab_config(variant[1]))


# --- GitHub ---------------------------------------------------------------------------

@pytest.mark.files(WORKFLOWS, when={"ci": "github"})
def test_github_deploys_one_at_a_time(variant):
    """The GitHub deploy job queues in concurrency group deploy-<environment>, never cancelled."""
    assert not on_workflows(variant[1], lambda _, w: ci_checks.github_concurrency(w))


@pytest.mark.files(WORKFLOWS, when={"ci": "github"})
def test_github_deploy_secrets_are_environment_secrets(variant):
    """GitHub deploy secrets are one name per environment, read by a job that declares it."""
    assert not on_workflows(variant[1], lambda _, w: ci_checks.github_environment_secrets(w))


@pytest.mark.files(WORKFLOWS, when={"ci": "github"})
def test_github_actions_pinned_by_sha(variant):
    """Every action is pinned to a full commit SHA with its version in a comment."""
    assert not on_workflows(variant[1], ci_checks.github_pinned_actions)


@pytest.mark.files(WORKFLOWS, when={"ci": "github"})
def test_github_pushes_only_on_push_events(variant):
    """Only push-event jobs push images or hold packages: write; pull requests build without either."""
    assert not on_workflows(variant[1], lambda _, w: ci_checks.github_push_guard(w))


@pytest.mark.files(WORKFLOWS, when={"ci": "github"})
def test_github_cache_tags_are_slugs(variant):
    """GitHub image tags come from a slug step that turns any ref (123/merge...) into a valid tag."""
    assert not on_workflows(variant[1], lambda _, w: ci_checks.github_cache_tags(w))


@pytest.mark.files(WORKFLOWS, when={"ci": "github"})
def test_github_deploys_the_full_sha_over_checked_ssh(variant):
    """GitHub deploys pass $GITHUB_SHA with SSH_KNOWN_HOSTS, never accept an unknown host key, pin pip installs."""
    assert not on_workflows(variant[1], ci_checks.github_deploy_trust)


@pytest.mark.files(WORKFLOWS, when={"ci": "github"})
def test_github_pull_requests_build_without_login(variant):
    """No job that runs pull request code logs in to a registry before its build."""
    assert not on_workflows(variant[1], lambda _, w: ci_checks.github_pr_login(w))


@pytest.mark.files(WORKFLOWS, when={"ci": "github"})
def test_github_pushes_only_for_named_branches(variant):
    """Images are pushed only on pushes to the branches the workflow names."""
    assert not on_workflows(variant[1], lambda _, w: ci_checks.github_push_branches(w))


@pytest.mark.files(WORKFLOWS, when={"ci": "github"})
def test_github_subtractive_deploys_are_dispatched(variant):
    """A manual run (workflow_dispatch, main or staging) with `subtractive` deploys with -s the digests its
    own build job pushed."""
    assert not on_workflows(variant[1], lambda _, w: ci_checks.github_subtractive_dispatch(w))


@pytest.mark.files(WORKFLOWS, when={"ci": "github"})
def test_github_environments_link_their_own_address(variant):
    """The deploy job's environment url follows the environment (staging is not production's address)."""
    assert not on_workflows(variant[1], lambda _, w: ci_checks.github_environment_urls(w))


@pytest.mark.files(*BUILD, "script/ci_deploy")
def test_ci_deploy_checks_the_host_key(variant):
    """script/ci_deploy never turns host key checking off or trusts a key on first use."""
    assert not ci_checks.host_key_problems((variant[1] / "script/ci_deploy").read_text())


# --- script/build ---------------------------------------------------------------------

@pytest.mark.files(*BUILD)
def test_build_writes_and_reads_inline_cache(variant, tmp_path):
    """script/build --cache-from TAG: each docker build writes an inline cache and reads every image's."""
    assert not ci_checks.build_cache_problems(variant[1] / "script/build", tmp_path)


# --- each check bites -------------------------------------------------------------------

GITLAB_BITES = {
    "resource-groups": (ci_checks.gitlab_resource_groups, ["deploy-production: resource_group is None"]),
    "protected": (ci_checks.gitlab_protected_deploys, ["refers to PRODUCTION_SSH_KEY", "sets SSH_KEY in the file",
                                                       "deploy-production: may run on an unprotected ref"]),
    "push-rules": (ci_checks.gitlab_push_rules, ["build: pushes images without a rule",
                                                 "tag-branch: pushes images and a rule may run it before"]),
    "cache-tags": (ci_checks.gitlab_cache_tags, ["build: tags images with $CI_COMMIT_REF_NAME",
                                                 "tag-branch: tags images with $CI_COMMIT_BRANCH"]),
    "protected-pushes": (ci_checks.gitlab_protected_pushes, ["build: pushes images from unprotected refs",
                                                             "tag-branch: pushes images from unprotected refs"]),
    "deploy-trust": (ci_checks.gitlab_deploy_trust, [
        "turns off host key checking or trusts on first use: 'StrictHostKeyChecking=accept-new'",
        "deploy-production: script/ci_deploy gets $CI_COMMIT_SHORT_SHA, not the full commit SHA $CI_COMMIT_SHA",
        "template-update-check: pip installs cruft without a pinned version",
        "deploy-production: script/ci_deploy runs without --digests FILE"]),
    "pinned-images": (ci_checks.gitlab_pinned_images, ["default: image docker:28 is not pinned",
                                                       "default: image docker:28-dind is not pinned",
                                                       "template-update-check: image python:3.12-slim is not pinned",
                                                       "deploy-production: image alpine:3.22.2@sha256:0000 is not"]),
}


@pytest.mark.parametrize("name", GITLAB_BITES)
def test_gitlab_checks_bite(name):
    """Each GitLab check reports its own faults in fixtures/ci/gitlab-ci.bad.yml."""
    check, expected = GITLAB_BITES[name]
    found = "\n".join(check(yaml.safe_load((FIX / "gitlab-ci.bad.yml").read_text())))
    assert all(words in found for words in expected), found


GITHUB_BITES = {
    "concurrency": (lambda _, w: ci_checks.github_concurrency(w),
                    ["deploy: deploys without an environment", "cancel-in-progress is True"]),
    "environment-secrets": (lambda _, w: ci_checks.github_environment_secrets(w),
                            ["deploy: picks a secret by expression", "secrets.PRODUCTION_SERVER_IP is named per environment",
                             "deploy: reads secrets.STAGING_SSH_KEY without declaring an environment"]),
    "pinned": (ci_checks.github_pinned_actions, ["uses: actions/checkout@v4 is not pinned",
                                                 "actions/setup-python@a26af69be951a213d495a4c3e4e4022e16d87065 has no"]),
    "push-guard": (lambda _, w: ci_checks.github_push_guard(w),
                   ["top-level permissions grant packages: write", "build: pushes images but is not limited",
                    "tag-branch: has packages: write"]),
    "cache-tags": (lambda _, w: ci_checks.github_cache_tags(w),
                   ["build: step 4: puts ${{ github.ref_name }} into the script",
                    "build: step tags: ref '123/merge' gives cache='123/merge', not a valid Docker tag",
                    "tag-branch: step 0: tags images with a raw git ref"]),
    "deploy-trust": (ci_checks.github_deploy_trust, [
        "turns off host key checking or trusts on first use: 'ssh-keyscan'",
        "deploy: script/ci_deploy gets abcdef12, not the full commit SHA $GITHUB_SHA",
        "deploy: script/ci_deploy gets $SHA (= ${{ needs.build.outputs.sha }}), not the full commit SHA",
        "deploy: script/ci_deploy runs without SSH_KNOWN_HOSTS", "pip installs cruft without a pinned version",
        "deploy: script/ci_deploy runs without --digests FILE"]),
    "pr-login": (lambda _, w: ci_checks.github_pr_login(w),
                 ["build: logs in to a registry before building pull request code"]),
    "push-branches": (lambda _, w: ci_checks.github_push_branches(w),
                      ["images are pushed on push events of any branch or tag"]),
}


@pytest.mark.parametrize("name", GITHUB_BITES)
def test_github_checks_bite(name):
    """Each GitHub check reports its own faults in fixtures/ci/workflow.bad.yml."""
    check, expected = GITHUB_BITES[name]
    text = (FIX / "workflow.bad.yml").read_text()
    found = "\n".join(check(text, yaml.safe_load(text)))
    assert all(words in found for words in expected), found


def test_host_key_check_bites():
    """A script that trusts a server's key on first use is reported."""
    found = "\n".join(ci_checks.host_key_problems('ssh -o StrictHostKeyChecking=accept-new "$host" true'))
    assert "turns off host key checking or trusts on first use: 'StrictHostKeyChecking=accept-new'" in found, found


def test_build_cache_check_bites(tmp_path):
    """A build script without inline cache, with --cache-to, reading one image's cache, is reported."""
    found = "\n".join(ci_checks.build_cache_problems(FIX / "build.bad", tmp_path))
    assert "lucky:0123abcd writes no inline cache" in found, found
    assert "hasura:0123abcd uses --cache-to" in found, found
    assert "lucky:0123abcd does not read the cache of registry.example.com/group/app/hasura:main" in found, found


def test_cruft_pin_is_the_tested_cruft():
    """The cruft the generated CI installs (_cruft_version) is the one requirements/constraints.txt tests with."""
    root = Path(__file__).resolve().parents[2]
    pins = json.loads((root / "cookiecutter.json").read_text())
    constraints = (root / "requirements/constraints.txt").read_text().splitlines()
    assert f"cruft=={pins['_cruft_version']}" in constraints


# --- subtractive deploys and environment urls: each check bites on a broken copy of the rendered files ----

def rendered_ci(bakes, ci):
    from harness.combinations import SUPPORTED
    project = bakes.get(next(c for c in SUPPORTED if c["ci"] == ci))
    path = project / (GITLAB if ci == "gitlab" else ".github/workflows/ci.yml")
    return yaml.safe_load(path.read_text())


def without_manual_jobs(config):
    return {k: v for k, v in config.items() if not k.endswith("-subtractive")}


def with_job(config, name, **changes):
    return {**config, name: {**config[name], **changes}}


GITLAB_SUBTRACTIVE_BITES = {
    "no-manual-job": (without_manual_jobs,
                      "deploy-production: no manual job runs script/ci_deploy --digests FILE production SHA -s"),
    "automatic-in-subtractive-pipelines": (
        lambda c: with_job(c, "deploy-production", rules=c["deploy-production"]["rules"][1:]),
        "deploy-production: its first rule does not skip it when DEPLOY == \"subtractive\""),
    "blocks-pipelines": (
        lambda c: with_job(c, "deploy-staging-subtractive", rules=[{k: v for k, v in r.items() if k != "allow_failure"}
                                                                    for r in c["deploy-staging-subtractive"]["rules"]]),
        "deploy-staging-subtractive: a manual job without allow_failure: true blocks every pipeline"),
    "other-pipelines": (
        lambda c: with_job(c, "deploy-production-subtractive",
                           rules=[{"if": '$CI_COMMIT_REF_PROTECTED == "true"', "when": "manual", "allow_failure": True}]),
        "deploy-production-subtractive: runs in other pipelines than deploy-production"),
}


@pytest.mark.parametrize("name", GITLAB_SUBTRACTIVE_BITES)
def test_gitlab_subtractive_check_bites(bakes, name):
    """The GitLab subtractive check reports each way the rendered pipeline could lose its manual path."""
    breaks, expected = GITLAB_SUBTRACTIVE_BITES[name]
    found = "\n".join(ci_checks.gitlab_subtractive_deploys(breaks(rendered_ci(bakes, "gitlab"))))
    assert expected in found, found


def test_gitlab_url_check_bites(bakes):
    """Staging's url equal to production's (as before the fix) is reported."""
    config = rendered_ci(bakes, "gitlab")
    broken = with_job(config, "deploy-staging", variables={"APP_DOMAIN": config["deploy-production"]["variables"]["APP_DOMAIN"]})
    found = "\n".join(ci_checks.gitlab_environment_urls(broken))
    assert "environments production, staging all link https://api." in found, found


def test_github_subtractive_and_url_checks_bite(bakes):
    """No dispatch, a deploy that ignores the input, digests not from this run's build, a constant url and a
    dispatch of a branch the workflow does not push from are each reported."""
    workflow = rendered_ci(bakes, "github")
    on = workflow[True]
    assert ci_checks.github_subtractive_dispatch({**workflow, True: {k: v for k, v in on.items() if k != "workflow_dispatch"}}) \
        == ["no workflow_dispatch: a subtractive deploy (script/ci_deploy -s) has no path from CI"]
    deploy = workflow["jobs"]["deploy"]
    plain = [{**s, "run": s["run"].replace(' "$@"', "")} if "script/ci_deploy" in str(s.get("run")) else s
             for s in deploy["steps"]]
    jobs = workflow["jobs"]
    found = ci_checks.github_subtractive_dispatch({**workflow, "jobs": {**jobs, "deploy": {**deploy, "steps": plain}}})
    assert "no deploy step passes -s to script/ci_deploy when the dispatch input asks for it" in found, found
    elsewhere = [{**s, "env": {**s["env"], "DIGESTS": "${{ inputs.digests }}"}} if "DIGESTS" in (s.get("env") or {}) else s
                 for s in deploy["steps"]]
    found = "\n".join(ci_checks.github_subtractive_dispatch({**workflow, "jobs": {**jobs, "deploy": {**deploy,
                                                                                                 "steps": elsewhere}}}))
    assert "deploy: the deploy's digests do not come from a job of this run that pushed them" in found, found
    constant = {**deploy, "environment": {**deploy["environment"], "url": "https://api.example.com"}}
    found = "\n".join(ci_checks.github_environment_urls({**workflow, "jobs": {**workflow["jobs"], "deploy": constant}}))
    assert "is the same for every environment" in found, found
    build = workflow["jobs"]["build"]
    feature = {**build, "if": build["if"].replace("refs/heads/staging", "refs/heads/feature")}
    found = "\n".join(ci_checks.github_push_guard({**workflow, "jobs": {**workflow["jobs"], "build": feature}}))
    assert "build: pushes images but is not limited to push events" in found, found
