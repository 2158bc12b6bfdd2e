"""CI conformance checks. Each returns a list of problems (empty means clean).

The same function runs on the generated CI files and scripts (test_ci.py,
must be clean) and on a deliberately broken fixture in fixtures/ci/ (must
complain), as checks.py does for the other formats. GitLab checks take the
parsed .gitlab-ci.yml, GitHub checks the parsed workflow (plus its text where
comments matter).
"""

import json
import re
import sys
import tempfile
from pathlib import Path

from harness.proc import run

# A Docker image tag (docs.docker.com, "docker image tag").
DOCKER_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# Steps that push images: script/build --push, docker push.
PUSHES = re.compile(r"script/build\b[^\n]*\s--push\b|\bdocker\s+push\b")
# Steps that name an image tag after a branch.
TAGS_IMAGES = re.compile(r"--cache-from\b|\bdocker\s+(?:image\s+)?tag\b|\bdocker\s+push\b")
EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.S)
# Git refs as GitHub gives them: `123/merge`, `Feature/x` are not valid tags.
RAW_REF = re.compile(r"\bgithub\.(?:ref_name|head_ref|base_ref|ref)\b")
# Branch names as GitLab gives them; $CI_COMMIT_REF_SLUG is the tag-safe one.
GITLAB_RAW_REFS = re.compile(r"\$\{?(CI_COMMIT_REF_NAME|CI_COMMIT_BRANCH|CI_COMMIT_TAG|CI_DEFAULT_BRANCH|"
                             r"CI_MERGE_REQUEST_(?:SOURCE|TARGET)_BRANCH_NAME)\b")
# Secrets named per environment, picked in the file instead of by the environment.
PER_ENVIRONMENT = re.compile(r"\b(?:STAGING|PRODUCTION)_\w+|\b\w+_(?:STAGING|PRODUCTION)\b")
SECRET_REF = re.compile(r"\bsecrets\.([A-Za-z_][A-Za-z0-9_]*)|\bsecrets\[")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<value>.*?)\s*$", re.M)
PINNED = re.compile(r"[\w.-]+/[\w.-]+(?:/[^@\s]+)?@[0-9a-f]{40}")
VERSION_COMMENT = re.compile(r"\s*v\d+(?:\.\d+)*\b")
# Refs a slug step must turn into valid tags.
SAMPLE_REFS = ["main", "123/merge", "Feature/Add_Login", "-leading.dot", "release/1.2.3", "x" * 300, "ünïcödé",
               "a//b..c"]
GITLAB_RESERVED = {"stages", "default", "variables", "workflow", "include", "image", "services", "before_script",
                   "after_script", "cache", "spec"}
# The full commit SHA each CI gives a job (GitHub: the `github.sha` context, also $GITHUB_SHA; GitLab:
# $CI_COMMIT_SHA, "Predefined CI/CD variables"). Anything shorter is a name a pushed tag can take (H2).
FULL_SHA = {"github": re.compile(r"\$\{?GITHUB_SHA\}?|\$\{\{\s*github\.sha\s*\}\}"),
            "gitlab": re.compile(r"\$\{?CI_COMMIT_SHA\}?")}
CI_DEPLOY_CALL = re.compile(r"\bscript/ci_deploy\b(?P<args>[^\n;&|]*)")
# Host key checking turned off, or trust on first use (ssh_config(5): StrictHostKeyChecking).
HOST_KEY_OFF = re.compile(r"StrictHostKeyChecking[= ]+[\"']?(?:no|off|accept-new)\b"
                          r"|(?:^|[;&|(-]|\bthen|\bdo|\brun:)\s*ssh-keyscan\b", re.I | re.M)
PIP_INSTALL = re.compile(r"\bpip3?\s+install\b(?P<args>[^\n;&|]*)")
# An exact image version: three numeric parts (docker:28.5.2, python:3.12.13-slim) or a digest.
EXACT_IMAGE = re.compile(r"[^\s:@]+(?::[^\s@]*\d+\.\d+\.\d+[^\s@]*)?@sha256:[0-9a-f]{64}|[^\s:@]+:[^\s@]*\d+\.\d+\.\d+[^\s@]*")
DOCKER_LOGIN = re.compile(r"\bdocker\s+login\b")
BUILDS = re.compile(r"\bscript/build\b|\bdocker\s+(?:image\s+)?build\b|\bdocker\s+buildx\s+build\b")


