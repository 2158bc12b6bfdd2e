"""The offsite service's retention around a recovery (issue 23's drill): the service's loop
(Docker/backup/offsite `schedule`) with real restic on a local repository, in the image the stack runs.

On a server rebuilt from the store, the service's first dumps are of an empty database; the retention keeps the
newest snapshot of each day, so a prune at once could drop the snapshot the recovery is about to restore. The
first prune waits a whole interval when none is recorded; a recorded one keeps its rhythm.
"""

import pytest

from harness import reaper
from harness.docker import docker
from harness.server import upstream_image

RUN_FOR = 6  # seconds of the loop: several rounds at OFFSITE_POLL=1


def status_after_a_while(project, tmp_path, status=None):
    """The status file after the service's loop ran RUN_FOR seconds over an empty backups directory, starting
    from status (the status file's text, or none)."""
    backups, repo = tmp_path / "backups", tmp_path / "repo"
    backups.mkdir()
    repo.mkdir()
    password = tmp_path / "offsite_password"
    password.write_text("drill-password\n")
    if status is not None:
        (backups / ".offsite-status").write_text(status)
    docker("run", "--rm", *reaper.label_args(), "-v", f"{backups}:/backups", "-v", f"{repo}:/repo",
           "-v", f"{password}:/run/secrets/offsite_password:ro",
           "-v", f"{project / 'Docker/backup/offsite'}:/usr/local/bin/offsite:ro",
           "-e", "RESTIC_REPOSITORY=/repo", "-e", "RESTIC_PASSWORD_FILE=/run/secrets/offsite_password",
           "-e", "OFFSITE_POLL=1", "-e", "PGDATABASE=lhd_app_production",
           "--entrypoint", "sh", upstream_image("restic/restic"),
           "-c", f"timeout {RUN_FOR} offsite schedule || true", timeout=120)
    text = (backups / ".offsite-status").read_text() if (backups / ".offsite-status").exists() else ""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@pytest.fixture
def project(default_project, image_mode):
    return default_project


def test_a_new_server_does_not_prune_at_once(project, tmp_path):
    """No prune recorded (a new server): the loop runs rounds but no prune."""
    status = status_after_a_while(project, tmp_path)
    assert (tmp_path / "repo/config").exists(), "the loop reached the repository"
    assert "last_prune" not in status, status


def test_a_recorded_prune_keeps_its_rhythm(project, tmp_path):
    """A prune recorded more than an interval ago: the loop prunes in its first round and records when."""
    status = status_after_a_while(project, tmp_path, "last_prune=1970-01-01T00:00:01Z\nlast_prune_epoch=1\n")
    assert status["last_prune"] != "1970-01-01T00:00:01Z" and int(status["last_prune_epoch"]) > 1, status
