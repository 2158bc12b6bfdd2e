"""Finish a freshly rendered project: prune, secure, record provenance.

Runs inside the new project directory. Each step is a small function so the
hook tests can call it on a scratch directory.
"""

import json
import os
import secrets
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from cookiecutter.config import BUILTIN_ABBREVIATIONS, get_user_config
from cookiecutter.exceptions import CookiecutterException
from cookiecutter.repository import expand_abbreviations, is_repo_url, is_zip_file

ANSWERS = r'''{{ cookiecutter | tojson }}'''

# Secrets a development stack needs; written to the git-ignored .env only.
DEV_SECRETS = {
    "POSTGRES_PASSWORD": 24,
    "HASURA_GRAPHQL_ADMIN_SECRET": 32,
    "HASURA_JWT_KEY": 48,
    "SECRET_KEY_BASE": 48,
}

# Files cruft must never carry from one render to another.
CRUFT_SKIP = [".cruft.json", ".env", ".env.production", "etc/certs", "etc/secrets"]


def remove(root, *relative):
    """Delete files or directories under root; missing ones are fine."""
    for rel in relative:
        path = Path(root, rel)
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def remove_unselected(root, answers):
    """Drop the files that belong to options the user did not choose."""
    if answers["ci"] != "gitlab":
        remove(root, ".gitlab-ci.yml")
    if answers["ci"] != "github":
        remove(root, ".github")
    if answers["monitoring"] != "yes":
        remove(root, "Docker/prometheus-swarm", "script/monitoring", "docs/monitoring.md")
    if answers["tls"] != "origin-certs":
        remove(root, "Docker/traefik/dynamic/tls.yml")


def set_executable(root):
    """Make every runnable script executable; sourced function files stay 0644."""
    for folder in ("script", "script/docker"):
        for path in Path(root, folder).iterdir():
            if path.is_file():
                mode = path.stat().st_mode
                path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def write_dev_env(root):
    """Write fresh random development secrets into .env (git-ignored), once."""
    env_file = Path(root, ".env")
    if env_file.exists():
        return
    example = Path(root, ".env.example").read_text()
    lines = []
    for line in example.splitlines():
        name, _, value = line.partition("=")
        if name in DEV_SECRETS:
            value = secrets.token_hex(DEV_SECRETS[name])
        lines.append(f"{name}={value}" if _ else line)
    env_file.write_text("\n".join(lines) + "\n")
    env_file.chmod(0o600)


def launcher_cwd():
    """Return the working directory of the process that runs this hook, or None where the system hides it."""
    # cookiecutter 2.7.1 (cookiecutter/hooks.py, run_hook_from_repo_dir) calls each hook inside
    # work_in(repo_dir) and starts it with cwd = the new project (run_script), so the parent
    # process sits in the template directory while this hook runs.
    parent = os.getppid()
    try:
        return Path(os.readlink(f"/proc/{parent}/cwd"))  # Linux
    except OSError:
        pass
    try:  # macOS and the BSDs have no /proc; lsof names a process's cwd
        result = subprocess.run(["lsof", "-a", "-p", str(parent), "-d", "cwd", "-Fn"],
                                capture_output=True, text=True, check=False)
    except OSError:
        return None
    names = [line[1:] for line in result.stdout.splitlines() if line.startswith("n")]
    return Path(names[0]) if result.returncode == 0 and names else None


def is_template_dir(path):
    """True when path holds a cookiecutter template (cookiecutter.json and this hook)."""
    return (path / "cookiecutter.json").is_file() and (path / "hooks" / "post_gen_project.py").is_file()


def template_dir(answers, launcher=launcher_cwd):
    """Return the absolute directory cookiecutter rendered from, or None when it cannot be found."""
    # cookiecutter 2.7.1 (cookiecutter/main.py) passes _repo_dir as determine_repo_dir found it:
    # absolute for a clone (under cookiecutters_dir), but exactly as typed for a local path
    # ('.', '../lhd', plus --directory), i.e. relative to where cookiecutter was started, which is
    # not this hook's cwd (the new project).
    repo_dir = answers.get("_repo_dir")
    if not repo_dir:
        return None
    path = Path(repo_dir)
    if path.is_absolute():
        return path.resolve() if path.is_dir() else None
    pwd = os.environ.get("PWD")  # the shell's directory, for systems where launcher() knows nothing
    for candidate in (launcher(), Path(pwd, path) if pwd else None):
        if candidate is not None and is_template_dir(candidate):
            return candidate.resolve()
    return None


def expand_template(template):
    """Return the template as cookiecutter reads it, abbreviations (gh:, gl:, bb:, the user's own) expanded."""
    abbreviations = BUILTIN_ABBREVIATIONS
    try:  # the user's own abbreviations live in ~/.cookiecutterrc (cookiecutter/config.py, 2.7.1)
        abbreviations = get_user_config()["abbreviations"]
    except (CookiecutterException, OSError):
        pass
    return expand_abbreviations(template, abbreviations)