def strings(node):
    """Every string inside a parsed YAML node."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def normalized(condition):
    """A rule or `if:` condition without ${{ }}, with one kind of quote and single spaces."""
    text = str(condition).strip()
    match = re.fullmatch(r"\$\{\{(.*)\}\}", text, re.S)
    text = match.group(1) if match else text
    return re.sub(r"\s+", " ", text.replace('"', "'")).strip()


def full_sha_problems(kind, lines, env=None):
    """Each `script/ci_deploy [--digests FILE] ENV SHA` call passes the CI's full commit SHA (directly or
    through env) and the digests the build wrote (--digests, review finding M3)."""
    problems = []
    env = env or {}
    for line in lines:
        for call in CI_DEPLOY_CALL.finditer(line):
            args = call.group("args").split()
            if args[:1] == ["--digests"]:
                args = args[2:]
            else:
                problems.append("script/ci_deploy runs without --digests FILE (the digests script/build --push wrote)")
            sha = args[1].strip("\"'") if len(args) > 1 else ""
            name = re.fullmatch(r"\$\{?(\w+)\}?", sha)
            value = env.get(name.group(1), sha) if name else sha
            if not FULL_SHA[kind].fullmatch(str(value).strip()):
                wanted = "$GITHUB_SHA" if kind == "github" else "$CI_COMMIT_SHA"
                problems.append(f"script/ci_deploy gets {sha or 'no SHA'}{f' (= {value})' if value != sha else ''}, "
                                f"not the full commit SHA {wanted}")
    return problems


def host_key_problems(text):
    """ssh is never told to accept an unknown host key (accept-new, no) and no key is fetched by ssh-keyscan."""
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    found = [re.sub(r"^(?:[;&|(-]|then|do|run:)?\s*", "", m.group(0)) for m in HOST_KEY_OFF.finditer(code)]
    return [f"turns off host key checking or trusts on first use: {what!r}; use SSH_KNOWN_HOSTS with "
            "StrictHostKeyChecking=yes" for what in found]


def pip_pin_problems(lines):
    """Every package a CI job installs with pip is pinned with ==."""
    problems = []
    for line in lines:
        for call in PIP_INSTALL.finditer(line):
            words, skip = call.group("args").split(), False
            for word in words:
                if skip:
                    skip = False
                elif word in {"-r", "-c", "--requirement", "--constraint", "-i", "--index-url"}:
                    skip = True
                elif not word.startswith("-") and "==" not in word:
                    problems.append(f"pip installs {word.strip(chr(34) + chr(39))} without a pinned version (==)")
    return problems


# --- GitHub Actions -----------------------------------------------------------------

def triggers(workflow):
    """The events a workflow runs on (PyYAML reads the key `on` as True)."""
    on = workflow.get("on", workflow.get(True))
    if isinstance(on, str):
        return {on}
    return set(on or [])


def steps(job):
    return job.get("steps") or []


def runs(job, pattern):
    """True when a step of the job runs something matching pattern."""
    return any(pattern.search(str(step.get("run", ""))) for step in steps(job))


def deploy_jobs(workflow):
    """{name: job} for the jobs that run script/ci_deploy."""
    return {name: job for name, job in workflow["jobs"].items() if runs(job, re.compile(r"\bscript/ci_deploy\b"))}


def environment_name(job):
    environment = job.get("environment")
    return environment.get("name") if isinstance(environment, dict) else environment


def github_concurrency(workflow):
    """Deploy jobs queue per environment: concurrency deploy-<environment>, never cancelled."""
    jobs = deploy_jobs(workflow)
    if not jobs:
        return ["no job runs script/ci_deploy"]
    problems = []
    for name, job in jobs.items():
        environment = environment_name(job)
        concurrency = job.get("concurrency")
        if not environment:
            problems.append(f"{name}: deploys without an environment")
        if not isinstance(concurrency, dict):
            problems.append(f"{name}: no concurrency group, so two deploys can run at once")
            continue
        if environment and concurrency.get("group") != f"deploy-{environment}":
            problems.append(f"{name}: concurrency group {concurrency.get('group')!r}, expected 'deploy-{environment}'")
        if concurrency.get("cancel-in-progress") is not False:
            problems.append(f"{name}: cancel-in-progress is {concurrency.get('cancel-in-progress')!r}, not false "
                            "(a deploy cut short leaves the stack half updated)")
    return problems


def github_environment_secrets(workflow):
    """Deploy secrets are environment secrets: one name per environment, read by a job that declares it."""
    problems = []
    for name, job in workflow["jobs"].items():
        for text in strings(job):
            for expression in EXPRESSION.findall(text):
                found = SECRET_REF.findall(expression)
                if not found:
                    continue
                if "[" in expression or re.search(r"&&|\|\|", expression):
                    problems.append(f"{name}: picks a secret by expression: ${{{{ {expression.strip()} }}}}")
                for secret in filter(None, found):
                    if PER_ENVIRONMENT.search(secret):
                        problems.append(f"{name}: secrets.{secret} is named per environment; use one name in "
                                        "each environment's secrets")
                    if secret != "GITHUB_TOKEN" and not job.get("environment"):
                        problems.append(f"{name}: reads secrets.{secret} without declaring an environment")
    for name, job in deploy_jobs(workflow).items():
        if not job.get("environment"):
            problems.append(f"{name}: runs script/ci_deploy without declaring an environment")
    return problems


def count_uses(workflow):
    return sum(1 for job in workflow["jobs"].values() for step in [job, *steps(job)] if "uses" in step)


def github_pinned_actions(text, workflow):
    """Every `uses:` is owner/repo@<40-hex commit> followed by a `# vX` comment (local ./ actions aside)."""
    problems = []
    lines = list(USES_LINE.finditer(text))
    for match in lines:
        value, _, comment = match.group("value").partition("#")
        ref = value.strip().strip("'\"")
        if ref.startswith("./"):
            continue
        if not PINNED.fullmatch(ref):
            problems.append(f"uses: {ref} is not pinned to a full commit SHA")
        elif not VERSION_COMMENT.match(comment):
            problems.append(f"uses: {ref} has no '# vX' comment naming the version")
    if len(lines) != count_uses(workflow):
        problems.append(f"{count_uses(workflow)} uses: in the workflow, {len(lines)} on lines of their own "
                        "(write each on its own line so it can be checked)")
    return problems


# A push, or a manual run (workflow_dispatch) of named branches: what a person with write access could push.
PUSH_OR_DISPATCH = re.compile(r"github\.event_name == 'push' \|\| \(github\.event_name == 'workflow_dispatch' && "
                              r"\((?P<refs>[^()]*)\)\)")
DISPATCH_REF = re.compile(r"github\.ref == 'refs/heads/(?P<branch>[\w./-]+)'")


def push_branches(workflow):
    """The branches on.push names (empty when any)."""
    on = workflow.get("on", workflow.get(True))
    push = on.get("push") if isinstance(on, dict) else None
    return [str(b) for b in ((push or {}).get("branches") or [])] if isinstance(push, dict) else []


def push_guarded(workflow, job):
    """True when the job runs only for push events (job `if:` or a push-only workflow), or also for a manual
    run (workflow_dispatch) whose `github.ref` is one of the branches on.push names, so it runs only code that
    could have been pushed there: `github.event_name == 'push' || (github.event_name == 'workflow_dispatch' &&
    (github.ref == 'refs/heads/main' || ...))`."""
    if triggers(workflow) == {"push"}:
        return True
    condition = normalized(job.get("if", ""))
    dispatch = PUSH_OR_DISPATCH.fullmatch(condition)
    if dispatch:
        refs = [DISPATCH_REF.fullmatch(ref.strip()) for ref in dispatch.group("refs").split("||")]
        named = [str(b) for b in push_branches(workflow) if not set(str(b)) & set("*?[!")]
        return all(refs) and {ref.group("branch") for ref in refs} <= set(named)
    if not condition or "||" in condition:
        return False
    terms = {term.strip(" ()") for term in condition.split("&&")}
    return bool(terms & {"github.event_name == 'push'", "'push' == github.event_name"})


def writes_packages(permissions):
    if permissions == "write-all":
        return True
    return isinstance(permissions, dict) and permissions.get("packages") == "write"


def pushes(job):
    """True when a step pushes an image (a push command, or docker/build-push-action with push)."""
    if runs(job, PUSHES):
        return True
    return any(str(step.get("uses", "")).startswith("docker/build-push-action@")
               and str((step.get("with") or {}).get("push", "false")).lower() == "true" for step in steps(job))


def github_push_guard(workflow):
    """Images are pushed, and packages written, only by jobs that run on push events."""
    problems = []
    top = workflow.get("permissions")
    if top is None:
        problems.append("no top-level permissions: the default token may write packages in every job")
    elif writes_packages(top):
        problems.append("top-level permissions grant packages: write to every job, pull requests included")
    for name, job in workflow["jobs"].items():
        guarded = push_guarded(workflow, job)
        if pushes(job) and not guarded:
            problems.append(f"{name}: pushes images but is not limited to push events (if: github.event_name == 'push')")
        if writes_packages(job.get("permissions")) and not (pushes(job) and guarded):
            problems.append(f"{name}: has packages: write but is not a push-event job that pushes")
    return problems


def step_env(workflow, job, step):
    return {k: str(v) for scope in (workflow, job, step) for k, v in (scope.get("env") or {}).items()}


def github_deploy_trust(text, workflow):
    """The deploy passes $GITHUB_SHA (not ${GITHUB_SHA::8}) and the host key comes from SSH_KNOWN_HOSTS."""
    problems = host_key_problems(text)
    for name, job in deploy_jobs(workflow).items():
        for step in steps(job):
            run = str(step.get("run", ""))
            if not CI_DEPLOY_CALL.search(run):
                continue
            env = step_env(workflow, job, step)
            problems += [f"{name}: {p}" for p in full_sha_problems("github", run.splitlines(), env)]
            if "secrets.SSH_KNOWN_HOSTS" not in env.get("SSH_KNOWN_HOSTS", ""):
                problems.append(f"{name}: script/ci_deploy runs without SSH_KNOWN_HOSTS from the environment's secrets")
    return problems + pip_pin_problems(text.splitlines())


def github_pr_login(workflow):
    """A job that runs pull request code logs in to no registry before its build (L11): the code could read it."""
    problems = []
    for name, job in workflow["jobs"].items():
        if push_guarded(workflow, job):
            continue
        seen_build = False
        for step in steps(job):
            run = str(step.get("run", ""))
            login = DOCKER_LOGIN.search(run) or str(step.get("uses", "")).startswith("docker/login-action@")
            if login and not seen_build:
                problems.append(f"{name}: logs in to a registry before building pull request code")
            seen_build = seen_build or bool(BUILDS.search(run))
    return problems


def github_push_branches(workflow):
    """Images are pushed only for pushes to named branches (on.push.branches), never for any ref."""
    on = workflow.get("on", workflow.get(True))
    push = on.get("push") if isinstance(on, dict) else None
    if not any(pushes(job) for job in workflow["jobs"].values()) or "push" not in triggers(workflow):
        return []
    branches = (push or {}).get("branches") if isinstance(push, dict) else None
    if not branches or any(set(str(b)) & set("*?[!") for b in branches) or (push or {}).get("tags"):
        return ["images are pushed on push events of any branch or tag; list the branches (on.push.branches)"]
    return []


def github_subtractive_dispatch(workflow):
    """A subtractive deploy has a path: a manual run (workflow_dispatch) with a boolean input that makes the
    deploy step call script/ci_deploy with -s; that deploy takes the digests from a job of the same run that
    pushed them (needs.<build>.outputs), never from the registry (review M3)."""
    on = workflow.get("on", workflow.get(True))
    dispatch = on.get("workflow_dispatch") if isinstance(on, dict) else None
    if "workflow_dispatch" not in triggers(workflow):
        return ["no workflow_dispatch: a subtractive deploy (script/ci_deploy -s) has no path from CI"]
    inputs = {name for name, spec in ((dispatch or {}).get("inputs") or {}).items()
              if isinstance(spec, dict) and spec.get("type") == "boolean"}
    if not inputs:
        return ["workflow_dispatch has no boolean input to ask for a subtractive deploy"]
    problems, found = [], False
    for name, job in deploy_jobs(workflow).items():
        if "workflow_dispatch" not in normalized(job.get("if", "")):
            problems.append(f"{name}: does not run for workflow_dispatch")
            continue
        builders = [n for n in ([job["needs"]] if isinstance(job.get("needs"), str) else job.get("needs") or [])
                    if pushes(workflow["jobs"].get(n, {}))]
        for step in steps(job):
            run = str(step.get("run", ""))
            if not CI_DEPLOY_CALL.search(run):
                continue
            values = [str(v) for v in (step.get("env") or {}).values()]
            tails = [call.group("args").split()[4 if "--digests" in call.group("args") else 2:]
                     for call in CI_DEPLOY_CALL.finditer(run)]
            passes = any("-s" in tail or '"$@"' in tail for tail in tails) and re.search(r"(?:^|\s)-s\b", run)
            if passes and any(re.search(rf"\binputs\.{i}\b", v) for v in values for i in inputs):
                found = True
            if not any(re.search(rf"\bneeds\.{b}\.outputs\.", v) for v in values for b in builders):
                problems.append(f"{name}: the deploy's digests do not come from a job of this run that pushed them "
                                f"(needs.<build>.outputs)")
    if not found:
        problems.append("no deploy step passes -s to script/ci_deploy when the dispatch input asks for it")
    return problems


def github_environment_urls(workflow):
    """Each deploy job's environment links an address that depends on the environment (not one constant URL
    for staging and production)."""
    problems = []
    for name, job in deploy_jobs(workflow).items():
        environment = job.get("environment")
        url = environment.get("url") if isinstance(environment, dict) else None
        if not url:
            problems.append(f"{name}: its environment has no url")
        elif not EXPRESSION.search(str(url)) or EXPRESSION.search(str(environment.get("name", ""))) is None:
            problems.append(f"{name}: environment url {url!r} is the same for every environment")
    return problems


def env_values(workflow, job, step):
    return [str(v) for scope in (workflow, job, step) for v in (scope.get("env") or {}).values()]


def run_slug_step(step, env_names, ref):
    """Run a step's script as the runner does, with every ref-valued env variable set to ref; return its outputs."""
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "output"
        output.touch()
        env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "GITHUB_OUTPUT": str(output), "GITHUB_SHA": "0" * 40}
        env.update({key: ref for key in env_names})
        script = EXPRESSION.sub(lambda m: ref if RAW_REF.search(m.group(1)) else "", step["run"])
        result = run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], env=env, cwd=tmp,
                     check=False, timeout=30)
        if result.returncode != 0:
            return None, result.stderr.strip()
        pairs = [line.partition("=") for line in output.read_text().splitlines() if "=" in line]
        return {key: value for key, _, value in pairs}, ""


