"""harness.pipeline.release_compile reads, from a job's `docker build` output, whether the release compile
(Dockerfile.prod's `RUN shards build`) ran or was reused: the pipeline tier's proof that a CI build reuses the
compile pushed as lucky-build only when its inputs are unchanged."""

import pytest

from harness.pipeline import release_compile

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
