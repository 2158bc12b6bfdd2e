"""The generated `.gitlab-ci.yml`, run unchanged by gitlab-ci-local, job by job, against real parts.

- `Repository`: the rendered project as a git repository (branch main) with a real remote, a bare repository
  the test owns (pushed to over file://; the server clones and fetches it, harness/server.py). gitlab-ci-local
  reads the project's GitLab path from the remote `gcl-origin` (https://gitlab.com/<owner>/<name>.git), which
  is never fetched.
- `Runner`: the jobs' Docker engine. A real runner gives jobs a docker:dind service, which needs --privileged,
  refused here; the dind stand-in (kit/jobs/dind) forwards the service's port 2375 to this engine instead: a
  kit/dind node with the capabilities shared/ENVIRONMENT.md lists, whose socket is a host directory mounted
  into the service. It trusts the registry's CA and resolves the project's registry host (registry.gitlab.com
  for the default render) to the cluster's registry, as a runner's engine reaches the GitLab registry.
- `GitlabCiLocal`: gitlab-ci-local (requirements/pipeline, `tools/bootstrap pipeline`) with the job images'
  stand-ins (kit/job_images.py) and the variables GitLab sets on a pipeline (`push_variables`).
"""

import json
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from harness.bake import bake, copy_template
from harness.cluster_nodes import NODE_IMAGE, NODE_OPTIONS, REGISTRY_HOST, copy_seed
from harness.combinations import ROOT
from harness.docker import docker, network_hosts, release_build
from harness.proc import run
from harness.stack import REGISTRY
from harness.wait import until
from kit import job_images, kit

PIPELINE_NODE = ROOT / "requirements" / "pipeline"
GITLAB_URL = "https://gitlab.com/my-group/lhd-app.git"  # the default render's __git_url
ENGINE_DIR = "/var/run/lhd-engine"  # where the runner engine's socket is mounted in the service and jobs
BRANCH = "main"


class ToolMissing(RuntimeError):
    pass


def gitlab_ci_local():
    """The pinned gitlab-ci-local's path; ToolMissing (one line) when `tools/bootstrap pipeline` has not run."""
    want = json.loads((PIPELINE_NODE / "package.json").read_text())["dependencies"]["gitlab-ci-local"]
    installed = PIPELINE_NODE / "node_modules" / "gitlab-ci-local" / "package.json"
    binary = PIPELINE_NODE / "node_modules" / ".bin" / "gitlab-ci-local"
    if not installed.is_file() or json.loads(installed.read_text())["version"] != want:
        raise ToolMissing(f"gitlab-ci-local {want} is not installed: run tools/bootstrap pipeline")
    return binary


def git(repo, *args, **kw):
    return run(["git", "-C", repo, "-c", "safe.directory=*", *args], **kw)


