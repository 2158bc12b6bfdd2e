"""Regenerating a project from a newer template keeps the user's edits.

A throwaway git repository holds the template at commit A; a project is
rendered from it, committed, and edited by "the user"; the template moves to
commit B; `cruft update` brings B in. Each test checks one promise.
"""

import json

import pytest

from harness.bake import bake, copy_template
from harness.upgrade import TPL, cruft, git


def make_template_repo(path):
    """A git repository with the current template, committed as A."""
    path.mkdir()
    copy_template(path)
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "A")
    return git(path, "rev-parse", "HEAD")


def replace_line(path, old, new):
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


# The edits, as data: (file, old line, new line).
USER_EDIT = ("script/up", "# Start the development stack: PostgreSQL, the database (create, migrate,",
             "# Start the development stack: PostgreSQL, the database (create, migrate, (edited by us)")
TEMPLATE_SAME_FILE = ("script/up", 'info "Lucky:          http://localhost:${LUCKY_PORT:-5000}"',
                      'info "Lucky API:      http://localhost:${LUCKY_PORT:-5000}"')
TEMPLATE_UNTOUCHED = ("Docker/docker-compose.yml", "      retries: 12\n", "      retries: 15\n")
CONFLICT_USER = ("script/down", "# Remove the development stack: its containers, networks and volumes (the",
                 "# Tear down our development stack: its containers, networks and volumes (the")
CONFLICT_TEMPLATE = ("script/down", "# Remove the development stack: its containers, networks and volumes (the",
                     "# Delete the whole development stack: its containers, networks and volumes (the")
DELETED = "script/logs"
NEW_FILE = "script/doctor"


@pytest.fixture(scope="module")
def updated(tmp_path_factory):
    """Render at A, edit as a user, move the template to B, run cruft update once."""
    base = tmp_path_factory.mktemp("upgrade")
    template = base / "template"
    commit_a = make_template_repo(template)
    project = bake(base / "out", template=template)
    state = json.loads((project / ".cruft.json").read_text())
    assert (state["template"], state["commit"]) == (str(template), commit_a)

    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "generated")
    replace_line(project / USER_EDIT[0], *USER_EDIT[1:])
    replace_line(project / CONFLICT_USER[0], *CONFLICT_USER[1:])
    (project / "NOTES.md").write_text("our own file\n")
    (project / DELETED).unlink()
    git(project, "add", "-A")
    git(project, "commit", "-qm", "our edits")

    tpl = template / TPL
    replace_line(tpl / TEMPLATE_SAME_FILE[0], *TEMPLATE_SAME_FILE[1:])
    replace_line(tpl / TEMPLATE_UNTOUCHED[0], *TEMPLATE_UNTOUCHED[1:])
    replace_line(tpl / CONFLICT_TEMPLATE[0], *CONFLICT_TEMPLATE[1:])
    replace_line(tpl / DELETED, "# Follow the development stack's logs", "# Follow (tail) the development stack's logs")
    (tpl / NEW_FILE).write_text("#!/usr/bin/env bash\n# Check the machine for what LHD needs.\nset -euo pipefail\n")
    git(template, "add", "-A")
    git(template, "commit", "-qm", "B")
    commit_b = git(template, "rev-parse", "HEAD")

    result = cruft("update", project)
    return {"project": project, "result": result, "a": commit_a, "b": commit_b, "template": template}


def test_update_runs(updated):
    """cruft update exits and says what it did."""
    assert updated["result"].returncode == 0, updated["result"].stdout + updated["result"].stderr


def test_untouched_file_change_lands(updated):
    """A template change in a file the user never touched is applied."""
    text = (updated["project"] / TEMPLATE_UNTOUCHED[0]).read_text()
    assert TEMPLATE_UNTOUCHED[2] in text and TEMPLATE_UNTOUCHED[1] not in text


def test_non_overlapping_change_merges_with_user_edit(updated):
    """Template and user edits to different lines of one file both survive."""
    text = (updated["project"] / USER_EDIT[0]).read_text()
    assert USER_EDIT[2] in text
    assert TEMPLATE_SAME_FILE[2] in text and TEMPLATE_SAME_FILE[1] not in text


def test_new_template_file_appears(updated):
    """A file added to the template is added to the project."""
    assert (updated["project"] / NEW_FILE).read_text().startswith("#!/usr/bin/env bash")


def test_deleted_file_stays_deleted(updated):
    """A generated file the user deleted is not brought back, even though B changed it."""
    assert not (updated["project"] / DELETED).exists()


def test_conflict_is_reported_not_dropped(updated):
    """Both sides of a conflicting line are kept with conflict markers or a .rej file, and cruft says so."""
    project = updated["project"]
    text = (project / CONFLICT_USER[0]).read_text()
    rejects = list(project.rglob("*.rej"))
    markers = "<<<<<<<" in text and ">>>>>>>" in text
    assert markers or rejects, "conflict neither marked nor rejected"
    assert CONFLICT_USER[2] in text
    assert CONFLICT_TEMPLATE[2] in text or any(CONFLICT_TEMPLATE[2] in r.read_text() for r in rejects)
    if markers:
        assert f"UU {CONFLICT_USER[0]}" in git(project, "status", "--porcelain").splitlines()
    output = updated["result"].stdout + updated["result"].stderr
    assert "conflict" in output.lower() or CONFLICT_USER[0] in output


def test_user_files_kept(updated):
    """Files the user added are untouched."""
    assert (updated["project"] / "NOTES.md").read_text() == "our own file\n"


def test_recorded_commit_is_b(updated):
    """.cruft.json records the new template commit after the update."""
    state = json.loads((updated["project"] / ".cruft.json").read_text())
    assert state["commit"] == updated["b"] != updated["a"]


def test_secrets_never_touched(updated):
    """The ignored .env with the user's secrets survives the update byte for byte."""
    project = updated["project"]
    assert "POSTGRES_PASSWORD=" in (project / ".env").read_text()
    assert git(project, "status", "--porcelain", "--ignored", ".env").startswith("!!")


def test_changed_answer_rerenders(tmp_path):
    """Turning monitoring on later renders the monitoring stack into the project."""
    template = tmp_path / "template"
    make_template_repo(template)
    project = bake(tmp_path / "out", template=template, monitoring="no")
    assert not (project / "Docker/prometheus-swarm").exists()
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "generated")

    result = cruft("update", project, "--variables-to-update", json.dumps({"monitoring": "yes"}))

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "Docker/prometheus-swarm/prometheus/prometheus.yml").is_file()
    assert (project / "script/monitoring").is_file()
    assert "script/monitoring up" in (project / "README.md").read_text()
    state = json.loads((project / ".cruft.json").read_text())
    assert state["context"]["cookiecutter"]["monitoring"] == "yes"


def test_check_flags_outdated_project(tmp_path):
    """`cruft check` fails once the template has moved on, passes after the update."""
    template = tmp_path / "template"
    make_template_repo(template)
    project = bake(tmp_path / "out", template=template)
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "generated")
    assert cruft("check", project).returncode == 0
    (template / TPL / "NEW.md").write_text("new\n")
    git(template, "add", "-A")
    git(template, "commit", "-qm", "B")
    assert cruft("check", project).returncode != 0
    assert cruft("update", project).returncode == 0
    git(project, "add", "-A")
    git(project, "commit", "-qm", "updated")
    assert cruft("check", project).returncode == 0
