"""Every supported combination rendered once per process, and the distinct
variants a check must see: combinations whose files that check reads differ."""

import atexit
import hashlib
import re
import shutil
from functools import cache

from harness import reaper
from harness.bake import bake
from harness.combinations import SUPPORTED, combo_id


@cache
def rendered():
    """(combination, project) for every supported combination, rendered once per process."""
    base = reaper.owned_temp_dir("variants")
    atexit.register(shutil.rmtree, base, ignore_errors=True)
    return [(combo, bake(base / combo_id(combo), **combo)) for combo in SUPPORTED]


def digest(project, relpaths):
    h = hashlib.sha256()
    for rel in relpaths:
        path = project / rel
        h.update(rel.encode())
        h.update(path.read_bytes() if path.is_file() else b"<absent>")
    return h.hexdigest()


def rels(project, *patterns):
    """Relative paths of the project's files matching glob patterns."""
    return [str(p.relative_to(project)) for pattern in patterns for p in project.glob(pattern) if p.is_file()]


def unique_variants(patterns, when):
    """[(combo, project)] whose files matching patterns differ, among combinations matching `when`."""
    seen, chosen = set(), []
    for combo, project in rendered():
        if any(combo.get(k) != v for k, v in when.items()):
            continue
        key = digest(project, sorted(rels(project, *patterns)))
        if key not in seen:
            seen.add(key)
            chosen.append((combo, project))
    return chosen


# The stages a Lucky release compile is made in: Dockerfile's `base` (shards, the healthcheck), then Dockerfile.prod's
# `build` (the app and lucky_tasks). A COPY line (not --from) of either is one of its inputs.
COMPILE_STAGES = {"Docker/lucky/Dockerfile": "base", "Docker/lucky/Dockerfile.prod": "build"}
STAGE = re.compile(r"^FROM\s+\S+(?:\s+AS\s+(\S+))?", re.I)
COPY = re.compile(r"^COPY\s+(?!--from)(.+)$", re.I)


def compile_inputs(project):
    """The project's files a release compile reads, relative: both Dockerfiles and what their compile stages COPY
    (a COPY's last word is its destination; a source is a file, a folder, or a glob such as shard.loc[k])."""
    found = set(COMPILE_STAGES)
    for dockerfile, stage in COMPILE_STAGES.items():
        current = None
        for line in (project / dockerfile).read_text().splitlines():
            if start := STAGE.match(line):
                current = start.group(1)
            elif current == stage and (copy := COPY.match(line)):
                for source in copy.group(1).split()[:-1]:
                    found.update(rels(project, source, f"{source}/**/*"))
    return sorted(found)


def compile_digest(project):
    """One digest of every release compile input, names and contents: two projects with the same digest make the
    same compile, which the engine's layer cache then holds once."""
    return digest(project, compile_inputs(project))
