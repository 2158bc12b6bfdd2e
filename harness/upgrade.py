"""Template repositories, users and commands for the upgrade tier, as a user meets them.

A user here has a home of their own (cookiecutter's clone cache ~/.cookiecutters,
its replay files, their ~/.cookiecutterrc), a git identity, and runs the
commands the READMEs give, in the directory the README implies.
"""

import json
import os
import re
import sys
from pathlib import Path

from harness.bake import copy_template
from harness.names import DEFAULT
from harness.proc import run

TPL = "{{cookiecutter.project_name}}"
PROJECT = DEFAULT.project  # the default project_name

# Fixed commit dates, so "the last template commit before the project's first commit" is exact.
DAY_A, DAY_PROJECT, DAY_B = "2024-01-01T12:00:00+00:00", "2024-01-02T12:00:00+00:00", "2024-01-03T12:00:00+00:00"

# One edit of each side in the same file, far apart: both must survive an update.
USER_LINE = "# our own ignores\n/scratch/\n"
TEMPLATE_LINE = "\n# added by the template after the project was made\n/.cache/\n"
EDITED_FILE = ".gitignore"


def user_env(home):
    """The environment of a user whose home is `home`, with a git identity and no stray settings."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("COOKIECUTTER_CONFIG", "PWD") and not k.startswith("GIT_")}
    env.update(HOME=str(home), GIT_CONFIG_NOSYSTEM="1",
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    return env


IDENTITY = ["-c", "user.name=t", "-c", "user.email=t@t"]


def git(repo, *args, env=None, date=None):
    """Run git in repo with a fixed identity (and, with date, a fixed commit date); return its stdout, stripped."""
    if date:
        env = dict(env or os.environ, GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date)
    return run(["git", "-C", repo, *IDENTITY, *args], env=env).stdout.strip()


def make_upstream(path, env, directory=None):
    """A template repository holding the current template (under `directory` if given) at commit A.

    Branch main is checked out; branch `stable` and tag `v1` point at A too.
    """
    target = path / directory if directory else path
    target.mkdir(parents=True)
    copy_template(target)
    git(path, "init", "-q", "-b", "main", env=env)
    git(path, "add", "-A", env=env)
    git(path, "commit", "-qm", "A", date=DAY_A, env=env)
    git(path, "branch", "stable", env=env)
    git(path, "tag", "v1", env=env)
    return git(path, "rev-parse", "HEAD", env=env)


def move_template(upstream, env, directory=None, branch="main", tag=None):
    """Commit a template change (B) on `branch` of the upstream repository, tag it if asked; return B."""
    git(upstream, "checkout", "-q", branch, env=env)
    target = (upstream / directory if directory else upstream) / TPL / EDITED_FILE
    target.write_text(target.read_text() + TEMPLATE_LINE)
    git(upstream, "commit", "-qam", "B", date=DAY_B, env=env)
    commit = git(upstream, "rev-parse", "HEAD", env=env)
    if tag:
        git(upstream, "tag", tag, env=env)
    git(upstream, "checkout", "-q", "main", env=env)  # what a clone of upstream starts on
    return commit


def commit_project(project, env, message, date=None):
    """Make the project a git repository if needed and commit everything in it."""
    if not (project / ".git").exists():
        git(project, "init", "-q", "-b", "main", env=env)
    git(project, "add", "-A", env=env)
    git(project, "commit", "-qm", message, date=date, env=env)


def edit_as_user(project, env):
    """The user's own change to a generated file, committed."""
    target = project / EDITED_FILE
    target.write_text(USER_LINE + target.read_text())
    git(project, "commit", "-qam", "our edit", env=env)


def cookiecutter(args, cwd, env, out, shell=False):
    """Run the README's `python3 -m cookiecutter ARGS` without prompts into `out`; return the result.

    With shell=True the arguments go through bash, as typed at a prompt (so `~` expands).
    """
    if shell:
        line = '"$0" -m cookiecutter ' + " ".join(args) + ' --no-input -o "$1"'
        argv = ["bash", "-c", line, sys.executable, out]
    else:
        argv = [sys.executable, "-m", "cookiecutter", *args, "--no-input", "-o", out]
    return run(argv, cwd=cwd, env=env)


def cruft(command, project, *args, env=None, check=False):
    """Run `cruft COMMAND -p PROJECT ARGS` (`-y` for update); return the result (exit status checked only if asked)."""
    extra = ["-y"] if command == "update" else []
    return run(["cruft", command, "-p", project, *extra, *args], env=env, check=check, timeout=300)


def state(project):
    """The project's .cruft.json."""
    return json.loads((project / ".cruft.json").read_text())


def output(result):
    """stdout and stderr of a finished command, for assertions."""
    return result.stdout + result.stderr


def claims_up_to_date(result):
    """True when cruft printed its "up to date" verdict (the messages of cruft 2.16.0's check and update).

    A traceback quoting cruft's source may contain the words; only a line that starts with the
    verdict counts (cruft/_commands/check.py, cruft/_commands/update.py).
    """
    return bool(re.search(r"^(SUCCESS: Good work! Project's cruft is up to date|Nothing to do, project's cruft is "
                          r"already up to date)", result.stdout, flags=re.M))


def repair_block(readme):
    """The shell block a README gives to repair .cruft.json, without its clone= and template= lines."""
    blocks = re.findall(r"```sh\n(.*?)```", Path(readme).read_text(), flags=re.S)
    found = [b for b in blocks if "rev-list" in b and ".cruft.json" in b]
    assert len(found) == 1, f"{readme}: expected one repair block, found {len(found)}"
    return found[0]


def runnable(block):
    """The repair block with the two lines the user fills in removed (the caller sets them)."""
    return "".join(line for line in block.splitlines(keepends=True) if not re.match(r"(clone|template)=", line))