def github_cache_tags(workflow):
    """Image tags never come from a raw git ref; steps that slug a ref give valid tags for awkward refs."""
    problems = []
    for name, job in workflow["jobs"].items():
        for index, step in enumerate(steps(job)):
            run = str(step.get("run", ""))
            label = f"{name}: step {step.get('id') or step.get('name') or index}"
            inline = [e for e in EXPRESSION.findall(run) if RAW_REF.search(e)]
            if inline:
                problems.append(f"{label}: puts ${{{{ {inline[0].strip()} }}}} into the script; pass it through env")
            if TAGS_IMAGES.search(run) and any(RAW_REF.search(v) for v in env_values(workflow, job, step) + [run]):
                problems.append(f"{label}: tags images with a raw git ref ('123/merge' is no Docker tag); use a slug")
            ref_env = [k for k, v in (step.get("env") or {}).items() if RAW_REF.search(str(v))]
            if not (ref_env or inline) or "GITHUB_OUTPUT" not in run:
                continue
            for ref in SAMPLE_REFS:
                outputs, error = run_slug_step(step, ref_env, ref)
                if outputs is None:
                    problems.append(f"{label}: fails for ref {ref[:40]!r}: {error}")
                    continue
                for key, value in outputs.items():
                    if not DOCKER_TAG.fullmatch(value):
                        problems.append(f"{label}: ref {ref[:40]!r} gives {key}={value[:40]!r}, not a valid Docker tag")
    return problems


