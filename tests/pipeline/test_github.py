"""The generated GitHub workflow (.github/workflows/ci.yml of a git_host=github render), run job by job and step by
step by harness/github_steps.py (this is not GitHub's own runner: none can be had here) against the session's real
registry (TLS + login, answering as ghcr.io) and a real server reached over SSH.

First the rules, read from the parsed workflow with GitHub's expression semantics and no engine: which jobs a
pull request, a push to main or staging and a manual run on a feature branch hold, with the deploy's environment
and concurrency. Then, in file order, a push to main: build (its digests output), test (the dev stack and
`crystal spec` through the runner engine), tag-branch, deploy without SSH_KEY (one ::error:: line), the first
deploy by hand and the deploy job re-run with the key (script/ci_deploy over real SSH; /version serves the
commit); then a commit whose spec fails: test fails, tag-branch and deploy are skipped, the server is unchanged.
"""

import time

import pytest

from harness.bake import bake
from harness.github_steps import GITHUB_ANSWERS, GITHUB_NAMES, SHELLS, Event, StepRunner, Workflow
from harness.pipeline import release_compile
from harness.proc import run
from harness.report import add_to_report
from harness.stack import DOMAIN, STAGING_DOMAIN
from kit import job_images

PUSHING = {"build", "tag-branch", "deploy"}
IMAGES = ("lucky-base", "lucky", "hasura")
SSH_KEY_MISSING = "::error::SSH_KEY is not set in this environment, see docs/ci.md"
GITHUB_REGISTRY = f"{GITHUB_NAMES.registry_host}/{GITHUB_NAMES.registry_path}"  # ghcr.io/my-group/lhd-app-gh


def running(plan):
    return {job for job, p in plan.items() if p.runs}


@pytest.fixture(scope="module")
def workflow(tmp_path_factory):
    """The workflow of a git_host=github render (no engine: the template rendered, the file parsed)."""
    project = bake(tmp_path_factory.mktemp("github-render"), **GITHUB_ANSWERS)
    return Workflow(project / ".github/workflows/ci.yml", f"{GITHUB_NAMES.owner}/{GITHUB_NAMES.repo}")


SHA = "0123456789abcdef0123456789abcdef01234567"


# -- the rules, from the parsed workflow ---------------------------------------------------------------------
def test_pull_request_builds_and_tests_but_pushes_and_deploys_nothing(workflow):
    plan = workflow.plan(Event.pull_request("feature", "main", SHA))
    # template-update-check has no `if:`: it runs on every event (continue-on-error)
    assert running(plan) == {"build-check", "test", "template-update-check"}, plan
    assert not running(plan) & PUSHING


def test_push_to_main_builds_tests_tags_and_deploys_production(workflow):
    plan = workflow.plan(Event.push("main", SHA))
    assert running(plan) == {"build", "test", "tag-branch", "deploy", "template-update-check"}, plan
    assert plan["deploy"].environment == {"name": "production", "url": f"https://api.{DOMAIN}"}
    assert plan["deploy"].concurrency == {"group": "deploy-production", "cancel-in-progress": False}


def test_push_to_staging_deploys_to_the_staging_environment(workflow):
    plan = workflow.plan(Event.push("staging", SHA))
    assert {"build", "tag-branch", "deploy"} <= running(plan) and "build-check" not in running(plan), plan
    assert plan["deploy"].environment == {"name": "staging", "url": f"https://api.{STAGING_DOMAIN}"}
    assert plan["deploy"].concurrency == {"group": "deploy-staging", "cancel-in-progress": False}


def test_manual_run_on_a_feature_branch_deploys_nothing(workflow):
    event = Event.dispatch("feature", SHA, subtractive=True)
    assert workflow.triggered_by(event)
    plan = workflow.plan(event)
    assert not running(plan) & (PUSHING | {"build-check"}), plan
    assert "test" in running(plan), plan


def test_manual_run_on_main_deploys_production(workflow):
    plan = workflow.plan(Event.dispatch("main", SHA, subtractive=True))
    assert {"build", "tag-branch", "deploy"} <= running(plan), plan
    assert plan["deploy"].environment["name"] == "production"


def test_every_run_step_fails_on_a_failing_command_before_a_pipe(workflow):
    """The shell each run step gets (the step's, the job's defaults, the workflow's, else GitHub's `bash -e {0}`)
    has pipefail: `printf ... | tr ...` in the tag and deploy steps must not hide a failure."""
    shells = {}
    for name, job in workflow.jobs.items():
        job_default = ((job.get("defaults") or {}).get("run") or {}).get("shell")
        for step in job.get("steps", []):
            if "run" in step:
                shell = step.get("shell", job_default or (workflow.defaults.get("run") or {}).get("shell"))
                shells[f"{name}: {step.get('name', step['run'].splitlines()[0])}"] = SHELLS[shell]
    assert shells and all("pipefail" in shell for shell in shells.values()), shells


