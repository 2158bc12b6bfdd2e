"""A render leaves nothing in the temp dir (harness/bake.py `run_script_then_remove_its_copy`)."""

import tempfile

from harness.bake import bake


def test_a_render_leaves_no_rendered_hook_in_the_temp_dir(tmp_path, monkeypatch):
    """cookiecutter renders each hook into a file of the temp dir and runs it; after a render none is left there."""
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    project = bake(tmp_path / "out")
    assert (project / "script/deploy").is_file()
    assert sorted(p.name for p in private.iterdir()) == []
