"""The kit lends upstream names to its images only for the duration of a run."""

import io
import os
import shutil
import sys
import tarfile

import pytest

from harness.docker import docker, package_files, unique
from harness.proc import PIPE, popen
from kit import kit


@pytest.fixture
def names():
    """A kit image and a throwaway upstream-style name; both names removed afterwards."""
    upstream = f"{unique('lhd-test/upstream')}:1"
    yield kit.BASE, upstream
    docker("image", "rm", "--no-prune", upstream, check=False)


def image_id(name):
    """The image ID a name points at."""
    return docker("image", "inspect", "--format", "{{.Id}}", name).stdout.strip()


def empty_real_image(name):
    """An image without the kit label, made from an empty tar."""
    empty = io.BytesIO()
    tarfile.open(fileobj=empty, mode="w").close()
    docker("import", "-", name, input=empty.getvalue().decode("latin-1"))


def test_upstream_name_exists_only_inside_the_block(image_mode, names):
    """Inside upstream_names() the upstream name is the kit image; afterwards it is gone and the kit name stays."""
    kit_name, upstream = names
    assert kit.holder(upstream) is None
    with kit.upstream_names([names]):
        assert kit.holder(upstream) == "kit"
        assert image_id(upstream) == image_id(kit_name)
    assert kit.holder(upstream) is None
    assert kit.holder(kit_name) == "kit"
    assert kit.leftovers([names]) == []


def test_stale_name_from_a_crashed_run_is_removed(image_mode, names):
    """An upstream name left on a kit image by a run that died is gone after the next run."""
    kit_name, upstream = names
    docker("tag", kit_name, upstream)
    assert kit.leftovers([names]) == [upstream]
    with kit.upstream_names([names]):
        pass
    assert kit.holder(upstream) is None


def test_real_image_under_the_name_is_left_alone(image_mode, names):
    """A real (non-kit) image holding the upstream name is used as found and never removed."""
    _, upstream = names
    empty_real_image(upstream)
    before = image_id(upstream)
    with kit.upstream_names([names]) as real:
        assert real == [upstream]
        assert image_id(upstream) == before
    assert kit.holder(upstream) == "real" and image_id(upstream) == before


@pytest.mark.parametrize("upstream", [upstream for _, upstream in kit.aliases()])
def test_run_uses_upstream_names(image_mode, upstream):
    """During a local run this pinned upstream name is the kit's; in upstream mode it is not."""
    if image_mode == "local":
        assert kit.holder(upstream) == "kit"
    else:
        assert kit.holder(upstream) != "kit"


def test_overlapping_runs_keep_the_name_until_the_last_leaves(image_mode, names):
    """Two runs lending the same name: the first to leave keeps it for the other (and `leftovers` does not count
    it); the last removes it."""
    _, upstream = names
    with kit.upstream_names([names]):
        with kit.upstream_names([names]):
            assert kit.holder(upstream) == "kit"
        assert kit.holder(upstream) == "kit"
        assert kit.leftovers([names]) == []  # a live run holds it: not a leftover of the run that ended
    assert kit.holder(upstream) is None


HOLD = """
import sys
from kit import kit
with kit.upstream_names([(sys.argv[1], sys.argv[2])]):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_run_of_another_checkout_keeps_the_name_until_it_leaves(image_mode, names, tmp_path):
    """A run of another checkout of the template (its own kit/ and kit/.cache) on the same engine lends the same
    name: this run's end leaves it to that one, which removes it when it leaves."""
    kit_name, upstream = names
    other = tmp_path / "other-checkout"
    shutil.copytree(kit.ROOT / "harness", other / "harness", ignore=shutil.ignore_patterns("__pycache__", "node_modules"))
    (other / "kit").mkdir()
    for module in (kit.ROOT / "kit").glob("*.py"):  # its own kit/.cache would be other/kit/.cache
        shutil.copy(module, other / "kit")
    shutil.copy(kit.ROOT / "cookiecutter.json", other)
    with popen([sys.executable, "-c", HOLD, kit_name, upstream], cwd=other, text=True,
               env={**os.environ, "PYTHONPATH": str(other)}, stdin=PIPE, stdout=PIPE) as holder:
        try:
            assert holder.stdout.readline().strip() == "held"
            with kit.upstream_names([names]):
                assert kit.holder(upstream) == "kit"
            assert kit.holder(upstream) == "kit", "this run's end untagged a name the other checkout's run holds"
        finally:
            holder.stdin.close()
            holder.wait(timeout=60)
    assert holder.returncode == 0
    assert kit.holder(upstream) is None


@pytest.mark.parametrize("image", [kit.BASE_SID, next(i.name for i in kit.images() if i.context == "alpine")])
def test_kit_images_keep_no_package_files(image_mode, image):
    """A kit base keeps no package debootstrap fetched, and an image that installs on it (the Alpine stand-in,
    through its apk shim) keeps none of what it installed: Docker Hub's debian images clean up after apt the
    same way, and every save, load, push and pull of a run moved those files (the Alpine stand-in kept 138 MB)."""
    if image_mode != "local":
        pytest.skip("the kit's images are built in local mode only")
    assert package_files(image) == [], image