class Repository:
    """The rendered project, committed on main, pushed to a bare repository under remote_dir."""

    def __init__(self, workdir, remote_dir, template=ROOT, patch=None, answers=None):
        """answers: cookiecutter answers over the defaults (git_host=github for the GitHub workflow's project)."""
        self.workdir = Path(workdir)
        self.path = bake(self.workdir / "out", template=template, **(answers or {}))
        if patch:
            patch(self.path)
        self.bare = Path(remote_dir) / "lhd-app.git"
        git(self.path, "init", "--quiet", "-b", BRANCH)
        # gitlab-ci-local keeps its state and artifacts in .gitlab-ci-local/ of the repository and copies only
        # what git tracks into a job: committed, its files would be missing from the job's checkout, which
        # script/build then refuses as changed (seen). Its README has users ignore the folder; here the
        # repository's own exclude file does, so the project's .gitignore stays as rendered.
        with open(self.path / ".git/info/exclude", "a") as exclude:
            exclude.write("/.gitlab-ci-local/\n")
        git(self.path, "config", "user.name", "LHD pipeline test")
        git(self.path, "config", "user.email", "pipeline@lhd.test")
        self.commits = []  # every commit's SHA, oldest first
        self.commit("Start from LHD")
        run(["git", "init", "--quiet", "--bare", "-b", BRANCH, self.bare])
        git(self.path, "remote", "add", "origin", self.bare)
        git(self.path, "remote", "add", "gcl-origin", GITLAB_URL)
        self.push(BRANCH)
        git(self.path, "fetch", "--quiet", "origin")
        git(self.path, "remote", "set-head", "origin", BRANCH)

    def commit(self, message):
        git(self.path, "add", "-A")
        git(self.path, "commit", "--quiet", "--allow-empty", "-m", message)
        self.commits.append(self.sha)
        return self.sha

    def add_migration(self, version, name, body_up, body_down):
        """A Lucky migration in db/migrations (not committed): a user's next commit's change."""
        klass = "".join(part.capitalize() for part in name.split("_"))
        path = self.path / f"db/migrations/{version}_{name}.cr"
        path.write_text(f"class {klass}::V{version} < Avram::Migrator::Migration::V1\n  def migrate\n{body_up}\n  end\n\n"
                        f"  def rollback\n{body_down}\n  end\nend\n")
        return path

    def commit_failing_spec(self):
        """A spec that fails (spec/planted_failure_spec.cr) committed and pushed to main: a pipeline's test job must
        stop it. Returns the commit's SHA."""
        (self.path / "spec/planted_failure_spec.cr").write_text(
            'require "./spec_helper"\n\ndescribe "a planted failure" do\n  it "fails" do\n'
            '    (1 + 1).should eq(3)\n  end\nend\n')
        sha = self.commit("A spec that fails")
        self.push(BRANCH)
        return sha

    def push(self, *refs):
        """git push origin refs. The bare repository belongs to the server's deploy user (owned_by), so the
        receiving git, a process of its own, is told it is safe too."""
        git(self.path, "push", "--quiet", "--receive-pack", "git -c safe.directory=* receive-pack", "origin", *refs)

    @property
    def sha(self):
        return git(self.path, "rev-parse", "HEAD").stdout.strip()

    def clone_url(self, mounted_at):
        """The remote's URL on a machine that mounts remote_dir at mounted_at."""
        return f"file://{mounted_at}/{self.bare.name}"

    def owned_by(self, uid):
        """Give the bare repository to uid (the server's deploy user reads it; git refuses another owner's)."""
        run(["chown", "-R", f"{uid}:{uid}", self.bare])


def host_resolvers():
    """The host's DNS resolvers (/etc/resolv.conf, loopback ones left out). A node's own resolv.conf names
    Docker's embedded DNS (127.0.0.11), which the containers of its engine cannot reach, so without these
    its builds could not resolve the Debian mirror their `apk add` (the kit's apt shim) fetches from."""
    lines = Path("/etc/resolv.conf").read_text().splitlines()
    found = [line.split()[1] for line in lines if line.startswith("nameserver") and len(line.split()) > 1]
    return [address for address in found if not address.startswith("127.") and address != "::1"]


class TemplateRepository:
    """A git repository holding a copy of the work tree's template: a project rendered from it names it in
    .cruft.json (template, commit), as a user's names the template's clone or URL, and it can take commits."""

    def __init__(self, path):
        self.path = Path(path)
        copy_template(self.path)
        git(self.path, "init", "--quiet", "-b", BRANCH)
        git(self.path, "config", "user.name", "LHD template maintainer")
        git(self.path, "config", "user.email", "template@lhd.test")
        self.commit("The template")

    def commit(self, message, path="CHANGELOG.md"):
        """A template commit (a line appended to path, outside the rendered project)."""
        with open(self.path / path, "a") as handle:
            handle.write(f"- {message}\n")
        git(self.path, "add", "-A")
        git(self.path, "commit", "--quiet", "-m", message)


# The release compile (Dockerfile.prod's `RUN shards build`) in a job's `docker build` output. The legacy
# builder, which the runner engine here uses (engine 20.10, no buildx), prints "Step N/M : RUN shards build ..."
# then " ---> Using cache" or " ---> Running in <id>" (seen in this tier's job logs); BuildKit's plain progress
# prints "#N [build k/k] RUN shards build ..." then "#N CACHED", or the step's own lines and "#N DONE" (its
# documented `--progress=plain` form; no BuildKit runs here, so that branch is read from samples only).
LEGACY_STEP = re.compile(r"Step \d+/\d+ : RUN shards build")
BUILDKIT_STEP = re.compile(r"#(\d+) \[[^]]*\] RUN shards build")


