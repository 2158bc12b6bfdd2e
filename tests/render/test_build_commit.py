"""script/build tags images with a commit SHA, so in a git checkout it builds only that commit: HEAD, with
nothing changed (the generated-README review found `script/build SHA` built the working tree and only named it
SHA). A `docker` stand-in records what would be built, and keeps each build context it is handed on stdin; nothing
reaches an engine."""

import os
import shutil
import stat
import tarfile

import pytest

from harness.proc import run
from harness.upgrade import git

FAKE_DOCKER = '#!/bin/sh\necho "$*" >> "{log}"\ncase "$*" in "build "*" -") cat > "{log}.$$.tar" ;; esac\n'


@pytest.fixture
def checkout(default_project, tmp_path):
    """The default project as a git repository with two commits; returns (path, first SHA8, HEAD SHA8)."""
    project = tmp_path / "project"
    shutil.copytree(default_project, project, symlinks=True)
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "first")
    first = git(project, "rev-parse", "--short=8", "HEAD")
    (project / "NOTES.md").write_text("a second commit\n")
    git(project, "add", "NOTES.md")
    git(project, "commit", "-qm", "second")
    return project, first, git(project, "rev-parse", "--short=8", "HEAD")


def build(project, tmp_path, *args):
    """script/build ARGS with the docker stand-in; returns (result, the docker command lines)."""
    log = tmp_path / "docker.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "docker").write_text(FAKE_DOCKER.format(log=log))
    (bin_dir / "docker").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = run([project / "script/build", *args], check=False, cwd=project, env=env, timeout=60)
    return result, log.read_text().splitlines() if log.exists() else []


def test_the_context_is_the_commit_with_gits_modes(checkout, tmp_path):
    """A checkout made world-writable as GitLab Runner's umask 0000 leaves it (gitlab-ci-local 4.56.0 src/job.js:
    `chmod a+rw -R`), with an ignored .env beside: every build's context is the commit on stdin (git archive), its
    tracked files only, 0644 or 0755; so no image holds a file its app user could rewrite, and the cache key of
    each COPY is the one a workstation's build of the commit has."""
    project, _, head = checkout
    (project / ".env").write_text("SECRET=1\n")
    run(["chmod", "-R", "a+rw", project])
    result, docker = build(project, tmp_path)
    assert result.returncode == 0, result.stderr
    builds = [line for line in docker if line.startswith("build")]
    assert len(builds) == 3 and all(line.endswith(" -") for line in builds), builds
    contexts = sorted(tmp_path.glob("docker.log.*.tar"))
    assert len(contexts) == 3, contexts
    tracked = set(git(project, "ls-files").split())
    for context in contexts:
        with tarfile.open(context) as tar:
            members = [m for m in tar.getmembers() if m.name != "pax_global_header"]
        assert {m.name for m in members if m.isfile()} == tracked - {name for name in tracked
                                                                     if (project / name).is_symlink()}
        modes = {m.name: stat.S_IMODE(m.mode) for m in members if not m.issym()}
        assert set(modes.values()) <= {0o644, 0o755}, {n: oct(m) for n, m in modes.items() if m not in (0o644, 0o755)}
        assert modes["script/docker/with_secrets"] == 0o755 and modes["src/app.cr"] == 0o644


def test_head_of_a_clean_checkout_is_built_under_its_sha(checkout, tmp_path):
    project, _, head = checkout
    for args in ([], [head]):
        result, docker = build(project, tmp_path, *args)
        assert result.returncode == 0, result.stderr
        assert [line.split(" -t ")[1].split()[0] for line in docker if line.startswith("build")][-3:] == [
            f"{image}:{head}" for image in ("registry.gitlab.com/my-group/lhd-app/lucky-base",
                                            "registry.gitlab.com/my-group/lhd-app/lucky",
                                            "registry.gitlab.com/my-group/lhd-app/hasura")]


def test_another_commit_is_refused(checkout, tmp_path):
    """The older commit's SHA while HEAD is checked out: one line, nothing built."""
    project, first, head = checkout
    result, docker = build(project, tmp_path, first)
    assert result.returncode == 1 and docker == []
    assert result.stderr.splitlines() == [
        f"✖ script/build builds the working tree, which is {head} (HEAD), not {first}: git checkout {first} first; "
        "nothing was built"]


@pytest.mark.parametrize("change", ["edited", "staged", "untracked"])
def test_a_changed_tree_is_refused(checkout, tmp_path, change):
    """An edit, a staged file or an untracked one would end up in images named after a commit without it."""
    project, _, head = checkout
    if change == "edited":
        (project / "NOTES.md").write_text("edited\n")
    else:
        (project / "db/migrations/20990101000000_later.cr").write_text("# not committed\n")
        if change == "staged":
            git(project, "add", "db/migrations")
    result, docker = build(project, tmp_path)
    assert result.returncode == 1 and docker == []
    assert result.stderr.splitlines() == [
        f"✖ the working tree has changes (git status): images tagged {head} would not be that commit; commit or "
        "stash them first; nothing was built"]


def test_outside_a_checkout_the_sha_is_needed(default_project, tmp_path):
    """An exported tree (no .git of its own) has no HEAD: the SHA must be given."""
    project = tmp_path / "export"
    shutil.copytree(default_project, project, symlinks=True)
    result, docker = build(project, tmp_path)
    assert result.returncode == 1 and docker == []
    assert result.stderr.splitlines() == [
        f"✖ {project} is not a git checkout: give the SHA to tag the images with; nothing was built"]
    result, docker = build(project, tmp_path, "aaaa1111")
    assert result.returncode == 0, result.stderr
    assert len([line for line in docker if line.startswith("build")]) == 3