def test_push_to_a_feature_branch_starts_no_run(workflow):
    event = Event.push("feature", SHA)
    assert not workflow.triggered_by(event)
    assert not running(workflow.plan(event))


# -- the runner's step semantics, on a small workflow (the host's engine, no stack) ---------------------------
TOY = """\
name: toy
on: [push]
env:
  TOP: top-${{ github.ref_name }}
jobs:
  a:
    runs-on: ubuntu-latest
    outputs:
      x: ${{ steps.one.outputs.x }}
    steps:
      - uses: actions/checkout@0000000000000000000000000000000000000000
        with:
          persist-credentials: false
      - id: one
        env:
          KEY: ${{ secrets.KEY }}
        run: |
          echo "x=hello-$TOP" >> "$GITHUB_OUTPUT"
          echo "FROMENV=set by one" >> "$GITHUB_ENV"
          echo "key is $KEY"
          echo "$KEY" | tail -1
          echo "$GITHUB_SHA $GITHUB_REF $GITHUB_REF_NAME $GITHUB_EVENT_NAME $GITHUB_ACTOR $RUNNER_TEMP"
          echo "$PWD $(git branch --show-current) $(git rev-parse HEAD)"
          false | true
      - run: echo "FROMENV=$FROMENV"; echo "::error::boom"; exit 3
      - if: always()
        run: echo always ran
      - run: echo never
  b:
    needs: a
    runs-on: ubuntu-latest
    steps:
      - run: echo b
  d:
    runs-on: ubuntu-latest
    steps:
      - shell: bash
        run: false | true
  c:
    needs: a
    if: always()
    runs-on: ubuntu-latest
    steps:
      - run: echo "c got ${{ needs.a.outputs.x }} ${{ needs.a.result }}"
"""


def test_step_runner_semantics_on_a_small_workflow(tmp_path):
    """Outputs, GITHUB_ENV, masking, the default shell (no pipefail; `shell: bash` has it), a failed step skipping the next unless
    always(), a job skipped when its needs failed, job outputs through needs, the checkout."""
    repo = tmp_path / "repo"
    (repo / ".github/workflows").mkdir(parents=True)
    (repo / ".github/workflows/ci.yml").write_text(TOY)
    git = ["git", "-C", repo, "-c", "user.name=t", "-c", "user.email=t@t"]
    run(["git", "init", "--quiet", "-b", "main", repo])
    run([*git, "add", "-A"])
    run([*git, "commit", "--quiet", "-m", "toy"])
    sha = run([*git, "rev-parse", "HEAD"]).stdout.strip()
    job_images.build()
    kit_names = {image.upstream: image.name for image in job_images.images()}
    runner = StepRunner(Workflow(repo / ".github/workflows/ci.yml", "o/toy"), tmp_path / "runs", "bridge", None,
                        repo, kit_names[f"docker:{job_images.DOCKER}"],
                        kit_names[f"python:{job_images.PYTHON}-slim"], secrets={"KEY": "s3cret\nsecond line"})
    result = runner.start(Event.push("main", sha, actor="mona")).run_all()
    a, c = result.results["a"], result.results["c"]
    assert a.result == "failure" and result.results["b"].result == "skipped" and c.result == "success"
    assert [s.outcome for s in a.steps] == ["success", "success", "failure", "success", "skipped"], a.output
    one = a.steps[1].output.splitlines()
    assert one[0] == "key is ***" and one[1] == "***", one  # each line of a multi-line secret is masked
    assert one[2] == f"{sha} refs/heads/main main push mona /home/runner/work/_temp", one
    assert one[3] == f"/home/runner/work/toy/toy main {sha}", one
    assert a.steps[2].output.splitlines() == ["FROMENV=set by one", "::error::boom"] and a.annotations == ["::error::boom"]
    assert a.outputs == {"x": "hello-top-main"}
    assert result.results["d"].result == "failure"  # an explicit `shell: bash` is -eo pipefail
    assert c.steps[0].output.strip() == "c got hello-top-main failure"
    again = result.rerun("a")  # GitHub's "Re-run job": a fresh runner, the run's next attempt
    assert again.result == "failure" and [s.outcome for s in again.steps][:2] == ["success", "success"], again.output
    assert not runner.leftovers()


# -- live: a push to main, job by job ------------------------------------------------------------------------
def production(server, key):
    """The production environment's secrets (docs/ci.md: SSH_KEY, SSH_KNOWN_HOSTS, SERVER_IP)."""
    secrets = {"SERVER_IP": server.host, "SSH_KNOWN_HOSTS": server.known_hosts_line()}
    if key is not None:
        secrets["SSH_KEY"] = key
    return {"production": secrets}


@pytest.fixture(scope="module")
def main_run(github, github_repository, runner, request):
    """A run of the workflow for the push of the project's first commit to main, main's compile in the runner's
    engine as an earlier run leaves it (`Runner.seed_compile`): the GitLab part's second commit proves a compile
    in a job, which this one would repeat for ten minutes of two cores."""
    add_to_report(request.config, [f"github: {runner.seed_compile(github_repository.path)[1]}"])
    return github.start(Event.push("main", github_repository.sha, actor=github.actor))


