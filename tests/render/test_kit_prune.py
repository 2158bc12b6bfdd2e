"""The kit's prune (kit.kit.prune) removes only old tags of the repositories this checkout builds: an image of a
repository it does not know belongs to another checkout on the same engine (a branch adding a kit image), and
removing it broke that checkout's runs."""

from harness.docker import fake_docker
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