# --- GitLab CI ------------------------------------------------------------------------

def merged(base, override):
    """GitLab's `extends` merge: mappings merge key by key, everything else is replaced."""
    result = dict(base)
    for key, value in override.items():
        result[key] = merged(result[key], value) if isinstance(value, dict) and isinstance(result.get(key), dict) \
            else value
    return result


def resolved(config, name, seen=()):
    """The job or template `name` with its `extends` chain applied."""
    if name in seen:
        raise ValueError(f"extends loop at {name}")
    job = config[name]
    parents = job.get("extends") or []
    result = {}
    for parent in [parents] if isinstance(parents, str) else parents:
        result = merged(result, resolved(config, parent, (*seen, name)))
    return merged(result, {k: v for k, v in job.items() if k != "extends"})


def gitlab_jobs(config):
    """{name: resolved job} for every job that can run (hidden .templates and global keys aside)."""
    return {name: resolved(config, name) for name, job in config.items()
            if isinstance(job, dict) and name not in GITLAB_RESERVED and not name.startswith(".")}


def job_script(config, job):
    """The shell lines a GitLab job runs, default before_script/after_script included."""
    default = config.get("default") or {}
    lines = []
    for key in ("before_script", "script", "after_script"):
        value = job.get(key, default.get(key, config.get(key)))
        lines += [value] if isinstance(value, str) else list(value or [])
    return "\n".join(map(str, lines))


