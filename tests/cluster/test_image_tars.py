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
from harness.cluster_nodes import NODE_IMAGE, Cluster, build_images, saved_images, seeded_store
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


def seed_volumes():
    return set(docker("volume", "ls", "-q", "--filter", f"label={cluster_nodes.SEED_LABEL}").stdout.split())


def test_nodes_start_with_a_seed_made_once_and_load_only_what_they_lack(tmp_path, monkeypatch):
    """Two clusters asking for the same seed at once: one throwaway node makes it, every node of both starts with the
    image (and local networks of its own); `load` then sends a node only the images it lacks."""
    build_images()
    monkeypatch.setenv(cluster_nodes.IMAGE_TARS, str(tmp_path / "tars"))
    name, other = f"{unique('lhd-seed')}:t", f"{unique('lhd-seed')}:t"
    ids = [tiny_image(name, "seeded", tmp_path), tiny_image(other, "loaded", tmp_path)]
    real_docker, real_saved, makers, saved = cluster_nodes.docker, cluster_nodes.saved_images, [], []

    def counting(*args, **kw):
        if args[0] == "run" and any(str(a).startswith("lhd-seed-maker") for a in args):
            makers.append(args)
        return real_docker(*args, **kw)
    monkeypatch.setattr(cluster_nodes, "docker", counting)
    before = seed_volumes()
    clusters = [Cluster(tmp_path / "one", workers=1, seed=[name]), Cluster(tmp_path / "two", workers=0, seed=[name])]
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda c: c.start(), clusters))
        assert len(makers) == 1, makers
        nodes = [(c, node) for c in clusters for node in c.nodes]
        for c, node in nodes:
            assert c.docker_on(node, "image", "inspect", "--format", "{{.Id}}", name).stdout.strip() == ids[0], node
        bridges = {c.docker_on(node, "network", "inspect", "--format", "{{.Id}}", "bridge").stdout for c, node in nodes}
        assert len(bridges) == len(nodes)

        monkeypatch.setattr(cluster_nodes, "saved_images", lambda images, d: saved.append(images) or real_saved(images, d))
        one = clusters[0]
        one.load([name, other], one.nodes)
        assert saved == [[other]]
        for node in one.nodes:
            assert one.docker_on(node, "image", "inspect", "--format", "{{.Id}}", other).stdout.strip() == ids[1]
    finally:
        for c in clusters:
            c.close()
        docker("volume", "rm", "-f", *(seed_volumes() - before), check=False)
        docker("image", "rm", "--force", *ids, check=False)


def test_a_seed_cut_short_leaves_nothing_and_the_next_ask_makes_it_whole(tmp_path, monkeypatch):
    """The throwaway node's `docker load` dying half-way leaves no seed volume, no mark and no node; the next ask
    makes a whole seed; unused for two days, it is removed by the next seed made."""
    build_images()
    tars = tmp_path / "tars"
    monkeypatch.setenv(cluster_nodes.IMAGE_TARS, str(tars))
    name = f"{unique('lhd-seed')}:t"
    image = tiny_image(name, "cut", tmp_path)
    real_run = cluster_nodes.run

    def killed(argv, **kw):
        if argv[-2:] == ["load", "-q"]:
            raise RuntimeError("docker load: killed")
        return real_run(argv, **kw)
    before = seed_volumes()
    try:
        monkeypatch.setattr(cluster_nodes, "run", killed)
        with pytest.raises(RuntimeError, match="killed"):
            seeded_store([name])
        assert seed_volumes() == before
        assert list(tars.glob("seed-*.done")) == []
        assert docker("ps", "-aq", "--filter", "name=lhd-seed-maker", "--filter",
                      f"label={reaper.RUN}={reaper.RUN_ID}").stdout.split() == []

        monkeypatch.setattr(cluster_nodes, "run", real_run)
        volume = seeded_store([name])
        assert seed_volumes() - before == {volume}
        store = docker("run", "--rm", "--entrypoint", "ls", "-v", f"{volume}:/seed:ro", NODE_IMAGE,
                       "/seed/image/overlay2/imagedb/content/sha256").stdout.split()
        assert image.split(":")[1] in store
        assert not docker("run", "--rm", "--entrypoint", "ls", "-v", f"{volume}:/seed:ro", NODE_IMAGE,
                          "/seed").stdout.count("network")

        done = next(tars.glob("seed-*.done"))
        old = time.time() - 3 * 24 * 3600  # beyond the two days
        os.utime(done, (old, old))
        cluster_nodes.prune_seeds(tars, keep="another")
        assert seed_volumes() == before and not done.exists()
    finally:
        docker("volume", "rm", "-f", *(seed_volumes() - before), check=False)
        docker("image", "rm", "--force", image, check=False)
