"""Shared fixtures (fixtures only; helpers live in tests/harness): bakes, image mode, the run report."""

from contextlib import ExitStack

import pytest

from tests.combinations import SUPPORTED, combo_id
from tests.harness.bake import BakeCache


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
    from tests.harness.docker import engine_available
    from tests.images import kit, shards_mirror

    if not engine_available():
        pytest.fail("the docker tier needs a running Docker engine: run tests/tools/bootstrap engine", pytrace=False)
    with ExitStack() as stack:
        try:
            mode, report = stack.enter_context(kit.images_for_run(request.config.getoption("--image-mode")))
        except shards_mirror.MirrorMissing as error:
            pytest.exit(str(error), returncode=1)
        request.config._lhd_mode_report = report
        yield mode


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
    report = getattr(config, "_lhd_mode_report", None)
    if report:
        terminalreporter.section("image mode")
        for line in report:
            terminalreporter.write_line(line)
