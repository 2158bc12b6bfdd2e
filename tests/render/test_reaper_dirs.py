"""The temp directories a run's containers use on this host (harness/reaper.py `owned_temp_dir`: the ACME node's
engine socket, Pebble's files, the rendered variants) carry their owner's pid, and a later session removes those of
a run that was killed (`reap_stale_dirs`), never a live run's or anything else in the temp directory."""

import os

from harness import acme, reaper, variants


def test_a_dead_owners_directories_go_and_a_live_owners_and_strangers_stay(tmp_path):
    dead = reaper.dead_pid()
    gone = [reaper.owned_temp_dir(purpose, owner=dead, base=tmp_path) for purpose in ("acme", "pebble")]
    (gone[0] / "docker.sock").write_text("")  # what a killed run leaves in it
    kept = reaper.owned_temp_dir("acme", base=tmp_path)
    strangers = [tmp_path / "lhd-acme-l1qfkxno", tmp_path / f"lhd-kit-runs-{dead}", tmp_path / "other-pid1-x"]
    for path in strangers:
        path.mkdir()
    named_like_one = tmp_path / f"lhd-acme-pid{dead}-file"
    named_like_one.write_text("")  # a file, not a directory the harness made

    removed = reaper.reap_stale_dirs(tmp_path)

    assert removed == sorted(path.name for path in gone)
    assert not any(path.exists() for path in gone)
    assert kept.is_dir() and all(path.is_dir() for path in strangers) and named_like_one.is_file()


def test_the_directories_that_outlive_a_killed_run_are_owned(monkeypatch, tmp_path):
    """The ACME node's socket directory, Pebble's and the variants' are made by owned_temp_dir, named for this
    process (a plain mkdtemp name, as before, is nothing the reaper could tell a dead run's from)."""
    made = []
    real = reaper.owned_temp_dir

    def recording(purpose, owner=None, base=None):
        path = real(purpose, owner, base or tmp_path)
        made.append(path)
        return path

    monkeypatch.setattr(reaper, "owned_temp_dir", recording)
    acme.Pebble(validity=60, address="127.0.0.1")
    acme.AcmeNode(tmp_path / "node", tmp_path / "shared")
    monkeypatch.setattr(variants, "bake", lambda *args, **kwargs: None)
    variants.rendered.__wrapped__()
    names = [path.name for path in made]
    assert [name.split("-")[1] for name in names] == ["pebble", "acme", "variants"], names
    assert all(reaper.TEMP_DIR.match(name).group(1) == str(os.getpid()) for name in names), names
