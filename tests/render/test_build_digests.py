"""script/build --push prints, and with --digests FILE writes, the digest reference of every image it
pushed (review finding M3, first part), read from the image's RepoDigests after the push.

A fake `docker` on PATH records its calls and answers `image inspect` with the RepoDigests a push
leaves: entries of other repositories first (one differs from this registry only where it has dots),
then this registry's.
"""

import hashlib
import os
import sys

from harness.proc import run
from harness.rules.ci_checks import calls, option_values

SHA = "0123abcd"
REGISTRY = "registry.gitlab.com/my-group/lhd-app"
IMAGES = ["lucky-base", "lucky", "hasura"]  # deployed: their digests are printed
PUSHED = ["lucky-base", "lucky-build", "lucky", "hasura"]  # lucky-build: the compile, the next build's cache

FAKE_DOCKER = """#!{python}
import hashlib, json, os, sys
argv = sys.argv[1:]
with open({log!r}, "a") as log:
    log.write(json.dumps({{"name": "docker", "argv": argv, "cwd": os.getcwd()}}) + "\\n")
if argv[:2] == ["image", "inspect"]:
    ref = argv[-1]
    repo = ref.rsplit(":", 1)[0]
    digests = [repo.replace(".", "x") + "@sha256:" + "e" * 64, "mirror.example.com/x@sha256:" + "f" * 64]
    if {answer!r}:
        digests.append(repo + "@sha256:" + hashlib.sha256(repo.encode()).hexdigest())
    # As docker image inspect prints it (indented JSON, one RepoDigests entry a line).
    print(json.dumps([{{"Id": "sha256:" + "d" * 64, "RepoTags": [ref], "RepoDigests": digests}}], indent=4))
"""


def digest(image):
    repo = f"{REGISTRY}/{image}"
    return f"{repo}@sha256:{hashlib.sha256(repo.encode()).hexdigest()}"


def build(project, tmp_path, *args, answer=True):
    log = tmp_path / "docker.log"
    docker = tmp_path / "bin" / "docker"
    docker.parent.mkdir(exist_ok=True)
    docker.write_text(FAKE_DOCKER.format(python=sys.executable, log=str(log), answer=answer))
    docker.chmod(0o755)
    env = {**os.environ, "PATH": f"{docker.parent}:{os.environ['PATH']}"}
    result = run([project / "script/build", *args], check=False, cwd=tmp_path, env=env, timeout=60)
    return result, [c["argv"] for c in calls(log)]


def test_push_prints_each_pushed_digest(default_project, tmp_path):
    """After the three pushes, one line per image: <registry>/<image>@sha256:<digest>, this registry's only."""
    digests = tmp_path / "images.digests"
    result, docker = build(default_project, tmp_path, "--push", "--digests", str(digests), SHA)
    assert result.returncode == 0, result.stdout + result.stderr
    pushes = [argv for argv in docker if argv[:1] == ["push"]]
    assert [argv[-1] for argv in pushes] == [f"{REGISTRY}/{image}:{SHA}" for image in PUSHED]
    expected = [digest(image) for image in IMAGES]
    lines = result.stdout.splitlines()
    assert [line for line in lines if "@sha256:" in line] == expected
    assert digests.read_text().splitlines() == expected
    assert not (tmp_path / "images.digests.tmp").exists()


def test_no_digest_after_push_is_one_line(default_project, tmp_path):
    """A pushed image without this registry's digest stops the build in one line; no digest file is written."""
    digests = tmp_path / "images.digests"
    result, _ = build(default_project, tmp_path, "--push", "--digests", str(digests), SHA, answer=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"✖ {REGISTRY}/lucky-base:{SHA} has no digest of {REGISTRY} after the push")
    assert not digests.exists()


def test_digests_without_push_is_a_usage_error(default_project, tmp_path):
    """--digests needs --push: there is nothing to record otherwise."""
    result, docker = build(default_project, tmp_path, "--digests", str(tmp_path / "x"), SHA)
    assert result.returncode == 2 and docker == []
    assert result.stderr.strip() == "usage: script/build [--push [--digests FILE]] [--cache-from TAG]... [SHA]"


def test_build_without_push_prints_no_digest(default_project, tmp_path):
    """Without --push nothing is pushed or inspected."""
    result, docker = build(default_project, tmp_path, SHA)
    assert result.returncode == 0, result.stderr
    assert not [argv for argv in docker if argv[:1] == ["push"] or argv[:2] == ["image", "inspect"]]
    assert "@sha256:" not in result.stdout


def test_push_keeps_the_compile_as_the_next_builds_cache(default_project, tmp_path):
    """--push builds the release's build stage (the compile) as lucky-build:SHA; every build reads the cache of
    all four images under each --cache-from tag, in order and once; the release build also reads lucky-build:SHA (the
    legacy builder, given --cache-from, reuses only those images' layers: without it the release compiles again)."""
    result, docker = build(default_project, tmp_path, "--push", "--cache-from", "feat", "--cache-from", "main",
                           "--cache-from", "feat", SHA)
    assert result.returncode == 0, result.stdout + result.stderr
    builds = {option_values(argv, "-t")[0].rsplit("/", 1)[1]: argv for argv in docker if argv[:1] == ["build"]}
    assert list(builds) == [f"{image}:{SHA}" for image in PUSHED]
    assert option_values(builds[f"lucky-build:{SHA}"], "--target") == ["build"]
    tags = [f"{REGISTRY}/{image}:{tag}" for tag in ("feat", "main") for image in PUSHED]
    for name, argv in builds.items():
        own = [f"{REGISTRY}/lucky-build:{SHA}"] if name == f"lucky:{SHA}" else []
        assert option_values(argv, "--cache-from") == tags + own, name
    pulls = [argv[-1] for argv in docker if argv[:1] == ["pull"]]
    assert pulls == tags


def test_an_invalid_cache_tag_builds_nothing(default_project, tmp_path):
    """A --cache-from that is no image tag: one line naming it, no docker command run."""
    result, docker = build(default_project, tmp_path, "--cache-from", "main", "--cache-from", "feat/x", SHA)
    assert result.returncode == 1 and docker == []
    assert result.stderr.strip() == ("✖ 'feat/x' is not a valid image tag (letters, digits, _ . -, at most 128, "
                                     "not starting with . or -); nothing was built")
