"""Render the template (cookiecutter, no prompts) for the tiers and the benchmarks."""

import hashlib
import re
import shutil
from pathlib import Path

from cookiecutter.main import cookiecutter

from harness.combinations import ROOT, combo_id

BINARY_SUFFIXES = {".png", ".jpg", ".ico", ".gz", ".zip"}
# What makes the template: a copy of these is a template cookiecutter and cruft can render.
TEMPLATE_PARTS = ["cookiecutter.json", "hooks", "{{cookiecutter.project_name}}"]


def bake(output_dir, template=ROOT, **answers):
    """Render the template without prompts into output_dir; return the project directory."""
    return Path(cookiecutter(str(template), no_input=True, extra_context=answers, output_dir=str(output_dir)))


def text_files(project):
    """Yield every non-binary file of a rendered project."""
    for path in sorted(project.rglob("*")):
        if path.is_file() and path.suffix not in BINARY_SUFFIXES and ".git" not in path.parts:
            yield path


# The stages a Lucky release compile is made in: Dockerfile's `base` (shards, the healthcheck), then Dockerfile.prod's
# `build` (the app and lucky_tasks). A COPY line (not --from) of either is one of its inputs.
COMPILE_STAGES = {"Docker/lucky/Dockerfile": "base", "Docker/lucky/Dockerfile.prod": "build"}
STAGE = re.compile(r"^FROM\s+\S+(?:\s+AS\s+(\S+))?", re.I)
COPY = re.compile(r"^COPY\s+(?!--from)(.+)$", re.I)


def compile_inputs(project):
    """The project's files a release compile reads, relative: both Dockerfiles and what their compile stages COPY
    (a COPY's last word is its destination; a glob such as shard.loc[k] matches what is there)."""
    found = set(COMPILE_STAGES)
    for dockerfile, stage in COMPILE_STAGES.items():
        current = None
        for line in (project / dockerfile).read_text().splitlines():
            if start := STAGE.match(line):
                current = start.group(1)
            elif current == stage and (copy := COPY.match(line)):
                for source in copy.group(1).split()[:-1]:
                    matches = [p for p in project.glob(source)] or [project / source]
                    for path in matches:
                        files = sorted(path.rglob("*")) if path.is_dir() else [path]
                        found.update(str(f.relative_to(project)) for f in files if not f.is_dir())
    return sorted(found)


def compile_digest(project):
    """One digest of every release compile input (compile_inputs), names and contents: two projects with the same
    digest make the same compile, which the engine's layer cache then holds once."""
    h = hashlib.sha256()
    for rel in compile_inputs(project):
        path = project / rel
        h.update(rel.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"<absent>") + b"\0")
    return h.hexdigest()


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