def test_build_pushes_the_images_and_outputs_their_digests(main_run, github_server):
    job = main_run.run_job("build")
    assert job.result == "success", job.output
    sha8 = main_run.event.sha[:8]
    assert job.outputs["sha"] == sha8 and job.outputs["cache"] == "main", job.outputs
    digests = job.outputs["digests"].split()
    assert [d.split("@")[0] for d in digests] == [f"{GITHUB_NAMES.registry}/{n}" for n in IMAGES], digests
    for line in digests:
        name = line.split("@")[0].rsplit("/", 1)[1]
        assert github_server.registry_digest(GITHUB_REGISTRY, name, sha8) == line.split("@")[1], line
    # --cache-from main finds main's compile (pulled, or here seeded) and reuses it; the build stage goes along
    # as the next builds' cache (never deployed).
    assert release_compile(job.output) == "reused", job.output
    assert github_server.registry_digest(GITHUB_REGISTRY, "lucky-build", sha8)
    # the token went in on stdin and is masked wherever a step printed it
    assert github_server.registry_password not in job.output


def test_test_job_runs_the_specs_in_the_dev_stack(main_run):
    job = main_run.run_job("test", timeout=2400)
    assert job.result == "success", job.output
    assert " 0 failures" in job.step("Lucky specs").output, job.output
    assert job.step("Remove the stack").outcome == "success", job.output


def test_tag_branch_tags_the_commits_images_with_the_branch(main_run, github_server):
    job = main_run.run_job("tag-branch")
    assert job.result == "success", job.output
    sha8 = main_run.event.sha[:8]
    for name in (*IMAGES, "lucky-build"):
        assert github_server.registry_digest(GITHUB_REGISTRY, name, "main") == \
            github_server.registry_digest(GITHUB_REGISTRY, name, sha8), name


def test_deploy_without_ssh_key_stops_in_one_error_line(main_run, github_server):
    before = github_server.releases()
    job = main_run.rerun("deploy", environments=production(github_server, None))
    assert job.result == "failure", job.output
    assert job.environment["name"] == "production" and job.concurrency["group"] == "deploy-production"
    assert job.annotations == [SSH_KEY_MISSING], job.output
    assert job.step("Load the deploy key").output.strip() == SSH_KEY_MISSING, job.output
    assert job.step("Deploy").outcome == "skipped"
    assert github_server.releases() == before


def test_first_deploy_by_hand_then_the_deploy_job_over_ssh(main_run, github, github_server, ci_key):
    """The README: `script/deploy --first` once by hand on the server; then the deploy job (re-run with the
    environment's SSH_KEY set) deploys the commit over SSH with the build's digests: /version serves it."""
    sha = main_run.event.sha
    started = time.perf_counter()
    github_server.script("deploy", "--first", sha[:8], timeout=900)
    github.runs.append(("script/deploy --first, by hand on the github server", time.perf_counter() - started,
                        "success"))
    before = github_server.releases()
    job = main_run.rerun("deploy", environments=production(github_server, ci_key[0]))
    assert job.result == "success", job.output
    assert job.annotations == [], job.output
    assert f"Checked out {sha} (on origin/main)" in job.output, job.output
    assert ci_key[0].splitlines()[1] not in job.output  # masked, had anything printed it
    assert github_server.checkout() == sha
    after = github_server.releases()
    assert len(after) == len(before) + 1 and sha[:8] in after[-1] and "lucky@sha256:" in after[-1], after
    assert github_server.version() == sha[:8]
    assert main_run.conclusion() == "success"


def test_commit_with_a_failing_spec_deploys_nothing(github, github_repository, github_server, ci_key):
    """A commit whose spec fails, pushed to main: the whole run (build, test, tag-branch, deploy in needs order;
    the production secrets set, so a deploy would reach the server) fails at test, and tag-branch and deploy,
    which need it, are skipped: the server's checkout, releases and /version stay."""
    sha = github_repository.commit_failing_spec()
    before = (github_server.checkout(), github_server.releases(), github_server.version())
    github.environments = production(github_server, ci_key[0])
    run = github.start(Event.push("main", sha, actor=github.actor)).run_all(timeout=2400)
    results = {job: r.result for job, r in run.results.items()}
    assert results["build"] == "success" and results["test"] == "failure", results
    # Only a spec changed: the compile main's last build pushed is reused.
    assert release_compile(run.results["build"].output) == "reused", run.results["build"].output
    assert results["tag-branch"] == "skipped" and results["deploy"] == "skipped", results
    assert "1 failures" in run.results["test"].step("Lucky specs").output, run.results["test"].output
    assert run.results["test"].step("Remove the stack").outcome == "success"  # if: always()
    assert run.conclusion() == "failure"
    assert (github_server.checkout(), github_server.releases(), github_server.version()) == before
    assert github_server.version() != sha[:8]
