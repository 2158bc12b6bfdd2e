"""The kit's prune (kit.kit.prune) removes only old tags of the repositories this checkout builds: an image of a
repository it does not know belongs to another checkout on the same engine (a branch adding a kit image), and
removing it broke that checkout's runs."""

import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from harness.docker import fake_docker, turn
from kit import kit


def test_prune_keeps_other_checkouts_images_and_removes_old_tags_of_its_own(tmp_path, monkeypatch):
    postgres = next(i.name for i in kit.images() if i.name.startswith("lhd-kit/postgres:"))
    listed = [postgres, "lhd-kit/postgres:0.1", "lhd-kit/some-other-branch:1.0", "someone/else:1"]
    log = tmp_path / "docker.log"
    env = fake_docker(tmp_path, f'echo "$*" >> {log}\n'
                                f'[ "$1 $2" = "image ls" ] && printf "%s\\n" {" ".join(listed)}\nexit 0\n')
    monkeypatch.setenv("PATH", env["PATH"])
    assert kit.prune() == ["lhd-kit/postgres:0.1"]
    removed = [line.split()[-1] for line in log.read_text().splitlines() if line.startswith("image rm")]
    assert removed == ["lhd-kit/postgres:0.1"]


def test_prune_leaves_the_projects_build_cache(tmp_path, monkeypatch):
    """No `docker image prune` by the kit's label: an image built FROM a kit image inherits the label, so the untagged
    compile stage of every release build would go with it, and each session would compile Lucky again."""
    log = tmp_path / "docker.log"
    env = fake_docker(tmp_path, f'echo "$*" >> {log}\nexit 0\n')
    monkeypatch.setenv("PATH", env["PATH"])
    kit.prune()
    assert [line for line in log.read_text().splitlines() if "prune" in line] == []


def test_a_rebuild_removes_the_build_it_supersedes(tmp_path, monkeypatch):
    """A kit image whose inputs changed is built again, and the image it replaces is removed by its id."""
    image = next(i for i in kit.images() if i.name.startswith("lhd-kit/postgres:"))
    log = tmp_path / "docker.log"
    env = fake_docker(tmp_path, f'echo "$*" >> {log}\n'
                                'case "$*" in *"{{.Id}}"*) echo sha256:0ld ;; *Labels*) echo stale-hash ;; esac\n')
    monkeypatch.setenv("PATH", env["PATH"])
    assert kit.build_image(image, "parent-hash")[1] is True
    calls = log.read_text().splitlines()
    assert calls[-1] == "image rm sha256:0ld"
    assert any(c.startswith("build ") and image.name in c for c in calls)


def test_overlapping_runs_build_a_stale_kit_image_once(tmp_path, monkeypatch):
    """Two runs that find the same kit image stale at once (the lanes of harness/lanes.py) build it once: the second
    waits for the first's turn (harness/docker.py `turn`) and then finds the image current."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the lock files of this test only
    image = next(i for i in kit.images() if i.name.startswith("lhd-kit/postgres:"))
    label, log = tmp_path / "label", tmp_path / "docker.log"
    label.write_text("stale-hash\n")
    # The fake engine answers the image's hash label from a file, which its build (slow enough to overlap) writes.
    script = (f'echo "$*" >> {log}\n'
              'case "$*" in\n'
              f'  *Labels*) cat {label} ;;\n'
              f'  build*) sleep 1; for a in "$@"; do case "$a" in {kit.LABEL}=*) echo "${{a#*=}}" > {label} ;; esac; done ;;\n'
              'esac\n')
    monkeypatch.setenv("PATH", fake_docker(tmp_path, script)["PATH"])
    with ThreadPoolExecutor(2) as pool:
        built = sorted(flag for _, flag in pool.map(lambda _: kit.build_image(image, "parent-hash"), range(2)))
    assert built == [False, True]
    assert len([c for c in log.read_text().splitlines() if c.startswith("build ")]) == 1


def test_a_turn_is_held_by_one_holder_at_a_time(tmp_path, monkeypatch):
    """turn(name): a second holder enters only when the first has left."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    events = []

    def hold(who):
        with turn("test"):
            events.append(f"{who} in")
            time.sleep(0.2)
            events.append(f"{who} out")
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(hold, "ab"))
    assert events[0].endswith(" in") and events[1] == events[0].replace(" in", " out"), events