class NoGitSource(Exception):
    """The template cookiecutter rendered from is not a git checkout cruft can clone."""


def git_out(directory, *args):
    """Return git's stdout in directory; raise NoGitSource naming argv, stdout and stderr when git fails."""
    argv = ["git", "-C", str(directory), *args]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise NoGitSource(f"{shlex.join(argv)}: {exc}") from exc
    if result.returncode != 0:
        output = " ".join((result.stdout + result.stderr).split())
        raise NoGitSource(f"{shlex.join(argv)} exited {result.returncode}: {output}")
    return result.stdout.strip()


def template_state(answers, launcher=launcher_cwd):
    """Return the template, commit, checkout and directory cruft needs, and why no commit is known (or None)."""
    url = expand_template(answers.get("_template", ""))
    # cookiecutter 2.7.1 clones a template given as a repository URL, zip files apart
    # (cookiecutter/repository.py, determine_repo_dir); a "git+" prefix only picks the VCS
    # (cookiecutter/vcs.py, identify_repo) and is not part of what git clones.
    cloned = is_repo_url(url) and not is_zip_file(url)
    plain_url = url.removeprefix("git+")
    where = template_dir(answers, launcher)
    # --checkout only acts on a clone; a local path renders its work tree as it is.
    state = {"template": plain_url, "checkout": answers.get("_checkout") if cloned else None, "directory": None}
    try:
        if where is None:
            raise NoGitSource(f"the template directory {answers.get('_repo_dir')!r} cannot be located")
        top = git_out(where, "rev-parse", "--show-toplevel")
        # An unpacked archive lying inside some other repository is not that repository's template.
        git_out(where, "ls-files", "--error-unmatch", "cookiecutter.json")
        state["commit"] = git_out(where, "rev-parse", "HEAD")
        prefix = git_out(where, "rev-parse", "--show-prefix").rstrip("/")
    except NoGitSource as exc:
        if where is not None and not cloned:
            state["template"] = str(where)
        return state, str(exc)
    # cruft clones `template` and renders `directory` inside it (cruft/_commands/update.py, 2.16.0),
    # the same split as cookiecutter's --directory.
    state["directory"] = prefix or None
    if cloned:  # the clone's origin is the URL git really used, custom abbreviations included
        try:
            state["template"] = git_out(top, "remote", "get-url", "origin")
        except NoGitSource:
            pass
    else:
        state["template"] = top
    return state, None


def write_cruft_state(root, answers, launcher=launcher_cwd):
    """Record template, commit and answers in .cruft.json for `cruft update`."""
    state_file = Path(root, ".cruft.json")
    if state_file.exists():
        return  # cruft itself wrote it (cruft create / update)
    if "_commit" in answers:
        # cruft 2.16.0 is rendering (cruft/_commands/utils/cookiecutter.py adds _commit): create and
        # link write their own .cruft.json, update and diff only compare renders.
        return
    source, problem = template_state(answers, launcher)
    context = {k: v for k, v in answers.items() if k not in ("_output_dir", "_repo_dir")}
    context["_template"] = source["template"]
    state = {"template": source["template"]}
    if problem is None:
        state["commit"] = context["_commit"] = source["commit"]
    else:
        # No "commit" at all: cruft 2.16.0 takes a null commit for "up to date"
        # (cruft/_commands/utils/cruft.py, is_project_updated diffs the index against None).
        print(f"WARNING: .cruft.json names no template commit ({problem}).\n"
              "  Upgrades need a git source (clone or URL); until then `cruft check` and `cruft update` fail. "
              "See README.md, Upgrading.", file=sys.stderr)
    state.update(checkout=source["checkout"], context={"cookiecutter": context},
                 directory=source["directory"], skip=CRUFT_SKIP)
    state_file.write_text(json.dumps(state, indent=2, sort_keys=False) + "\n")


def print_next_steps(answers):
    """Tell the user what to do now."""
    name = answers["project_name"]
    print(
        f"\n✔ {name} is ready.\n"
        f"  cd {name} && git init -b main && git add -A && git commit -m 'Start from LHD'\n"
        "  script/up        # development stack (Docker + Compose v2)\n"
        "  script/down      # remove it again\n"
        "  See README.md for production on Docker Swarm.\n"
    )


def main():
    answers = json.loads(ANSWERS)
    root = Path.cwd()
    remove_unselected(root, answers)
    set_executable(root)
    write_dev_env(root)
    write_cruft_state(root, answers)
    print_next_steps(answers)


if __name__ == "__main__":
    try:
        main()
    except (OSError, KeyError, ValueError) as exc:
        print(f"ERROR: finishing the project failed: {exc}", file=sys.stderr)
        sys.exit(1)
