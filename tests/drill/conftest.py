"""Fixtures of the disaster drill (issue 23): the first server (harness/server.py: a registry and a kit/dind node
with sshd, the project cloned from a real git remote and bootstrapped as the README says), the rendered project
in a bare repository, an S3 store (harness/stores.py) on the servers' network, and one release's images."""

import pytest

from harness.bake import bake
from harness.docker import docker, engine_available, release_build
from harness.pipeline import Repository
from harness.proc import DEVNULL, run
from harness.report import add_to_report
from harness.server import Server, build_images
from harness.stack import REGISTRY, cached_name, park_images
from harness.stores import RCLONE_IMAGE, S3Store
from harness.swarm import SHA1
from kit import kit


@pytest.fixture(scope="session")
def server(image_mode, tmp_path_factory):
    """The registry (it stands for CI's, which outlives the server) and the first server's node; at teardown
    everything is removed (the rebuilt server and the store too), and anything left is an error."""
    if not engine_available():
        pytest.fail("the drill needs a running Docker engine: run tools/bootstrap engine", pytrace=False)
    build_images()
    s = Server(tmp_path_factory.mktemp("server"), tmp_path_factory.mktemp("remote"))
    try:
        yield s.start()
    finally:
        s.close()  # Cluster.close(): its `docker save` files go too
    left = s.leftovers()
    assert not any(left.values()), f"the servers left {left}"


@pytest.fixture(scope="session")
def repository(server, tmp_path_factory):
    """The rendered project committed on main and pushed to the servers' remote (a bare repository)."""
    repo = Repository(tmp_path_factory.mktemp("project"), server.remote)
    repo.owned_by(server.add_deploy_user())
    return repo


@pytest.fixture(scope="session")
def store(server, tmp_path_factory):
    """`rclone serve s3` (the kit's rclone image, built when missing) on the servers' network: offsite, it
    outlives the server. Removed before the servers' network."""
    if docker("image", "inspect", RCLONE_IMAGE, check=False).returncode != 0:
        kit.fetch_rclone()
        hashes = {base: kit.build_base(base) for base in kit.BASES}
        for image in kit.images():
            if image.name == RCLONE_IMAGE:
                kit.build_image(image, hashes[image.parent])
    s = S3Store(server.network, tmp_path_factory.mktemp("store"))
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="session")
def release(image_mode, tmp_path_factory, request):
    """SHA1's Lucky and Hasura images under the harness's cache names (harness/stack.py IMAGE_CACHE): the
    ones an earlier e2e session parked; else the ones a running e2e session holds under script/build's names (the
    lanes of harness/lanes.py run the drill beside it), copied to the cache names and left where they are; else
    one `script/build SHA1` of the rendered project (then parked). Returns (sha, {the name script/build gives: its
    cache name})."""
    names = {f"{REGISTRY}/{name}:{SHA1}": cached_name(f"{REGISTRY}/{name}:{SHA1}") for name in ("lucky", "hasura")}

    def present(images):
        return all(docker("image", "inspect", name, check=False).returncode == 0 for name in images)
    if present(names.values()):
        add_to_report(request.config, [f"drill: release {SHA1}: the harness's cached images"])
    elif present(names):
        # Parking would take script/build's names from the run that uses them: copy instead.
        for name, cached in names.items():
            docker("tag", name, cached)
        add_to_report(request.config, [f"drill: release {SHA1}: the images a running e2e session built"])
    else:
        # Outside a git checkout: script/build tags the working tree with the SHA it is given.
        project = bake(tmp_path_factory.mktemp("build") / "out")
        with release_build():  # parked before another run's build can name its images the same
            run([project / "script/build", SHA1], cwd=project, timeout=3600, stdin=DEVNULL)
            park_images({SHA1})
        add_to_report(request.config, [f"drill: release {SHA1}: built by script/build"])
    return SHA1, names
