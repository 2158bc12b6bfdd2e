"""CHANGELOG.md in the generated project holds the server-side steps of each template release; a template
commit that adds an entry reaches a project through `cruft update`, next to the user's own edits.

As the other upgrade tests: a throwaway template repository at commit A, a project rendered from it,
committed and edited by "the user" (their README notes); the template commits B with a new CHANGELOG
entry; `cruft update` as the generated docs/upgrading.md gives it.
"""

import json

import pytest

from harness.upgrade import (
    DAY_B,
    DAY_PROJECT,
    PROJECT,
    TPL,
    commit_project,
    cookiecutter,
    cruft,
    git,
    make_upstream,
    output,
    user_env,
)

ENTRY = ("## 2027-01: a new secret\n\n"
         "- Run `script/bootstrap` once: it writes `etc/secrets/new_secret`.\n\n")
FIRST_ENTRY = "## 2026-12: the README runbook"
USER_NOTE = "\n## Our servers\n\nProduction is prod-1; staging is stage-1.\n"


@pytest.fixture(scope="module")
def updated(tmp_path_factory):
    base = tmp_path_factory.mktemp("changelog")
    env = user_env(base / "home")
    upstream = base / "upstream"
    make_upstream(upstream, env)
    cookiecutter([str(upstream)], base, env, base / "out")
    project = base / "out" / PROJECT
    commit_project(project, env, "generated", date=DAY_PROJECT)
    before = (project / "CHANGELOG.md").read_text()
    readme = project / "README.md"
    readme.write_text(readme.read_text() + USER_NOTE)
    git(project, "commit", "-qam", "our notes", env=env)

    changelog = upstream / TPL / "CHANGELOG.md"
    text = changelog.read_text()
    assert FIRST_ENTRY in text, "the template's CHANGELOG.md has no entry to put a new one above"
    changelog.write_text(text.replace(FIRST_ENTRY, ENTRY + FIRST_ENTRY, 1))
    git(upstream, "commit", "-qam", "B: a release with a server-side step", date=DAY_B, env=env)
    result = cruft("update", project, env=env)
    return {"project": project, "before": before, "result": result, "env": env,
            "check": cruft("check", project, env=env)}


def test_the_project_has_a_changelog_cruft_updates(updated):
    """The rendered project carries CHANGELOG.md with this release's server step, and cruft does not skip it."""
    assert FIRST_ENTRY in updated["before"] and "script/bootstrap" in updated["before"]
    skip = json.loads((updated["project"] / ".cruft.json").read_text())["skip"]
    assert not any("CHANGELOG" in entry for entry in skip), skip


def test_a_new_entry_reaches_the_updated_project(updated):
    """After `cruft update` the new entry stands above the older one, the user's README notes are kept,
    nothing is left in conflict, and `cruft check` calls the project up to date."""
    assert updated["result"].returncode == 0, output(updated["result"])
    text = (updated["project"] / "CHANGELOG.md").read_text()
    assert ENTRY + FIRST_ENTRY in text, text
    assert (updated["project"] / "README.md").read_text().endswith(USER_NOTE)
    status = git(updated["project"], "status", "--porcelain", env=updated["env"])
    assert not [line for line in status.splitlines() if line[:2] in ("UU", "AA", "DU", "UD")], status
    assert not list(updated["project"].rglob("*.rej"))
    assert updated["check"].returncode == 0, output(updated["check"])
