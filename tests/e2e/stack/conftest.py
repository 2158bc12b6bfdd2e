"""Fixtures of the dev-stack tier: the development stack, brought up by the generated project's own scripts."""

import pytest

from harness.devstack import make_stack


@pytest.fixture(scope="module")
def dev_stack(image_mode, tmp_path_factory):
    """script/up on a default project; script/down (and a forced down) afterwards."""
    stack = make_stack(tmp_path_factory.mktemp("dev"))
    try:
        stack.up()
        yield stack
    finally:
        stack.down()
