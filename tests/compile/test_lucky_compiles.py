"""The rendered Lucky app passes the real Crystal compiler's semantic check.

Runs before any stack starts (`nox -s compile`), inside the Crystal image the
generated Dockerfiles build FROM: in local mode the kit's real Crystal and
shards with Lucky's real shard sources, in upstream mode the official image.
A compile error fails here in about a minute instead of after a stack came up.
The compiler runs in a one-shot testcontainers container
(harness/containers.py run_once).
"""

import pytest

from harness.bake import bake
from harness.containers import run_once
from kit.kit import PINS

CRYSTAL = f"crystallang/crystal:{PINS['_crystal_version']}-alpine"
# The answers that change what the compiler sees. Crystal sources are copied
# without rendering (cookiecutter.json `_copy_without_render`); only shard.yml
# is rendered, from project_name (its targets) and repo_owner (authors). No
# choice option touches them: tests/render/test_generation.py
# test_crystal_inputs_vary_only_with_free_text_answers holds that.
VARIANTS = [{}, {"project_name": "shop_api", "repo_owner": "acme"}]
# Every entry point the project compiles: the server, the task runner, the
# healthcheck binary, and the specs (`crystal spec` compiles them as one program).
CHECK = """set -e
shards install --quiet
crystal build --no-codegen src/start_server.cr
crystal build --no-codegen tasks.cr
crystal build --no-codegen src/healthcheck.cr
crystal build --no-codegen $(find spec -name '*_spec.cr')
"""


def variant_id(answers):
    """key:value-key:value, or `defaults`."""
    return "-".join(f"{k}:{v}" for k, v in answers.items()) or "defaults"


def semantic_check(project, check=True):
    """CHECK in the Crystal image on the project mounted at /app; the CompletedProcess (raises on failure when check)."""
    return run_once(CRYSTAL, "-c", CHECK, entrypoint="sh", working_dir="/app", volumes=[(project, "/app", "rw")],
                    timeout=600, check=check)


@pytest.mark.parametrize("answers", VARIANTS, ids=variant_id)
def test_semantic_check_passes(image_mode, tmp_path, answers):
    """`crystal build --no-codegen` of every entry point succeeds for this rendering."""
    result = semantic_check(bake(tmp_path, **answers))
    assert result.returncode == 0


def test_semantic_check_catches_a_type_error(image_mode, tmp_path):
    """The same check fails, naming the file, when the app has a compile error."""
    project = bake(tmp_path)
    action = project / "src/actions/version/show.cr"
    action.write_text(action.read_text() + "\nVersion::Show.new.no_such_method(1)\n")
    result = semantic_check(project, check=False)
    assert result.returncode != 0
    assert "src/actions/version/show.cr" in result.stdout + result.stderr
