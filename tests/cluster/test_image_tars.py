"""The `docker save` files nodes load images from (harness/cluster_nodes.py `saved_images`): one per set of images
and ids, written once whoever asks, and a new one when a name points at another image."""

import time
from concurrent.futures import ThreadPoolExecutor

from harness import cluster_nodes, reaper
from harness.cluster_nodes import saved_images
from harness.docker import docker, unique


def tiny_image(name, text, workdir):
    """A one-file image FROM scratch named name; its id."""
    context = workdir / unique("ctx")
    context.mkdir()
    (context / "file").write_text(text)
    (context / "Dockerfile").write_text("FROM scratch\nCOPY file /file\n")
    docker("build", "--quiet", *reaper.label_args(), "--label", f"text={text}", "-t", name, str(context))
    return docker("image", "inspect", "--format", "{{.Id}}", name).stdout.strip()


def test_a_set_of_images_is_saved_once_and_again_when_a_name_moves(tmp_path, monkeypatch):
    """Four askers at once get one file, written by one `docker save`; the same name on another image gets a file
    of its own."""
    saves = []

    def slow_save(*args, **kw):  # a save that takes a while, as a gigabyte's does, so that the askers overlap
        if args[0] == "save":
            saves.append(args)
            time.sleep(1)
        return docker(*args, **kw)
    monkeypatch.setattr(cluster_nodes, "docker", slow_save)
    name, ids = f"{unique('lhd-tars')}:t", []
    try:
        first_id = tiny_image(name, "one", tmp_path)
        ids.append(first_id)
        tars = tmp_path / "tars"
        with ThreadPoolExecutor(4) as pool:
            paths = set(pool.map(lambda _: saved_images([name], tars), range(4)))
        assert len(paths) == 1 and len(saves) == 1, (paths, saves)
        first = paths.pop()
        written = first.stat().st_mtime_ns
        assert saved_images([name], tars) == first and first.stat().st_mtime_ns == written
        assert not list(tars.glob("*.part"))

        ids.append(tiny_image(name, "two", tmp_path))
        assert ids[1] != first_id
        second = saved_images([name], tars)
        assert second != first and second.exists() and len(saves) == 2
        docker("image", "rm", name)
        docker("load", "-q", "-i", str(second))
        assert docker("image", "inspect", "--format", "{{index .Config.Labels \"text\"}}", name).stdout.strip() == "two"
    finally:
        docker("image", "rm", "--force", *ids, check=False)
