"""The server side of a CI deploy checks out exactly the reviewed commit (review finding H2), with real git.

A bare "origin", a developer clone that pushes two commits to main, and a server clone made with
`git clone` before the attack (so it holds no tag yet). An attacker, who may push branches and tags but not main, pushes a
commit on a side branch and names a tag and a branch after main's 8-character SHA (and a tag after the
full SHA), all pointing at it. The repository is the rendered project's `script/` directory with
`script/deploy` replaced by a stub that records its arguments and the HEAD it ran at; the attacker's
commit replaces that stub with one that writes a marker file. The real `script/ci_deploy_remote` runs
on the server clone as the SSH forced command would (SSH_ORIGINAL_COMMAND), or is refused. Through a real
OpenSSH sshd: tests/lint/test_ci_deploy_sshd.py. The helpers: harness/ci_deploy_remote.py.
"""

import os
from pathlib import Path

import pytest

from harness.ci_deploy_remote import GIT_ENV, REFUSED, REGISTRY, deploys, git, head, make_repos, registry, remote
from harness.proc import run
from harness.rules.ci_checks import calls, fake_commands


@pytest.fixture
def repos(default_project, tmp_path):
    """origin, a server clone at main's first commit, main's second commit `good`, the attacker's `evil`."""
    return make_repos(default_project, tmp_path)