def gitlab_deploy_jobs(config):
    """{name: job} for the jobs that deploy: they name an environment or run script/ci_deploy."""
    return {name: job for name, job in gitlab_jobs(config).items()
            if job.get("environment") or re.search(r"\bscript/ci_deploy\b", job_script(config, job))}


def gitlab_resource_groups(config):
    """Each deploy job is in the resource group of its environment: one deploy per environment at a time."""
    jobs = gitlab_deploy_jobs(config)
    if not jobs:
        return ["no job deploys (environment or script/ci_deploy)"]
    problems = []
    for name, job in jobs.items():
        environment = environment_name(job)
        if not environment:
            problems.append(f"{name}: deploys without an environment")
        elif job.get("resource_group") != environment:
            problems.append(f"{name}: resource_group is {job.get('resource_group')!r}, expected {environment!r}")
    return problems


def protected_only(rule):
    """True when a rule cannot run a job, or runs it only for protected refs."""
    if rule.get("when") == "never":
        return True
    condition = normalized(rule.get("if", ""))
    return "||" not in condition and "$CI_COMMIT_REF_PROTECTED == 'true'" in condition


def gitlab_protected_deploys(config):
    """Deploys read SSH_KEY/SERVER_IP from protected, environment-scoped variables, on protected refs only."""
    problems = []
    for text in strings(config):
        for name in PER_ENVIRONMENT.findall(text):
            problems.append(f"refers to {name}: scope one SSH_KEY/SERVER_IP variable to each environment instead")
    scopes = {"variables": config.get("variables"), "default": (config.get("default") or {}).get("variables")}
    scopes |= {name: job.get("variables") for name, job in gitlab_jobs(config).items()}
    for scope, variables in scopes.items():
        for key in {"SSH_KEY", "SERVER_IP"} & set(variables or {}):
            problems.append(f"{scope}: sets {key} in the file, hiding the protected environment-scoped variable")
    for name, job in gitlab_deploy_jobs(config).items():
        if "only" in job or "except" in job:
            problems.append(f"{name}: uses only/except; use rules")
        rules = job.get("rules")
        if not rules or not all(protected_only(rule) for rule in rules):
            problems.append(f"{name}: may run on an unprotected ref, where protected variables are absent "
                            "(rules need $CI_COMMIT_REF_PROTECTED == \"true\")")
    return problems


