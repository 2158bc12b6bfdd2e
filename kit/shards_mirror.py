"""A git mirror of Lucky's shards, for the kit's real Crystal toolchain image.

These machines cannot reach GitHub, so the kit serves the real upstream shard
sources from a local directory and points git at it (`url.<mirror>.insteadOf
https://github.com/`). The generated Dockerfiles then run unchanged: `shards
install`, `git clone https://github.com/luckyframework/lucky_cli`, and
`shard.lock` still records the GitHub URLs.

Where the sources come from, first match wins:
  LHD_SHARDS_MIRROR=DIR   either a cache laid out like ../shared/shards
                          (MANIFEST.tsv + one `git archive` tar.gz per tag),
                          or a directory of bare git repositories at
                          lowercased `<owner>/<name>.git` paths (e.g. made
                          with `git clone --mirror` on a connected machine)
  <repo>/../shared/shards the workplace's offline cache

Facts this follows (measured with shards 0.20 and Crystal 1.21, recorded in
shared/shards/README.md): shards lowercases `github:` paths and appends
`.git`; one hole remains: lucky 1.5.0 asks for cry ~> 0.4.3 and the newest
cry that can be had is 0.4.2, so the kit sets SHARDS_OVERRIDE (a variable
the real shards reads) to accept ~> 0.4.2, and says so in its report. 0.4.2
is never tagged as 0.4.3.
"""

import csv
import hashlib
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from harness.proc import run

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = ROOT.parent / "shared" / "shards"
ENV_VAR = "LHD_SHARDS_MIRROR"
# Crystal's shard override format (shards' `SHARDS_OVERRIDE`, src/config.cr
# in crystal-lang/shards v0.20): same schema as shard.yml's dependencies.
OVERRIDE = """\
# Written by the LHD test kit: lucky 1.5.0 requires cry ~> 0.4.3, and the
# newest cry in the offline shards cache is 0.4.2.
dependencies:
  cry:
    github: luckyframework/cry
    version: "~> 0.4.2"
"""
GIT_ENV = {"GIT_AUTHOR_NAME": "lhd-kit", "GIT_AUTHOR_EMAIL": "kit@lhd.invalid",
           "GIT_COMMITTER_NAME": "lhd-kit", "GIT_COMMITTER_EMAIL": "kit@lhd.invalid",
           "GIT_AUTHOR_DATE": "2000-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2000-01-01T00:00:00Z"}


class MirrorMissing(RuntimeError):
    """No shards source: local mode cannot build the real Lucky app."""


def source():
    """The directory the shards come from; raise MirrorMissing in one line when there is none."""
    named = os.environ.get(ENV_VAR)
    if named:
        path = Path(named).expanduser()
        if not path.is_dir():
            raise MirrorMissing(f"{ENV_VAR}={named} is not a directory: point it at a shards cache or git mirror")
        return path
    if DEFAULT_CACHE.is_dir():
        return DEFAULT_CACHE
    raise MirrorMissing(f"local mode needs Lucky's shards and no registry answers: set {ENV_VAR} to a shards "
                        f"cache or git mirror directory (none at {DEFAULT_CACHE})")


def manifest(cache):
    """Rows of MANIFEST.tsv: repo, ref, commit, archive."""
    with open(cache / "MANIFEST.tsv", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def fingerprint(src):
    """A short hash of what the mirror is made from (file names, sizes and manifest)."""
    h = hashlib.sha256(OVERRIDE.encode())
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        h.update(f"{path.relative_to(src)}:{path.stat().st_size}\n".encode())
    if (src / "MANIFEST.tsv").is_file():
        h.update((src / "MANIFEST.tsv").read_bytes())
    return h.hexdigest()[:16]


def _git(repo, *args):
    return run(["git", "-C", str(repo), *args], env=dict(os.environ, **GIT_ENV))


def build_from_cache(cache, dest):
    """One bare repository per upstream repo (lowercased path), one commit per ref, tagged or branched as upstream."""
    rows = manifest(cache)
    by_repo = {}
    for row in rows:
        by_repo.setdefault(row["repo"], []).append(row)
    for repo, refs in by_repo.items():
        bare = dest / f"{repo.lower()}.git"
        run(["git", "init", "--quiet", "--bare", str(bare)])
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp) / "work"
            run(["git", "init", "--quiet", str(work)])
            for row in refs:
                for child in work.iterdir():
                    if child.name != ".git":
                        shutil.rmtree(child) if child.is_dir() else child.unlink()
                with tarfile.open(cache / row["archive"]) as archive:
                    archive.extractall(work, filter="tar")
                _git(work, "add", "--all", "--force")
                _git(work, "commit", "--quiet", "--allow-empty", "-m", f"{repo} {row['ref']} (upstream {row['commit']})")
                commit = _git(work, "rev-parse", "HEAD").stdout.strip()
                kind = "tags" if row["ref"].startswith("v") else "heads"
                _git(work, "update-ref", f"refs/{kind}/{row['ref']}", commit)
                _git(work, "checkout", "--quiet", "--detach", commit)
            _git(work, "push", "--quiet", str(bare), "refs/tags/*:refs/tags/*", "refs/heads/*:refs/heads/*")
        # HEAD: the branch if the cache has one, else master at the newest tag (MANIFEST lists newest first).
        branches = [r["ref"] for r in refs if not r["ref"].startswith("v")]
        if branches:
            _git(bare, "symbolic-ref", "HEAD", f"refs/heads/{branches[0]}")
        else:
            _git(bare, "update-ref", "refs/heads/master", f"refs/tags/{refs[0]['ref']}^{{commit}}")
            _git(bare, "symbolic-ref", "HEAD", "refs/heads/master")


def materialize(dest):
    """Make the git mirror at dest (skipped when its fingerprint is current); return a report line."""
    src = source()
    stamp = fingerprint(src)
    marker = dest / ".lhd-fingerprint"
    if marker.is_file() and marker.read_text() == stamp:
        return describe(src)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    if (src / "MANIFEST.tsv").is_file():
        build_from_cache(src, dest)
    else:
        shutil.copytree(src, dest, dirs_exist_ok=True, symlinks=True)
    (dest / "shard.override.yml").write_text(OVERRIDE)
    marker.write_text(stamp)
    return describe(src)


def describe(src):
    """The report line naming the mirror and the override."""
    return (f"shards from {src} (git insteadOf https://github.com/), with SHARDS_OVERRIDE "
            f"cry ~> 0.4.2: lucky 1.5.0 asks for cry ~> 0.4.3, which the cache does not have")