def release_compile(output):
    """"reused" or "ran": how the first release compile in output went (a job's or a step's output); None when
    no build in it reached the compile."""
    lines = output.splitlines()
    for index, line in enumerate(lines):
        buildkit = BUILDKIT_STEP.search(line)
        if not (buildkit or LEGACY_STEP.search(line)):
            continue
        for later in lines[index + 1:]:
            if buildkit:
                step = f"#{buildkit.group(1)} "
                if step + "CACHED" in later:
                    return "reused"
                if step + "DONE" in later:
                    return "ran"
            elif "---> Using cache" in later:
                return "reused"
            elif "---> Running in" in later:
                return "ran"
        return None
    return None


class Runner:
    """The jobs' engine: a kit/dind node on the cluster's network (named <cluster>-runner, so the cluster's
    close() removes it and its volume), its socket in a host directory."""

    def __init__(self, cluster, image):
        self.cluster = cluster
        self.image = image
        self.name = f"{cluster.name}-runner"
        self.socket_dir = cluster.workdir / "runner-engine"

    def start(self, seed=()):
        """seed: images of the host the engine starts with (harness/cluster_nodes.py `seeded_store`; only when
        this is a node image), in place of a `docker load`."""
        c = self.cluster
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        docker("volume", "create", *c.labels, f"{self.name}-docker")
        if seed and self.image == NODE_IMAGE:
            copy_seed(seed, f"{self.name}-docker", c.labels)
        docker("run", "-d", "--name", self.name, "--hostname", self.name, "--network", c.network, *c.labels,
               *NODE_OPTIONS, "-v", f"{self.name}-docker:/var/lib/docker", *c.registry_host_args(),
               "-v", f"{self.socket_dir}:{ENGINE_DIR}", self.image, "--host", f"unix://{ENGINE_DIR}/docker.sock",
               *[arg for address in host_resolvers() for arg in ("--dns", address)])
        until(lambda: c.docker_on(self.name, "info", "--format", "{{.ServerVersion}}", check=False).stdout.strip(), 90,
              "the runner's engine to answer")
        return self

    def docker(self, *args, **kw):
        return self.cluster.docker_on(self.name, *args, **kw)

    @staticmethod
    def build_bases():
        """The images the project's Dockerfiles build FROM (the kit's, under their upstream names in local mode)."""
        return [image.upstream for image in kit.images() if image.context in ("crystal", "alpine", "hasura")]

    def load_build_bases(self):
        """The images the project's Dockerfiles build FROM (the kit's, under their upstream names in local mode)."""
        names = self.build_bases()
        missing = [n for n in names if self.docker("image", "inspect", n, check=False).returncode != 0]
        if missing:
            self.cluster.load(missing, [self.name])

    def load_images(self, names):
        """Images of the host engine (the kit's, under their upstream names in local mode) the jobs' compose
        files run and no registry here serves: PostgreSQL for the test job's dev stack."""
        missing = [n for n in names if self.docker("image", "inspect", n, check=False).returncode != 0]
        if missing:
            self.cluster.load(missing, [self.name])

    def image_ids(self):
        return set(self.docker("image", "ls", "-q", "--no-trunc").stdout.split())

    def seed_compile(self, project, tag="main"):
        """Give this engine the project's release compile as <registry>/lucky-base:TAG and lucky-build:TAG: what
        script/build's `--cache-from TAG` finds when an earlier pipeline of branch TAG pushed them (the build
        job's, docs/ci.md "The compile is cached"), so the job's build reuses the compile instead of making it.
        Made on this host's engine, in its turn of release builds (`release_build`): there the compile is
        usually cached already, since the e2e and cluster tiers build the same inputs (Dockerfile.prod copies
        only the compiler's, and tests/render/test_release_compile.py keeps every host-built project's the same);
        otherwise it is made there, once.
        Then streamed into this engine (`docker save | docker load`: the same image ids, as a pull gives, which
        the legacy builder's --cache-from matches by history and layers). Returns (seconds, what they went to)."""
        started = time.perf_counter()
        registry = re.search(r'^REGISTRY_IMAGE="(.*)"$', (project / "script/functions/common").read_text(), re.M)[1]
        base = f"lhd-seed/lucky-base:{self.name}"
        common = ["--quiet", "--build-arg", "BUILDKIT_INLINE_CACHE=1"]  # script/build's arguments
        try:
            with release_build():
                turn = time.perf_counter()
                commit_build(project, *common, "--target", "base", "-f", "Docker/lucky/Dockerfile", "-t", base)
                # The compile's image by id, never named here: removing an image's last name deletes it, and with
                # it this host's cache of the compile (the base keeps its layers: the compile's image is its child).
                compiled = commit_build(project, *common, "-f", "Docker/lucky/Dockerfile.prod", "--build-arg",
                                        f"BASE_IMAGE={base}", "--target", "build").stdout.split()[-1]
                built = time.perf_counter()
                # Every image of the build's chain, each step's: `docker load` links a loaded image to its parent
                # only when both were saved together (moby image/tarexport validatedParentLinks, SetParent), and
                # the legacy builder's own cache finds a step's image among its parent's children. So a plain
                # `script/build` (the README's, no --cache-from) reuses the compile there too.
                chain = [i for i in docker("history", "-q", compiled).stdout.split() if i != "<missing>"]
            run(["bash", "-c", 'set -o pipefail; docker save "${@:2}" | docker -H "$1" load -q', "seed",
                 f"unix://{self.socket_dir}/docker.sock", base, *chain], timeout=900)
        finally:
            docker("image", "rm", "--no-prune", base, check=False)
        self.docker("tag", base, f"{registry}/lucky-base:{tag}")
        self.docker("image", "rm", "--no-prune", base)
        self.docker("tag", compiled, f"{registry}/lucky-build:{tag}")
        seconds = time.perf_counter() - started
        return seconds, (f"main's compile given to the jobs' engine in {seconds:.0f} s (its turn of the host's "
                         f"release builds awaited {turn - started:.0f} s, the host's build {built - turn:.0f} s, "
                         f"the copy {seconds - (built - started):.0f} s)")