def is_manual(job):
    return any(rule.get("when") == "manual" for rule in job.get("rules") or []) or job.get("when") == "manual"


def gitlab_subtractive_deploys(config):
    """Each environment deployed automatically has a manual job in the same pipelines that runs
    `script/ci_deploy --digests FILE ENV SHA -s` (the digests of this pipeline's build job), allowed to wait
    without blocking the pipeline; a pipeline run with DEPLOY=subtractive holds no automatic deploy (it would
    migrate before the code update)."""
    jobs = gitlab_deploy_jobs(config)
    automatic = {n: j for n, j in jobs.items() if not is_manual(j)}
    manual = {n: j for n, j in jobs.items() if is_manual(j)}
    if not automatic:
        return ["no automatic deploy job"]
    problems = []
    for name, job in automatic.items():
        rules = job.get("rules") or []
        first = rules[0] if rules else {}
        if not (normalized(first.get("if", "")) == "$DEPLOY == 'subtractive'" and first.get("when") == "never"):
            problems.append(f"{name}: its first rule does not skip it when DEPLOY == \"subtractive\"")
        runs_for = [normalized(r.get("if", "")) for r in rules if r.get("when") != "never"]
        environment = environment_name(job)
        twins = [n for n, m in manual.items() if environment_name(m) == environment
                 and re.search(r"\bscript/ci_deploy\s+--digests\s+\S+\s+\S+\s+\S+\s+-s\b", job_script(config, m))]
        if not twins:
            problems.append(f"{name}: no manual job runs script/ci_deploy --digests FILE {environment} SHA -s")
        for twin in twins:
            rules = manual[twin].get("rules") or []
            if [normalized(r.get("if", "")) for r in rules if r.get("when") == "manual"] != runs_for:
                problems.append(f"{twin}: runs in other pipelines than {name} (its rules differ), where this "
                                "pipeline's build digests may be missing")
            if not all(r.get("allow_failure") is True for r in rules if r.get("when") == "manual"):
                problems.append(f"{twin}: a manual job without allow_failure: true blocks every pipeline")
    return problems


