"""Every supported combination rendered once per process, and the distinct
variants a check must see: combinations whose files that check reads differ."""

import atexit
import hashlib
import shutil
import tempfile
from functools import cache
from pathlib import Path

from harness.bake import bake
from harness.combinations import SUPPORTED, combo_id


@cache
def rendered():
    """(combination, project) for every supported combination, rendered once per process."""
    base = Path(tempfile.mkdtemp(prefix="lhd-variants-"))
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
