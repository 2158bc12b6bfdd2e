"""Every way of starting a project gives one that cruft can upgrade (issue 16).

Each source form renders with the README's command (`python3 -m cookiecutter
SOURCE`, plus `--no-input -o OUT`) from the directory the form implies; the
project is committed and edited; the template moves on; then `cruft check`
must say the project is behind and `cruft update` must bring the change in
next to the user's edit. The template is "upstream" (a git repository) and,
for local paths, the user's clone of it at ~/lhd, which pulls like a user's.
"""

import re
from dataclasses import dataclass

import pytest

from harness.upgrade import (
    EDITED_FILE,
    PROJECT,
    TEMPLATE_LINE,
    USER_LINE,
    claims_up_to_date,
    commit_project,
    cookiecutter,
    cruft,
    edit_as_user,
    git,
    make_upstream,
    move_template,
    output,
    state,
    user_env,
)


@dataclass(frozen=True)
class Source:
    """One way to name the template to cookiecutter; {base}, {home}, {upstream}, {clone} are filled in."""

    id: str
    args: tuple  # cookiecutter's arguments before --no-input -o OUT
    cwd: str = "{base}"  # where the user runs it
    template: str = "{clone}"  # what .cruft.json must name
    directory: str | None = None  # where the template lies inside its repository
    checkout: str | None = None  # the --checkout cookiecutter was given, recorded
    branch: str = "main"  # where the template moves on
    tag: str | None = None  # the tag the new template commit gets
    check: tuple = ()  # what the user adds to `cruft check`
    update: tuple = ()  # what the user adds to `cruft update`
    shell: bool = False  # typed at a shell prompt (so ~ expands)


URL = "git+file://{upstream}"  # cookiecutter needs "git" in a URL to pick git (cookiecutter/vcs.py, 2.7.1)
NESTED = "templates/lhd"

SOURCES = [
    Source("dot-from-clone", (".",), cwd="{clone}"),
    Source("relative-parent", ("../lhd",), cwd="{home}/elsewhere"),
    Source("home-tilde", ("~/lhd",), shell=True),
    Source("absolute-path", ("{clone}",)),
    Source("file-url", (URL,), template="file://{upstream}"),
    Source("checkout-branch", (URL, "--checkout", "stable"), template="file://{upstream}", checkout="stable",
           branch="stable", check=("--checkout", "stable"), update=("--checkout", "stable")),
    Source("checkout-tag", (URL, "--checkout", "v1"), template="file://{upstream}", checkout="v1",
           tag="v2", update=("--checkout", "v2")),
    Source("directory-url", (URL, "--directory", NESTED), template="file://{upstream}", directory=NESTED),
    Source("directory-from-clone", (".", "--directory", NESTED), cwd="{clone}", directory=NESTED),
]


@pytest.fixture(scope="module", params=SOURCES, ids=lambda source: source.id)
def upgraded(request, tmp_path_factory):
    """Render from one source form, commit, edit, move the template on, check, update, check again."""
    source = request.param
    base = tmp_path_factory.mktemp(source.id)
    places = {"base": base, "home": base / "home", "upstream": base / "upstream", "clone": base / "home" / "lhd"}
    env = user_env(places["home"])
    (places["home"] / "elsewhere").mkdir(parents=True)
    upstream, clone = places["upstream"], places["clone"]
    commit_a = make_upstream(upstream, env, source.directory)
    git(base, "clone", "-q", upstream, clone, env=env)

    def fill(text):
        return text.format(**places)

    rendered = cookiecutter([fill(a) for a in source.args], fill(source.cwd), env, base / "out", shell=source.shell)
    project = base / "out" / PROJECT
    before = state(project)
    commit_project(project, env, "generated")
    fresh = cruft("check", project, *source.check, env=env)
    edit_as_user(project, env)

    commit_b = move_template(upstream, env, source.directory, branch=source.branch, tag=source.tag)
    git(clone, "pull", "-q", "--ff-only", env=env)
    behind = cruft("check", project, *source.check, env=env)
    updated = cruft("update", project, *source.update, check=True, env=env)
    after = state(project)
    commit_project(project, env, "template update")
    current = cruft("check", project, *source.check, env=env)
    return {"source": source, "fill": fill, "rendered": rendered, "project": project, "a": commit_a, "b": commit_b,
            "before": before, "fresh": fresh, "behind": behind, "updated": updated, "after": after,
            "current": current}


def test_state_names_template_and_commit(upgraded):
    """.cruft.json names a template cruft can clone, the commit rendered, the checkout and the directory."""
    source, before = upgraded["source"], upgraded["before"]
    expected = (upgraded["fill"](source.template), upgraded["a"], source.checkout, source.directory)
    assert (before["template"], before["commit"], before["checkout"], before["directory"]) == expected
    assert before["context"]["cookiecutter"]["_template"] == before["template"]
    assert before["template"] != str(upgraded["project"])


def test_render_warns_about_nothing(upgraded):
    """A git source renders without the no-commit warning."""
    assert "WARNING" not in output(upgraded["rendered"])


def test_fresh_project_is_up_to_date(upgraded):
    """Right after rendering, `cruft check` agrees the project matches its template."""
    assert upgraded["fresh"].returncode == 0, output(upgraded["fresh"])
    assert claims_up_to_date(upgraded["fresh"])


def test_check_reports_template_moved_on(upgraded):
    """Once the template has a new commit, `cruft check` fails and says the project is out of date."""
    assert upgraded["behind"].returncode == 1, output(upgraded["behind"])
    assert "out of date" in upgraded["behind"].stdout and not claims_up_to_date(upgraded["behind"])


def test_update_brings_change_and_keeps_edit(upgraded):
    """`cruft update` adds the template's change to the file the user edited, keeping the edit."""
    text = (upgraded["project"] / EDITED_FILE).read_text()
    assert text.startswith(USER_LINE), text
    assert text.endswith(TEMPLATE_LINE), text
    assert not re.search(r"^(<<<<<<<|>>>>>>>)", text, flags=re.M)


def test_update_records_new_commit(upgraded):
    """After the update .cruft.json names the new template commit and the checkout used for it."""
    after, source = upgraded["after"], upgraded["source"]
    checkout = source.update[1] if source.update else None
    assert (after["commit"], after["checkout"]) == (upgraded["b"], checkout)
    assert upgraded["b"] != upgraded["a"]
    assert (after["template"], after["directory"]) == (upgraded["before"]["template"], source.directory)


def test_check_passes_after_update(upgraded):
    """The updated, committed project is up to date again."""
    assert upgraded["current"].returncode == 0, output(upgraded["current"])
    assert claims_up_to_date(upgraded["current"])
