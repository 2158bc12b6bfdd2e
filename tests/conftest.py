"""Shared fixtures (fixtures only; helpers live in harness/): bakes, image mode, the run report; and every test
marked by its folder (folder = marker = nox session)."""

from contextlib import ExitStack
from pathlib import Path

import pytest

from harness.bake import BakeCache
from harness.combinations import SUPPORTED, combo_id

TESTS = Path(__file__).resolve().parent
FOLDER_MARKERS = {"render": "render", "lint": "lint", "upgrade": "upgrade", "compile": "compile",
                  "contracts": "docker", "e2e": "docker", "cluster": "cluster",
                  "pipeline": "pipeline", "acme": "acme", "drill": "drill"}


def pytest_collection_modifyitems(config, items):
    """Mark each test by the tier folder it lives in; a test module outside them is an error, not a silent pass."""
    for item in items:
        folder = Path(item.path).resolve().relative_to(TESTS).parts[0]
        if folder not in FOLDER_MARKERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in one of tests/{{{','.join(FOLDER_MARKERS)}}}/")
        item.add_marker(FOLDER_MARKERS[folder])


@pytest.fixture(scope="session")
def bakes(tmp_path_factory):
    """Session-wide cache of rendered projects, keyed by combination."""
    return BakeCache(tmp_path_factory.mktemp("bakes"))


@pytest.fixture(scope="session")
def default_project(bakes):
    """The project rendered with every default answer."""
    return bakes.get(SUPPORTED[0])


@pytest.fixture(params=SUPPORTED, ids=combo_id)
def combo(request):
    """Each supported combination in turn."""
    return request.param


@pytest.fixture
def project(bakes, combo):
    """The project rendered for the current combination (baked once)."""
    return bakes.get(combo)


# --- the docker tier: image mode, kit, and the run report ------------------------

def pytest_addoption(parser):
    parser.addoption("--image-mode", default=None, choices=["auto", "upstream", "local"],
                     help="upstream: official images; local: the image kit; auto (default): local without a registry")


@pytest.fixture(scope="session")
def image_mode(request):
    """Resolve the image mode; in local mode build the kit and lend its images their upstream names for the run."""
    from harness.docker import engine_available
    from kit import kit, shards_mirror

    if not engine_available():
        pytest.fail("the docker tier needs a running Docker engine: run tools/bootstrap engine", pytrace=False)
    with ExitStack() as stack:
        try:
            mode, report = stack.enter_context(kit.images_for_run(request.config.getoption("--image-mode")))
        except shards_mirror.MirrorMissing as error:
            pytest.exit(str(error), returncode=1)
        request.config._lhd_mode_report = report
        yield mode


@pytest.fixture(scope="session", autouse=True)
def reaped(request):
    """Around every session that has an engine: what killed runs left is removed first (harness/reaper.py
    `reap_stale`), and at the end whatever this run labelled (`reap(RUN_ID)`). A run without an engine (render,
    lint) never calls docker: it removes only the temp directories killed runs left (`reap_stale_dirs`)."""
    from harness import reaper
    from harness.docker import engine_available

    docker_tiers = {"docker", "cluster", "pipeline", "acme", "drill"}
    if not any(docker_tiers & {m.name for m in item.iter_markers()} for item in request.session.items) \
            or not engine_available():
        reaper.reap_stale_dirs()
        yield None
        return
    reaper.reap_stale()
    yield reaper.RUN_ID
    reaper.reap(reaper.RUN_ID)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, add what stack fixtures know (script output, service logs)."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for value in getattr(item, "funcargs", {}).values():
            if hasattr(value, "failure_sections"):
                report.sections.extend(value.failure_sections())


def pytest_terminal_summary(terminalreporter, config):
    from harness import timing

    if timing.table():
        terminalreporter.section(timing.HEADER)
        for line in timing.lines():
            terminalreporter.write_line(line)
    report = getattr(config, "_lhd_mode_report", None)
    if report:
        terminalreporter.section("image mode")
        for line in report:
            terminalreporter.write_line(line)
