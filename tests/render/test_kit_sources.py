"""The kit's shards mirror and local mode's one-line refusal, and overlapping runs taking turns at the kit's
inputs, without Docker."""

import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.combinations import ROOT
from harness.proc import run
from kit import kit, shards_mirror


def test_local_mode_without_any_shards_source_stops_naming_the_variable(monkeypatch, tmp_path):
    """No LHD_SHARDS_MIRROR and no ../shared/shards: local mode refuses in one line naming LHD_SHARDS_MIRROR."""
    monkeypatch.delenv("LHD_SHARDS_MIRROR", raising=False)
    monkeypatch.setattr(shards_mirror, "DEFAULT_CACHE", tmp_path / "absent")
    with pytest.raises(shards_mirror.MirrorMissing) as refused:
        kit.resolve_mode("local")
    message = str(refused.value)
    assert "LHD_SHARDS_MIRROR" in message and "\n" not in message


def test_named_mirror_that_is_not_a_directory_is_refused(monkeypatch, tmp_path):
    """LHD_SHARDS_MIRROR pointing nowhere is refused, naming the variable and the path."""
    monkeypatch.setenv("LHD_SHARDS_MIRROR", str(tmp_path / "nowhere"))
    with pytest.raises(shards_mirror.MirrorMissing, match=r"LHD_SHARDS_MIRROR=.*nowhere is not a directory"):
        shards_mirror.source()


def test_kit_command_prints_one_line_and_exits_non_zero(tmp_path):
    """`python -m kit.kit mode` with no shards source ends with one `kit:` line on stderr."""
    env = {"PATH": "/usr/bin:/bin", "LHD_IMAGE_MODE": "local", "LHD_SHARDS_MIRROR": str(tmp_path / "nowhere"),
           "HOME": str(tmp_path)}
    result = run([sys.executable, "-m", "kit.kit", "mode"], cwd=ROOT, env=env, check=False, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [f"kit: LHD_SHARDS_MIRROR={tmp_path / 'nowhere'} is not a directory: "
                                                  "point it at a shards cache or git mirror"]


def fake_cache(base):
    """A two-tag cache of one repository with a mixed-case owner, in MANIFEST.tsv layout."""
    rows = ["repo\tref\tcommit\tarchive"]
    for ref, text in (("v0.2.0", "newer"), ("v0.1.0", "older")):
        src = base / "src" / ref
        src.mkdir(parents=True)
        (src / "shard.yml").write_text(f"name: demo\nversion: {ref[1:]}\n# {text}\n")
        archive = base / "Owner" / "demo" / f"{ref}.tar.gz"
        archive.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(src / "shard.yml", arcname="shard.yml")
        rows.append(f"Owner/demo\t{ref}\t{'0' * 40}\tOwner/demo/{ref}.tar.gz")
    (base / "MANIFEST.tsv").write_text("\n".join(rows) + "\n")
    return base


def test_mirror_from_a_cache_has_lowercased_repos_tags_and_head(monkeypatch, tmp_path):
    """Each cache repo becomes a bare repo at its lowercased path, every ref a tag, HEAD at the newest."""
    monkeypatch.setenv("LHD_SHARDS_MIRROR", str(fake_cache(tmp_path / "cache")))
    line = shards_mirror.materialize(tmp_path / "mirror")
    bare = tmp_path / "mirror" / "owner" / "demo.git"
    assert "SHARDS_OVERRIDE" in line and "cry ~> 0.4.2" in line
    assert run(["git", "-C", bare, "tag"]).stdout.split() == ["v0.1.0", "v0.2.0"]
    assert "0.2.0" in run(["git", "-C", bare, "show", "HEAD:shard.yml"]).stdout
    assert "0.1.0" in run(["git", "-C", bare, "show", "v0.1.0:shard.yml"]).stdout
    assert "cry" in (tmp_path / "mirror" / "shard.override.yml").read_text()


def test_mirror_is_rebuilt_only_when_its_source_changes(monkeypatch, tmp_path):
    """A second materialize with the same source keeps the mirror; a changed manifest rebuilds it."""
    cache = fake_cache(tmp_path / "cache")
    monkeypatch.setenv("LHD_SHARDS_MIRROR", str(cache))
    mirror = tmp_path / "mirror"
    shards_mirror.materialize(mirror)
    marker = mirror / "owner" / "demo.git" / "kept"
    marker.write_text("x")
    shards_mirror.materialize(mirror)
    assert marker.exists()
    (cache / "MANIFEST.tsv").write_text((cache / "MANIFEST.tsv").read_text().replace("v0.1.0\t", "v0.1.0\t", 1) + "\n")
    shards_mirror.materialize(mirror)
    assert not marker.exists()


def test_report_names_a_stand_in_compiler(monkeypatch):
    """When the kit's compiler is not the pinned release, the image-mode report says which stands in for which."""
    monkeypatch.setattr(kit, "toolchain_versions", lambda: ["Crystal 1.21.0 (2026-08-18)", "Shards 0.20.0"])
    monkeypatch.setitem(kit.PINS, "_crystal_version", "1.19.0")
    lines = kit.report("local")
    assert any("a 1.21.0 compiler stands in for the pinned 1.19.0" in line for line in lines)
    assert any("SHARDS_OVERRIDE" in line for line in lines)


def test_overlapping_runs_fetch_the_kit_inputs_in_turn(monkeypatch):
    """The lanes' first steps start at once on a fresh clone: their fetches of the kit's inputs (the shards mirror
    among them) run one after another, never side by side."""
    inside, entered = [], []

    def fetch():
        inside.append(1)
        entered.append(len(inside))
        time.sleep(0.2)
        inside.pop()
        return "mirror"
    monkeypatch.setattr(kit, "_fetch_inputs", fetch)
    with ThreadPoolExecutor(3) as pool:
        assert list(pool.map(lambda _: kit.fetch_inputs(), range(3))) == ["mirror"] * 3
    assert entered == [1, 1, 1]
