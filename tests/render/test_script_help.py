"""Every generated script explains itself: `--help` says what it does, each option and its meaning, the environment
it reads and examples, and has no side effect (no Docker, no file written); an unknown option is refused with the
usage line, which is the help's first line."""

import os
import re
import subprocess

import pytest

from harness.combinations import SUPPORTED
from harness.docker import fake_docker
from harness.proc import run

SCRIPTS = ["backup", "bootstrap", "build", "ci_deploy", "ci_deploy_remote", "deploy", "doctor", "down", "logs", "monitoring",
           "pg_upgrade", "provision", "restore", "rollback", "test", "up", "watch"]
OPTION = re.compile(r"^\s+((?:-[a-z]|--[a-z][a-z-]*)(?: \| (?:-[a-z]|--[a-z][a-z-]*))*)\)", re.M)
# The monitoring combination has every script; the defaults include it.
DEFAULTS = SUPPORTED[0]


@pytest.fixture(scope="module")
def project(bakes):
    return bakes.get(DEFAULTS)


def script_env(tmp_path):
    """A docker that records any call and fails, and an env file path no script may write."""
    log = tmp_path / "docker.log"
    env = {**os.environ, **fake_docker(tmp_path, f'echo "docker $*" >> "{log}"; exit 97\n'),
           "LHD_ENV_FILE": str(tmp_path / "never.env"), "LHD_SECRETS_DIR": str(tmp_path / "never-secrets")}
    env.pop("SSH_ORIGINAL_COMMAND", None)
    return env, log


def files_of(project):
    return {p for p in project.rglob("*") if ".git" not in p.parts}


def options_of(script_text):
    """Every option a script's argument parsing accepts (its `case` patterns)."""
    found = set()
    for pattern in OPTION.findall(script_text):
        found.update(word for word in pattern.split(" | "))
    return found


@pytest.mark.parametrize("name", SCRIPTS)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_explains_without_side_effects(project, tmp_path, name, flag):
    env, log = script_env(tmp_path)
    before = files_of(project)
    result = run([project / "script" / name, flag], cwd=project, env=env, check=False, stdin=subprocess.DEVNULL,
                 timeout=30)
    assert result.returncode == 0, result.stderr
    help_text = result.stdout
    lines = help_text.splitlines()
    assert lines[0].startswith(f"usage: script/{name}"), lines[0]
    assert lines[1] == "" and len(lines[2]) > 20, "a sentence on what it does follows the usage line"
    assert "Options:" in help_text or "Commands:" in help_text
    examples = help_text.split("Examples:", 1)
    assert len(examples) == 2 and f"script/{name}" in examples[1] or name == "ci_deploy_remote" and len(examples) == 2
    missing = sorted(o for o in options_of((project / "script" / name).read_text()) if o not in help_text)
    assert not missing, f"options the script accepts but --help does not explain: {missing}"
    assert not log.exists(), log.read_text()
    assert files_of(project) == before


@pytest.mark.parametrize("name", SCRIPTS)
def test_unknown_option_is_refused_with_the_usage_line(project, tmp_path, name):
    env, log = script_env(tmp_path)
    help_first = run([project / "script" / name, "--help"], cwd=project, env=env, stdin=subprocess.DEVNULL,
                     timeout=30).stdout.splitlines()[0]
    refused = run([project / "script" / name, "--no-such-option"], cwd=project, env=env, check=False,
                  stdin=subprocess.DEVNULL, timeout=30)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stderr.strip() == help_first
    assert not log.exists(), log.read_text()
