"""Finish a freshly rendered project: prune, secure, record provenance.

Runs inside the new project directory. Each step is a small function so the
hook tests can call it on a scratch directory.
"""

import json
import secrets
import shutil
import stat
import subprocess
import sys
from pathlib import Path

ANSWERS = r'''{{ cookiecutter | tojson }}'''

ABBREVIATIONS = {
    "gh:": "https://github.com/{}.git",
    "gl:": "https://gitlab.com/{}.git",
    "bb:": "https://bitbucket.org/{}",
}

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
    if answers["dev_sync"] != "docker-sync":
        remove(root, "docker-sync.yml", "Docker/docker-compose.docker-sync.yml")
    if answers["monitoring"] != "yes":
        remove(root, "Docker/prometheus-swarm", "script/monitoring")
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


def template_source(answers):
    """Return the template location as a URL or absolute path cruft can clone."""
    source = answers.get("_template", "")
    for prefix, url in ABBREVIATIONS.items():
        if source.startswith(prefix):
            return url.format(source[len(prefix):])
    if "://" in source or source.startswith("git@"):
        return source
    repo_dir = answers.get("_repo_dir")
    if repo_dir and Path(repo_dir).is_dir():
        return str(Path(repo_dir).resolve())
    return source


def template_commit(answers):
    """Return the template's git commit, or None outside a git checkout."""
    repo_dir = answers.get("_repo_dir")
    if not repo_dir or not Path(repo_dir).is_dir():
        return None
    result = subprocess.run(
        ["git", "-C", repo_dir, "rev-parse", "HEAD"],
        capture_output=True, text=True, check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def write_cruft_state(root, answers):
    """Record template, commit and answers in .cruft.json for `cruft update`."""
    state_file = Path(root, ".cruft.json")
    if state_file.exists():
        return  # cruft itself wrote it (cruft create / update)
    context = {k: v for k, v in answers.items() if k not in ("_output_dir", "_repo_dir")}
    state = {
        "template": template_source(answers),
        "commit": template_commit(answers),
        "checkout": answers.get("_checkout"),
        "context": {"cookiecutter": context},
        "directory": None,
        "skip": CRUFT_SKIP,
    }
    state_file.write_text(json.dumps(state, indent=2, sort_keys=False) + "\n")


def print_next_steps(answers):
    """Tell the user what to do now."""
    name = answers["project_name"]
    print(
        f"\n✔ {name} is ready.\n"
        f"  cd {name} && git init && git add -A && git commit -m 'Start from LHD'\n"
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