def gitlab_environment_urls(config):
    """Each environment links its own address: the urls of the deploy jobs, with the file's and the job's
    variables put in, differ between environments."""
    urls, problems = {}, []
    for name, job in gitlab_deploy_jobs(config).items():
        environment = job.get("environment")
        url = environment.get("url") if isinstance(environment, dict) else None
        if not url:
            problems.append(f"{name}: its environment has no url")
            continue
        variables = {**(config.get("variables") or {}), **(job.get("variables") or {})}
        value = re.sub(r"\$\{?(\w+)\}?", lambda m, known=variables: str(known.get(m.group(1), m.group(0))), str(url))
        urls.setdefault(value, set()).add(environment_name(job))
    for url, environments in urls.items():
        if len(environments) > 1:
            problems.append(f"environments {', '.join(sorted(environments))} all link {url}")
    return problems


def excludes_merge_requests(rule):
    return (normalized(rule.get("if", "")) == "$CI_PIPELINE_SOURCE == 'merge_request_event'"
            and rule.get("when") == "never")


def gitlab_push_rules(config):
    """Jobs that push images never run in merge request pipelines (a first `when: never` rule)."""
    problems = []
    for name, job in gitlab_jobs(config).items():
        if not PUSHES.search(job_script(config, job)):
            continue
        for rule in job.get("rules") or []:
            if excludes_merge_requests(rule):
                break
            if rule.get("when") != "never":
                problems.append(f"{name}: pushes images and a rule may run it before merge requests are excluded")
                break
        else:
            problems.append(f"{name}: pushes images without a rule excluding "
                            "$CI_PIPELINE_SOURCE == \"merge_request_event\"")
    return problems


def gitlab_cache_tags(config):
    """Image tags and --cache-from use $CI_COMMIT_REF_SLUG, never a raw branch or tag name."""
    problems = []
    for name, job in gitlab_jobs(config).items():
        for line in job_script(config, job).splitlines():
            raw = GITLAB_RAW_REFS.search(line)
            if TAGS_IMAGES.search(line) and raw:
                problems.append(f"{name}: tags images with ${raw.group(1)} (not always a valid tag); "
                                "use $CI_COMMIT_REF_SLUG")
    return problems


def gitlab_protected_pushes(config):
    """Jobs that push images run only for protected refs: every rule is `when: never` or needs
    $CI_COMMIT_REF_PROTECTED == "true", so an unprotected branch (slug main from main-) never writes a tag."""
    problems = []
    for name, job in gitlab_jobs(config).items():
        if not PUSHES.search(job_script(config, job)):
            continue
        rules = job.get("rules")
        if "only" in job or "except" in job or not rules or not all(protected_only(rule) for rule in rules):
            problems.append(f"{name}: pushes images from unprotected refs too (rules need "
                            "$CI_COMMIT_REF_PROTECTED == \"true\")")
    return problems


