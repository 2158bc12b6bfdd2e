"""Render the template (cookiecutter, no prompts) for the tiers and the benchmarks."""

import shutil
import tempfile
from pathlib import Path

from cookiecutter import hooks
from cookiecutter.main import cookiecutter

from harness.combinations import ROOT, combo_id

BINARY_SUFFIXES = {".png", ".jpg", ".ico", ".gz", ".zip"}
# What makes the template: a copy of these is a template cookiecutter and cruft can render.
TEMPLATE_PARTS = ["cookiecutter.json", "hooks", "{{cookiecutter.project_name}}"]


_run_script = hooks.run_script


def run_script_then_remove_its_copy(script_path, cwd="."):
    """cookiecutter's hooks.run_script, then the script removed when it is the rendered copy of a hook in the temp
    dir: cookiecutter 2.7.1 renders each hook into NamedTemporaryFile(delete=False) and never removes it
    (cookiecutter/hooks.py, run_script_with_context), which left some 900 files in /tmp per run of this suite.
    The template's own hooks are never in the temp dir."""
    try:
        _run_script(script_path, cwd)
    finally:
        path = Path(script_path)
        if path.parent == Path(tempfile.gettempdir()) and path.name.startswith("tmp"):
            path.unlink(missing_ok=True)


hooks.run_script = run_script_then_remove_its_copy


def bake(output_dir, template=ROOT, **answers):
    """Render the template without prompts into output_dir; return the project directory."""
    return Path(cookiecutter(str(template), no_input=True, extra_context=answers, output_dir=str(output_dir)))


def text_files(project):
    """Yield every non-binary file of a rendered project."""
    for path in sorted(project.rglob("*")):
        if path.is_file() and path.suffix not in BINARY_SUFFIXES and ".git" not in path.parts:
            yield path


class BakeCache:
    """Bake each combination once per test session."""

    def __init__(self, base):
        self.base = base
        self.projects = {}

    def get(self, combo):
        key = combo_id(combo)
        if key not in self.projects:
            out = self.base / key
            if out.exists():
                shutil.rmtree(out)
            self.projects[key] = bake(out, **combo)
        return self.projects[key]


def copy_template(dest):
    """Copy the work tree's template (TEMPLATE_PARTS) into dest, which may exist."""
    dest.mkdir(parents=True, exist_ok=True)
    for part in TEMPLATE_PARTS:
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(source, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, dest / part)