def commit_build(checkout, *args):
    """`docker build ARGS` of the checkout's HEAD as script/build builds a checkout: the commit on stdin, as `git -c
    tar.umask=0022 archive` gives it (git's modes), so every COPY has the cache key a job's build of that commit has,
    whatever the modes of the checkout it runs in (GitLab's are world-writable)."""
    return run(["bash", "-c", 'set -o pipefail; git -c tar.umask=0022 archive --format=tar HEAD | docker build "$@" -',
                "commit_build", *args], cwd=checkout, timeout=2400)


@dataclass
class JobRun:
    job: str
    returncode: int
    output: str
    seconds: float

    @property
    def passed(self):
        return self.returncode == 0

    def script_lines(self, job=None):
        """What the job's commands printed (gitlab-ci-local's "JOB > " lines), without its own reporting; job:
        another job's, in a whole pipeline's output."""
        prefix = f"{job or self.job} > "
        return [line[len(prefix):] for line in self.output.splitlines() if line.startswith(prefix)]


class GitlabCiLocal:
    """gitlab-ci-local on the repository, its jobs' containers on the cluster's network (the server and the
    registry are reachable there), the runner engine's socket mounted into services and jobs."""

    def __init__(self, repository, cluster, runner, volumes=()):
        """volumes: more host paths mounted into every job at the same path, read-only (the template the
        project's .cruft.json names, as the runner of a self-hosted template would reach it)."""
        self.repo = repository
        self.cluster = cluster
        self.runner = runner
        self.volumes = [f"{path}:{path}:ro" for path in volumes]
        self.binary = gitlab_ci_local()
        self.runs = []  # (job, seconds, passed) of every run, in order
        self.leaked = []  # what gitlab-ci-local's --cleanup left and the harness removed

    def push_variables(self, branch=BRANCH, protected=True, source="push", **extra):
        """What GitLab sets on a pipeline of `branch` (a push to a protected branch by default) and the
        registry's login (CI_REGISTRY*: GitLab's registry, here the cluster's, under the same host name)."""
        sha = self.repo.sha
        slug = re.sub(r"[^a-z0-9]+", "-", branch.lower()).strip("-")[:63]
        variables = {
            "CI_COMMIT_SHA": sha, "CI_COMMIT_SHORT_SHA": sha[:8], "CI_COMMIT_REF_NAME": branch,
            "CI_COMMIT_REF_SLUG": slug, "CI_COMMIT_REF_PROTECTED": "true" if protected else "false",
            "CI_DEFAULT_BRANCH": BRANCH, "CI_PIPELINE_SOURCE": source,
            "CI_REGISTRY": REGISTRY_HOST, "CI_REGISTRY_IMAGE": REGISTRY,
            "CI_REGISTRY_USER": self.cluster.registry_user, "CI_REGISTRY_PASSWORD": self.cluster.registry_password,
        }
        if source == "merge_request_event":
            variables["CI_MERGE_REQUEST_SOURCE_BRANCH_NAME"] = branch
            variables["CI_MERGE_REQUEST_TARGET_BRANCH_NAME"] = BRANCH
        else:
            variables["CI_COMMIT_BRANCH"] = branch
        variables.update(extra)
        return variables

    def argv(self, variables, unset=()):
        # --no-artifacts-to-source: GitLab never writes a job's artifacts back into the repository; copied there
        # (gitlab-ci-local's default: src/argv.js `artifactsToSource ?? true` in 4.56.0), the build's images.digests
        # made the next build's tree dirty (seen).
        # --extra-host NAME:IP for every container on the cluster network: gitlab-ci-local 4.56.0 hands each to the
        # job's `docker create` as --add-host (src/job.js), so the server's name resolves without the embedded DNS.
        args = [self.binary, "--color=false", "--cleanup", "--no-artifacts-to-source", "--pull-policy", "if-not-present",
                "--network", self.cluster.network, "--volume", f"{self.runner.socket_dir}:{ENGINE_DIR}",
                "--max-job-name-padding", "0", *[arg for volume in self.volumes for arg in ("--volume", volume)],
                *[arg for host in network_hosts(self.cluster.network) for arg in ("--extra-host", host)]]
        for key, value in variables.items():
            args += ["--variable", f"{key}={value}"]
        for key in unset:
            args += ["--unset-variable", key]
        if "CI_COMMIT_BRANCH" not in variables:
            args += ["--unset-variable", "CI_COMMIT_BRANCH"]
        return args

    def plan(self, variables):
        """job name -> `when` as gitlab-ci-local's rules give it for these variables ("never": not in the pipeline)."""
        out = run([*self.argv(variables), "--list-json"], cwd=self.repo.path, timeout=120, stdin=subprocess.DEVNULL).stdout
        return {job["name"]: job["when"] for job in json.loads(out)}

    def run(self, job, variables, timeout=3600):
        """Run one job (gitlab-ci-local JOB: its image, services and rules, the repository's tracked files, the
        artifacts of earlier jobs); JobRun with its exit status, output and wall time. job None: the whole
        pipeline, stage by stage, as gitlab-ci-local runs it (a failed job stops the later stages)."""
        started = time.perf_counter()
        before = self.resources()
        result = run([*self.argv(variables), *([job] if job else [])], cwd=self.repo.path, check=False,
                     timeout=timeout, stdin=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        self.remove_leaked(before, job)
        self.runs.append((job or "the whole pipeline", seconds, result.returncode == 0))
        return JobRun(job or "", result.returncode, result.stdout + result.stderr, seconds)

    def resources(self):
        """gitlab-ci-local's networks and volumes on the host now."""
        return {"networks": set(docker("network", "ls", "--filter", "name=gitlab-ci-local", "--format",
                                       "{{.Name}}").stdout.split()),
                "volumes": set(docker("volume", "ls", "-q", "--filter", "name=gcl-").stdout.split())}

    def remove_leaked(self, before, job):
        """Remove the networks and volumes a run made and its --cleanup left (seen under load: a service network
        still in use when gitlab-ci-local removed it); each is noted in `leaked` for the report."""
        time.sleep(1)
        for kind, names in self.resources().items():
            for name in sorted(names - before[kind]):
                self.leaked.append(f"{job or 'pipeline'}: {kind[:-1]} {name}")
                if kind == "networks":
                    docker("network", "rm", name, check=False)
                else:
                    docker("volume", "rm", "-f", name, check=False)

    def leftovers(self):
        """Containers (of the job images: gitlab-ci-local names none), networks and volumes gitlab-ci-local made
        for the jobs and did not remove."""
        ancestors = [arg for name, _ in job_images.pairs() for arg in ("--filter", f"ancestor={name}")]
        found = {"containers": docker("ps", "-a", *ancestors, "--format", "{{.Names}}").stdout.split(),
                 "networks": docker("network", "ls", "--filter", "name=gitlab-ci-local", "--format",
                                    "{{.Name}}").stdout.split(),
                 "volumes": docker("volume", "ls", "-q", "--filter", "name=gcl-").stdout.split()}
        return {kind: names for kind, names in found.items() if names}
