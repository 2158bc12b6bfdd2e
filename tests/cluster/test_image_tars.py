"""The `docker save` files nodes load images from (harness/cluster_nodes.py `saved_images`): one per set of images
and ids, written once whoever asks (in this run or a later one on the machine), whole or not at all, a new one when a
name points at another image, and removed when no run has asked for it in two days."""

import fcntl
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

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
        written = first.stat().st_ino
        assert saved_images([name], tars) == first and first.stat().st_ino == written and len(saves) == 1
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


def test_a_save_cut_short_leaves_no_set_and_the_next_ask_saves_it_whole(tmp_path, monkeypatch):
    """`docker save` dying half-way (a killed run, a full disk) leaves no images-*.tar for a later run to load; the
    next ask saves again, and that file loads."""
    real = cluster_nodes.docker

    def cut_short(*args, **kw):
        if args[0] == "save":
            real(*args, **kw)
            with open(args[2], "r+b") as half:  # what a save killed half-way leaves behind
                half.truncate(half.seek(0, 2) // 2)
            raise RuntimeError("docker save: killed")
        return real(*args, **kw)
    name = f"{unique('lhd-tars')}:t"
    image = tiny_image(name, "whole", tmp_path)
    tars = tmp_path / "tars"
    try:
        monkeypatch.setattr(cluster_nodes, "docker", cut_short)
        with pytest.raises(RuntimeError, match="killed"):
            saved_images([name], tars)
        assert list(tars.glob("*.tar")) == []
        monkeypatch.setattr(cluster_nodes, "docker", real)
        tar = saved_images([name], tars)
        docker("image", "rm", name)
        docker("load", "-q", "-i", str(tar))
        assert docker("image", "inspect", "--format", "{{.Id}}", name).stdout.strip() == image
    finally:
        docker("image", "rm", "--force", image, check=False)


def test_a_new_save_removes_only_the_sets_unused_for_two_days(tmp_path, monkeypatch):
    """Saving a new set removes the sets (and saves cut short) nobody asked for in TARS_KEPT_FOR; a set saved long ago
    but asked for since, a set used lately, and an old one whose lock an asker holds (about to mark it used) stay;
    so do the lock files."""
    monkeypatch.setattr(cluster_nodes, "docker", lambda *args, **kw: (
        Path(args[2]).write_text("tar") if args[0] == "save" else
        subprocess.CompletedProcess(args, 0, stdout="sha256:" + "1" * 64 + "\n", stderr="")))
    tars = tmp_path / "tars"
    tars.mkdir()
    old = time.time() - 3 * 24 * 3600  # beyond the two days
    asked = saved_images(["lhd-tars-asked:t"], tars)  # saved two days ago, asked for again today
    os.utime(asked, (old, old))
    files = {name: tars / name for name in ("images-old.tar", "images-oldpart.part", "images-recent.tar",
                                            "images-held.tar")}
    for path in files.values():
        path.write_text("x")
        os.utime(path, (old, old))
    os.utime(files["images-recent.tar"])
    assert saved_images(["lhd-tars-asked:t"], tars) == asked
    with open(tars / "images-held.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        new = saved_images(["lhd-tars-new:t"], tars)
    assert new.read_text() == "tar"
    assert sorted(p.name for p in tars.glob("images-*.*") if p.suffix != ".lock") == sorted(
        [new.name, asked.name, "images-recent.tar", "images-held.tar"])
    assert (tars / "images-old.lock").exists()