def gitlab_deploy_trust(config):
    """Deploys pass $CI_COMMIT_SHA, never turn host key checking off; pip installs are pinned."""
    problems = host_key_problems("\n".join(strings(config)))
    for name, job in gitlab_jobs(config).items():
        lines = job_script(config, job).splitlines()
        variables = {**(config.get("variables") or {}), **(job.get("variables") or {})}
        problems += [f"{name}: {p}" for p in full_sha_problems("gitlab", lines, {k: str(v) for k, v in variables.items()})]
        problems += [f"{name}: {p}" for p in pip_pin_problems(lines)]
    return problems


def gitlab_pinned_images(config):
    """Every job and service image names an exact version (X.Y.Z) or a digest, never a floating tag."""
    problems = []
    scopes = {"default": config.get("default") or {}, **gitlab_jobs(config)}
    if "image" in config or "services" in config:
        scopes["(top level)"] = config
    for name, job in scopes.items():
        images = [job.get("image")] + list(job.get("services") or [])
        for image in filter(None, images):
            ref = image.get("name") if isinstance(image, dict) else image
            if not EXACT_IMAGE.fullmatch(str(ref)):
                problems.append(f"{name}: image {ref} is not pinned to an exact version or digest")
    return problems


# --- script/build ---------------------------------------------------------------------

RECORDER = """#!{python}
import json, os, sys
with open({log!r}, "a") as log:
    log.write(json.dumps({{"name": os.path.basename(sys.argv[0]), "argv": sys.argv[1:], "cwd": os.getcwd()}}) + "\\n")
"""


def write_recorder(path, log):
    """Write an executable at path that appends {name, argv, cwd} as one JSON line to log, and exits 0."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(RECORDER.format(python=sys.executable, log=str(log)))
    path.chmod(0o755)
    return path


def fake_commands(bin_dir, log, *names):
    """A directory of recorders named `names`, to put first on PATH."""
    for name in names:
        write_recorder(Path(bin_dir) / name, log)
    return Path(bin_dir)


def calls(log):
    """The recorded calls, in order."""
    log = Path(log)
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def option_values(argv, option):
    """Values given to an option, as `--opt value` or `--opt=value`."""
    found = [b for a, b in zip(argv, argv[1:], strict=False) if a == option]
    return found + [a.split("=", 1)[1] for a in argv if a.startswith(f"{option}=")]


def build_cache_problems(script, workdir, tag="main", sha="0123abcd"):
    """Run a build script with --cache-from TAG against a fake docker: every `docker build` writes an
    inline cache and reads the cache of every image the script builds, with no buildx-only flag."""
    workdir = Path(workdir)
    log = workdir / "docker.log"
    bin_dir = fake_commands(workdir / "bin", log, "docker")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin:/usr/local/bin", "HOME": str(workdir)}
    result = run([script, "--cache-from", tag, sha], env=env, check=False, timeout=60)
    if result.returncode != 0:
        return [f"{script} --cache-from {tag} {sha} exited {result.returncode}: {result.stderr.strip()}"]
    docker = [c["argv"] for c in calls(log)]
    if any(argv[:1] == ["buildx"] for argv in docker):
        return ["runs docker buildx, which the legacy builder (engine without buildx) does not have"]
    builds = [argv[1:] for argv in docker if argv[:1] == ["build"]]
    if not builds:
        return ["runs no docker build"]
    repositories = {t.rsplit(":", 1)[0] for argv in builds for t in option_values(argv, "-t") + option_values(argv, "--tag")}
    problems = []
    for argv in builds:
        built = " ".join(option_values(argv, "-t") + option_values(argv, "--tag")) or " ".join(argv)
        if "BUILDKIT_INLINE_CACHE=1" not in option_values(argv, "--build-arg"):
            problems.append(f"docker build of {built} writes no inline cache (--build-arg BUILDKIT_INLINE_CACHE=1)")
        if option_values(argv, "--cache-to"):
            problems.append(f"docker build of {built} uses --cache-to, which the legacy builder does not have")
        missing = sorted({f"{r}:{tag}" for r in repositories} - set(option_values(argv, "--cache-from")))
        if missing:
            problems.append(f"docker build of {built} does not read the cache of {', '.join(missing)}")
    return problems
