"""Fixtures of the swarm tier: one deployment per session, brought to each test's state."""

import pytest

from harness.bake import bake
from harness.report import add_to_report
from harness.swarm import SHA1, SHA2, Deployment, Swarm
from harness.wait import until


@pytest.fixture(scope="session")
def deployment(image_mode, tmp_path_factory, request):
    """A rendered project, SHA1 built and first deployed with `script/deploy --first`; everything removed afterwards.

    Building is the expensive part (a real Lucky release build per SHA), so it
    happens once per session: SHA2 (the added migrations: a second Lucky compile) is built in the background
    from the first deploy on, while the first modules wait on alerts and convergence; other releases are built
    when a test first asks.
    """
    with Swarm() as swarm:
        base = tmp_path_factory.mktemp("swarm")
        d = Deployment(bake(base / "out"), base / "work", image_mode)
        try:
            d.first_deploy(SHA1)
            d.prebuild(SHA2)
            report = list(d.notes) + (["created a single-node swarm on 127.0.0.1 (left at teardown)"] if swarm.created else [])
            add_to_report(request.config, report)
            yield d
        finally:
            try:
                d.wait_prebuild()  # before close(): the build holds the release-build turn and reads the project
            finally:
                d.close()
                d.unlabel()
                d.park_images()


@pytest.fixture
def at(deployment):
    """at(sha, https="on"): the deployment made to serve sha with sha's migrations and every replica
    running (deployed, rolled back, or started afresh as needed); returns it."""
    return deployment.bring_to


@pytest.fixture
def live(at):
    """The deployment serving SHA1 over HTTPS with migration V1: where most tests start."""
    return at(SHA1)


@pytest.fixture
def monitoring(live):
    """The result of `script/monitoring up` next to the live stack (idempotent; removed with the stacks)."""
    return live.script("monitoring", "up")


@pytest.fixture
def surviving_note(live):
    """A row the test adds to notes; deleted afterwards so other tests see the table as they left it."""
    title = "survives"
    live.sql(f"INSERT INTO notes (title, body, published) VALUES ('{title}', 'x', true)")
    yield title
    until(lambda: live.sql(f"DELETE FROM notes WHERE title = '{title}'"), 120, f"postgres to delete the row {title!r}")
