"""Projects made before the option changes of issue 14 upgrade cleanly with `cruft update`.

The template as it was at the last commit of this repository that still had
docker-sync is exported (`git archive`, nothing in this repository's work
tree or branches changes) into a throwaway git repository as commit A. A
project is rendered from A, committed, and then the throwaway repository moves
to the work tree's template (commit B), as make_template_repo copies it.
`cruft update` brings B in.

What cruft 2.16.0 does with the old answers (cruft/_commands/utils/generate.py,
_generate_output): it passes every answer of `.cruft.json` not starting with
`_` to cookiecutter as extra context, and cookiecutter 2.7.1 ignores a key its
cookiecutter.json no longer has (cookiecutter/generate.py,
apply_overwrites_to_context); cruft then writes the new render's answers to
`.cruft.json` (cruft/_commands/update.py).
"""

import json
import re
import shutil

import pytest
import yaml

from harness.bake import TEMPLATE_PARTS, bake, copy_template
from harness.combinations import ROOT
from harness.proc import run
from harness.upgrade import TPL, cruft, git

DOCKER_SYNC_FILES = ["docker-sync.yml", "Docker/docker-compose.docker-sync.yml"]
NOTE = "**Coming from docker-sync?**"


def last_commit_with_docker_sync():
    """The newest commit of this repository whose template still has docker-sync.yml."""
    path = f"{TPL}/docker-sync.yml"
    if git(ROOT, "rev-parse", "--is-shallow-repository") == "true":
        pytest.fail("the repository is a shallow clone: the commit before docker-sync was removed is not in it "
                    "(check out with the full history, e.g. actions/checkout with fetch-depth: 0)", pytrace=False)
    removed = git(ROOT, "log", "-1", "--format=%H", "--diff-filter=D", "HEAD", "--", path)
    commit = git(ROOT, "rev-parse", f"{removed}^" if removed else "HEAD")
    run(["git", "-C", ROOT, "cat-file", "-e", f"{commit}:{path}"])
    return commit


@pytest.fixture(scope="module")
def old_template(tmp_path_factory):
    """The template files as they were at the last commit with docker-sync, exported with git archive."""
    commit = last_commit_with_docker_sync()
    tree = tmp_path_factory.mktemp("old-template")
    archive = tree / "template.tar"
    run(["git", "-C", ROOT, "archive", "--format=tar", "-o", archive, commit, *TEMPLATE_PARTS])
    run(["tar", "-xf", archive, "-C", tree])
    archive.unlink()
    return tree


def template_repo(old_template, path):
    """A git repository holding the old template as commit A."""
    shutil.copytree(old_template, path)
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "A: the template with docker-sync")
    return path


def move_to_work_tree(repo):
    """Replace the repository's template with the work tree's, committed as B; return B."""
    git(repo, "rm", "-rq", ".")
    copy_template(repo)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "B: the work tree's template")
    return git(repo, "rev-parse", "HEAD")


def commit_project(project):
    """Make the rendered project a git repository with everything committed, as cruft needs."""
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "generated")


def explain(result):
    """The argv, exit status and output of a finished command, for a failure message."""
    return f"{' '.join(map(str, result.args))} exited {result.returncode}\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="module")
def upgraded(old_template, tmp_path_factory):
    """A project rendered at A with dev_sync=docker-sync, then `cruft update` to B."""
    base = tmp_path_factory.mktemp("docker-sync")
    template = template_repo(old_template, base / "template")
    project = bake(base / "out", template=template, dev_sync="docker-sync")
    before = {rel: (project / rel).is_file() for rel in DOCKER_SYNC_FILES}
    old_answers = json.loads((project / ".cruft.json").read_text())["context"]["cookiecutter"]
    commit_project(project)
    commit_b = move_to_work_tree(template)
    result = cruft("update", project)
    return {"project": project, "result": result, "before": before, "old_answers": old_answers, "b": commit_b}


def test_old_project_used_docker_sync(upgraded):
    """The project under test really was a docker-sync project before the update."""
    assert upgraded["old_answers"]["dev_sync"] == "docker-sync"
    assert all(upgraded["before"].values()), upgraded["before"]


def test_update_succeeds(upgraded):
    """cruft update exits 0 and records the new template commit."""
    assert upgraded["result"].returncode == 0, explain(upgraded["result"])
    state = json.loads((upgraded["project"] / ".cruft.json").read_text())
    assert state["commit"] == upgraded["b"]


@pytest.mark.parametrize("rel", DOCKER_SYNC_FILES)
def test_docker_sync_files_are_gone(upgraded, rel):
    """The update deletes the docker-sync configuration files."""
    assert not (upgraded["project"] / rel).exists()


def test_scripts_no_longer_start_docker_sync(upgraded):
    """script/up, script/down and their helpers have no docker-sync step left."""
    project = upgraded["project"]
    hits = [str(p.relative_to(project)) for p in sorted((project / "script").rglob("*"))
            if p.is_file() and re.search(r"docker[-_]sync|DEV_SYNC", p.read_text(), re.IGNORECASE)]
    assert not hits


def test_recorded_answers_have_no_dev_sync_and_render(upgraded):
    """.cruft.json keeps no dev_sync answer, and the template renders from its answers with nothing to change."""
    project = upgraded["project"]
    answers = json.loads((project / ".cruft.json").read_text())["context"]["cookiecutter"]
    assert "dev_sync" not in answers
    git(project, "add", "-A")
    git(project, "commit", "-qm", "updated")
    diff = cruft("diff", project, "--exit-code")
    assert diff.returncode == 0, explain(diff)


def test_readme_tells_docker_sync_users_what_replaces_it(upgraded):
    """The upgrade notes (docs/upgrading.md, linked from the README) name docker-sync and the develop.watch
    commands that replace it."""
    readme = (upgraded["project"] / "docs/upgrading.md").read_text()
    note = readme.split(NOTE, 1)[1].split("\n\n", 1)[0]
    assert "docker-sync clean" in note
    assert "script/up" in note and "script/watch" in note and "docker compose watch" in note


@pytest.mark.parametrize(
    ("variables", "account"),
    [({"tls": "certs@shop.example.org"}, "certs@shop.example.org"), (None, "ops@shop.example.org")],
    ids=["tls-given-as-the-e-mail", "no-variables"],
)
def test_letsencrypt_account_through_update(old_template, tmp_path, variables, account):
    """An old letsencrypt_email answer is dropped by the update unless given again as the tls answer."""
    template = template_repo(old_template, tmp_path / "template")
    project = bake(tmp_path / "out", template=template, app_domain="shop.example.org", tls="letsencrypt",
                   letsencrypt_email="certs@shop.example.org")
    commit_project(project)
    move_to_work_tree(template)
    extra = ["--variables-to-update", json.dumps(variables)] if variables else []
    result = cruft("update", project, *extra)
    assert result.returncode == 0, explain(result)
    static = yaml.safe_load((project / "Docker/traefik/traefik.https.yml").read_text())
    assert static["certificatesResolvers"]["letsencrypt"]["acme"]["email"] == account
    answers = json.loads((project / ".cruft.json").read_text())["context"]["cookiecutter"]
    assert "letsencrypt_email" not in answers and answers["__letsencrypt_email"] == account