def test_deploys_exactly_the_reviewed_commit(repos):
    """Tag and branch named after main's SHA point at the attacker's commit: the full SHA is checked out
    and its own script/deploy runs with the 8-character image tag; the attacker's code never runs."""
    good = repos["good"]
    result = remote(repos, f"deploy production {good}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert head(repos) == good
    assert deploys(repos) == [f"{good} {good[:8]}"]
    assert not (repos["tmp"] / "EVIL").exists()
    # Nothing of the attacker's came in with the fetch.
    assert git(repos["server"], "tag", "--list") == ""
    assert git(repos["server"], "for-each-ref", "--format=%(refname)", f"refs/remotes/origin/{good[:8]}") == ""


def test_subtractive_deploy_confirms_in_ci(repos):
    """`deploy staging SHA -s` runs script/deploy -s --yes SHA8 for a commit on origin/staging."""
    first = repos["first"]
    result = remote(repos, f"deploy staging {first} -s")
    assert result.returncode == 0, result.stdout + result.stderr
    assert deploys(repos) == [f"{first} -s --yes {first[:8]}"]


def test_even_a_clone_holding_the_attackers_refs_checks_out_the_full_sha(repos):
    """With the attacker's tags and branches already in the server clone (someone ran git fetch --tags),
    the full SHA still names main's commit, never the ref of that name."""
    git(repos["server"], "fetch", "-q", "--tags", "origin", "+refs/heads/*:refs/remotes/origin/*")
    git(repos["server"], "branch", repos["good"][:8], repos["evil"])
    result = remote(repos, f"deploy production {repos['good']}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert head(repos) == repos["good"] and deploys(repos) == [f"{repos['good']} {repos['good'][:8]}"]
    # The attacker's commit is in this clone now, and still not on main.
    result = remote(repos, f"deploy production {repos['evil']}")
    assert result.returncode == 1 and f"{repos['evil']} is not on origin/main" in result.stderr
    assert head(repos) == repos["good"] and len(deploys(repos)) == 1
    assert not (repos["tmp"] / "EVIL").exists()


@pytest.mark.parametrize("environment", ["production", "staging"])
def test_commit_not_on_the_branch_is_refused(repos, environment):
    """The attacker's commit, named by its full SHA, is on neither origin/main nor origin/staging."""
    before = head(repos)
    result = remote(repos, f"deploy {environment} {repos['evil']}")
    branch = {"production": "main", "staging": "staging"}[environment]
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"✖ refused: {repos['evil']} is not on origin/{branch}, so it may not be deployed to {environment}; "
        "nothing was checked out or deployed"]
    assert head(repos) == before and deploys(repos) == [] and not (repos["tmp"] / "EVIL").exists()


def test_local_change_to_a_tracked_file_is_refused(repos):
    """A tracked file edited in the server's checkout would ride along into the new one: refused, nothing moves.
    Untracked, git-ignored files (.env.production, etc/secrets) are no reason to refuse."""
    before = head(repos)
    (repos["server"] / ".env.production").write_text("X=1\n")
    # script/up is the same in both commits, so git checkout alone would keep the edit and go on.
    original = (repos["server"] / "script/up").read_text()
    (repos["server"] / "script/up").write_text(original + "echo edited on the server\n")
    result = remote(repos, f"deploy production {repos['good']}")
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["✖ refused: this checkout has local changes to tracked files ( M script/up): "
                                          "commit or drop them first; nothing was checked out or deployed"]
    assert head(repos) == before and deploys(repos) == []
    (repos["server"] / "script/up").write_text(original)
    assert remote(repos, f"deploy production {repos['good']}").returncode == 0
    assert head(repos) == repos["good"]


def test_main_commit_is_refused_for_staging_until_staging_has_it(repos):
    """production follows main and staging follows staging: main's new commit is not yet on staging."""
    result = remote(repos, f"deploy staging {repos['good']}")
    assert result.returncode == 1 and "is not on origin/staging" in result.stderr
    assert deploys(repos) == []


def test_production_branch_is_configurable(repos):
    """PRODUCTION_BRANCH=feature (set in the forced command) makes the attacker's branch the production one."""
    result = run([repos["server"] / "script/ci_deploy_remote"], check=False, cwd=repos["tmp"], timeout=60,
                 env={**os.environ, **GIT_ENV, "PRODUCTION_BRANCH": "feature", "EVIL_MARKER": str(repos["tmp"] / "EVIL"),
                      "SSH_ORIGINAL_COMMAND": f"deploy production {repos['good']}"})
    assert result.returncode == 1 and "is not on origin/feature" in result.stderr


@pytest.mark.parametrize("command", [
    "", "bash", "deploy production", "deploy qa {good}", "deploy production {short}",
    "deploy production {good}; touch /tmp/pwned", "deploy production {good} -s extra",
    "deploy  production {good}", "deploy production {upper}", "git fetch origin && script/deploy {short}",
    "deploy production {good}\nid", "deploy production {good} lucky@sha256:{good}",
    "deploy production {good} hasura@sha256:{hex} lucky@sha256:{hex}", "deploy production {good} lucky@sha256:{hex}",
])
def test_forced_command_accepts_only_deploy(repos, command):
    """Anything but `deploy staging|production <40-hex> [-s]` is refused in one line; nothing runs."""
    good = repos["good"]
    command = command.format(good=good, short=good[:8], upper=good.upper(), hex="a" * 64)
    before = head(repos)
    result = remote(repos, command)
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(REFUSED), result.stderr
    assert head(repos) == before and deploys(repos) == []


def test_short_sha_given_by_hand_is_refused(repos):
    """Called by hand, an 8-character SHA is refused before git runs."""
    result = remote(repos, None, "production", repos["good"][:8])
    assert result.returncode == 1
    assert result.stderr.strip() == (f"✖ refused: '{repos['good'][:8]}' is not a full 40-character commit SHA "
                                     "(git rev-parse HEAD); nothing was checked out or deployed")
    assert deploys(repos) == []


def test_what_ci_deploy_sends_is_what_the_forced_command_accepts(default_project, repos):
    """script/ci_deploy's remote command, handed to the real forced command, deploys that commit."""
    log = repos["tmp"] / "ssh.log"
    bin_dir = fake_commands(repos["tmp"] / "ci-bin", log, "ssh")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SERVER_IP": "203.0.113.7",
           "SSH_KNOWN_HOSTS": "203.0.113.7 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyForTests"}
    run([default_project / "script/ci_deploy", "production", repos["good"], "-s"], cwd=default_project, env=env)
    (sent,) = [c["argv"][-1] for c in calls(log)]
    assert sent == f"deploy production {repos['good']} -s"
    result = remote(repos, sent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert deploys(repos) == [f"{repos['good']} -s --yes {repos['good'][:8]}"]


def test_ci_deploy_refuses_a_short_sha(default_project, tmp_path):
    """script/ci_deploy refuses an 8-character SHA in one line, before ssh runs."""
    log = tmp_path / "ssh.log"
    bin_dir = fake_commands(tmp_path / "ci-bin", log, "ssh")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SERVER_IP": "203.0.113.7",
           "SSH_KNOWN_HOSTS": "203.0.113.7 ssh-ed25519 AAAA"}
    result = run([default_project / "script/ci_deploy", "production", "aaaa1111"], check=False, cwd=default_project,
                 env=env, timeout=60)
    assert result.returncode == 1 and not Path(log).exists()
    assert result.stderr.strip() == ("✖ 'aaaa1111' is not a full 40-character commit SHA ($CI_COMMIT_SHA, "
                                     "$GITHUB_SHA, git rev-parse HEAD)")


