"""What the generated README tells its reader to run agrees with the scripts and with the machines they run on
(the contradictions the generated-README review of 2026-12 found, each held by a test)."""

import os
import re
import shutil
from pathlib import Path

import yaml

from harness.combinations import ROOT, SUPPORTED
from harness.proc import run
from hooks import post_gen_project as post


def shell_lines(text):
    """The lines of every ```sh block of a Markdown text."""
    return [line for block in re.findall(r"```sh\n(.*?)```", text, re.S) for line in block.splitlines()]


def test_no_system_wide_pip_install(default_project):
    """A bare `pip install` fails where Python is externally managed (PEP 668, Debian 12 and Ubuntu 23.04 on):
    tools are installed with pipx or into a venv, in the generated README and in the template's."""
    for readme in (default_project / "README.md", ROOT / "README.md"):
        bare = [line for line in shell_lines(readme.read_text()) if re.match(r"\s*pip3? install", line)]
        assert bare == [], f"{readme}: {bare}"


def test_cruft_is_pinned_where_the_readme_installs_it(default_project):
    """The generated README installs the cruft its CI job runs (cookiecutter.json's _cruft_version)."""
    lines = shell_lines((default_project / "README.md").read_text())
    installs = [line for line in lines if "install cruft" in line]
    assert installs and all("cruft==" in line for line in installs), installs



def test_first_commit_lands_on_the_branch_ci_deploys(bakes, tmp_path, capsys):
    """The hook's next steps, run as printed with stock git (no init.defaultBranch, so a bare `git init` makes
    master), put the first commit on main, a branch the GitHub workflow builds and deploys."""
    rendered = bakes.get(next(combo for combo in SUPPORTED if combo["ci"] == "github"))
    project = Path(shutil.copytree(rendered, tmp_path / rendered.name, symlinks=True))
    post.print_next_steps({"project_name": project.name})
    step = next(line for line in capsys.readouterr().out.splitlines() if "git init" in line)
    env = {"HOME": str(tmp_path), "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t", "PATH": os.environ["PATH"]}
    run(["bash", "-c", step.strip()], cwd=project.parent, env=env)
    branch = run(["git", "branch", "--show-current"], cwd=project, env=env).stdout.strip()
    pushed = yaml.safe_load((project / ".github/workflows/ci.yml").read_text())[True]["push"]["branches"]
    assert branch == "main" and branch in pushed
