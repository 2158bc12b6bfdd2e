"""harness.pipeline.release_compile reads, from a job's `docker build` output, whether the release compile
(Dockerfile.prod's `RUN shards build`) ran or was reused: the pipeline tier's proof that a CI build reuses the
compile pushed as lucky-build only when its inputs are unchanged. And the projects built on this host share one
compile (harness/variants.py compile_digest)."""

import pytest

from harness.acme import ANSWERS as ACME_ANSWERS
from harness.bake import bake
from harness.github_steps import GITHUB_ANSWERS
from harness.pipeline import release_compile
from harness.variants import compile_digest, compile_inputs

LEGACY = """build > Step 1/9 : ARG BASE_IMAGE
build > Step 8/9 : RUN shards build --production --release --static lhd_app lucky_tasks     && find db
build > {answer}
build > Step 9/9 : RUN apk add --no-cache postgresql-client
build >  ---> Running in 0a1b2c3d4e5f
"""
BUILDKIT = """#11 [build 7/7] RUN shards build --production --release --static lhd_app lucky_tasks
{answer}
#12 [runtime 2/8] RUN apk add --no-cache postgresql-client
#12 DONE 3.1s
"""


@pytest.mark.parametrize(("output", "expected"), [
    (LEGACY.format(answer=" ---> Using cache"), "reused"),
    (LEGACY.format(answer=" ---> Running in 9f8e7d6c5b4a"), "ran"),
    (BUILDKIT.format(answer="#11 CACHED"), "reused"),
    (BUILDKIT.format(answer="#11 0.512 Dependencies are satisfied\n#11 DONE 95.2s"), "ran"),
    ("build > Step 2/5 : RUN shards install\nbuild >  ---> Using cache\n", None),
], ids=["legacy:reused", "legacy:ran", "buildkit:reused", "buildkit:ran", "no-compile"])
def test_release_compile_reads_the_compile_step(output, expected):
    assert release_compile(output) == expected


def test_a_later_steps_answer_is_not_the_compiles():
    """The compile's own answer decides, not the next step's (BuildKit: another step number)."""
    output = BUILDKIT.format(answer="#11 0.512 compiling\n#11 DONE 95.2s").replace("#12 DONE", "#12 CACHED")
    assert release_compile(output) == "ran"


# The projects whose Lucky release images are built on this host's engine, one after another (harness/docker.py
# release_build): the e2e tier's, the cluster's, the drill's and the runbook's (the default answers), the acme
# tier's, and the GitHub workflow's, whose first build is seeded from this host's compile (Runner.seed_compile).
HOST_BUILT = {"defaults": {}, "acme": ACME_ANSWERS, "github": GITHUB_ANSWERS}


def test_the_host_built_projects_share_one_release_compile(tmp_path):
    """Their compile inputs are the same, so the engine's layer cache compiles once for all of them: an answer that
    reaches a compile input (repo_owner reached shard.yml's authors) costs a whole release build in the run."""
    digests = {name: compile_digest(bake(tmp_path / name, **answers)) for name, answers in HOST_BUILT.items()}
    assert len(set(digests.values())) == 1, digests


def test_an_answer_in_a_compile_input_changes_the_compile(tmp_path):
    """The check above can fail: another owner (shard.yml's author) is another compile; a stack file is not one."""
    default = bake(tmp_path / "default")
    assert "shard.yml" in compile_inputs(default) and "src/app.cr" in compile_inputs(default)
    assert "Docker/docker-compose.yml" not in compile_inputs(default)
    other = bake(tmp_path / "owner", repo_owner="someone-else")
    assert compile_digest(other) != compile_digest(default)