# --- image digests (review finding M3) ----------------------------------------------------

LUCKY, HASURA, OTHER = "1" * 64, "2" * 64, "3" * 64


def test_images_the_build_pushed_are_deployed(repos):
    """With the build's digests, both images tagged SHA8 are pulled and checked before the checkout, and
    script/deploy gets them (--digests), so it runs those images by digest, not the tags again."""
    registry(repos, lucky=LUCKY, hasura=HASURA)
    good = repos["good"]
    result = remote(repos, f"deploy production {good} lucky@sha256:{LUCKY} hasura@sha256:{HASURA}")
    assert result.returncode == 0, result.stdout + result.stderr
    pulls = [c["argv"] for c in calls(repos["tmp"] / "docker.log") if c["argv"][:1] == ["pull"]]
    assert pulls == [["pull", "--quiet", f"{REGISTRY}/lucky:{good[:8]}"], ["pull", "--quiet", f"{REGISTRY}/hasura:{good[:8]}"]]
    assert head(repos) == good
    assert deploys(repos) == [f"{good} --digests lucky@sha256:{LUCKY},hasura@sha256:{HASURA} {good[:8]}"]


@pytest.mark.parametrize("image", ["lucky", "hasura"])
def test_image_pushed_over_is_refused(repos, image):
    """A tag someone pushed over after the build (the registry's digest is not the build's) stops the deploy."""
    registry(repos, **{"lucky": LUCKY, "hasura": HASURA, image: OTHER})
    before, good = head(repos), repos["good"]
    result = remote(repos, f"deploy production {good} -s lucky@sha256:{LUCKY} hasura@sha256:{HASURA}")
    wanted = {"lucky": LUCKY, "hasura": HASURA}[image]
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"✖ refused: {REGISTRY}/{image}:{good[:8]} in the registry is not the image the build pushed "
        f"(sha256:{wanted}): was the tag pushed over?; nothing was checked out or deployed"]
    assert head(repos) == before and deploys(repos) == []


def test_ci_deploy_sends_the_digests_the_build_wrote(default_project, repos):
    """script/ci_deploy --digests FILE (script/build's file) sends them; the forced command checks them."""
    registry(repos, lucky=LUCKY, hasura=HASURA)
    digests = repos["tmp"] / "images.digests"
    digests.write_text("".join(f"{REGISTRY}/{name}@sha256:{hex_}\n"
                               for name, hex_ in (("lucky-base", OTHER), ("lucky", LUCKY), ("hasura", HASURA))))
    log = repos["tmp"] / "ssh.log"
    bin_dir = fake_commands(repos["tmp"] / "ci-bin", log, "ssh")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SERVER_IP": "203.0.113.7",
           "SSH_KNOWN_HOSTS": "203.0.113.7 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyForTests"}
    run([default_project / "script/ci_deploy", "--digests", digests, "staging", repos["first"]], cwd=default_project,
        env=env)
    (sent,) = [c["argv"][-1] for c in calls(log)]
    assert sent == f"deploy staging {repos['first']} lucky@sha256:{LUCKY} hasura@sha256:{HASURA}"
    result = remote(repos, sent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert deploys(repos) == [f"{repos['first']} --digests lucky@sha256:{LUCKY},hasura@sha256:{HASURA} "
                              f"{repos['first'][:8]}"]
