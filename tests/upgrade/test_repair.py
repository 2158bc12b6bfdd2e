"""Projects whose .cruft.json names no usable template commit, and their documented repair.

Two such states exist: the one earlier template versions wrote after
`cookiecutter .` (the project itself as template, commit null: `cruft check`
says "up to date" forever), and the one this template writes when rendered
from a copy that is not a git checkout (no commit: cruft fails). Both are
repaired with the shell block of README.md's "Upgrading" section, run as
written; afterwards `cruft check` flags the moved template and `cruft update`
brings it in.
"""

import json

import pytest

from harness.combinations import ROOT
from harness.proc import run
from harness.upgrade import (
    DAY_PROJECT,
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
    repair_block,
    runnable,
    state,
    user_env,
)


def break_like_old_hook(project):
    """Rewrite .cruft.json the way the hook wrote it before issue 16 was fixed, after `cookiecutter .`."""
    good = state(project)
    bad = dict(good, template=str(project), commit=None, checkout=None, directory=None)
    context = {k: v for k, v in good["context"]["cookiecutter"].items() if k != "_commit"}
    bad["context"] = {"cookiecutter": dict(context, _template=".")}
    (project / ".cruft.json").write_text(json.dumps(bad, indent=2) + "\n")


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """A template copy made with `git archive` and unpacked: no git anywhere, then rendered with `.`."""
    base = tmp_path_factory.mktemp("archive")
    env = user_env(base / "home")
    make_upstream(base / "upstream", env)
    tarball = base / "lhd-1.0.tar"
    git(base / "upstream", "archive", "--format=tar", "--prefix=lhd-1.0/", "-o", tarball, "HEAD", env=env)
    (base / "home").mkdir()
    run(["tar", "-xf", tarball, "-C", base / "home"], env=env)
    copy = base / "home" / "lhd-1.0"
    rendered = cookiecutter(["."], copy, env, base / "out")
    project = base / "out" / PROJECT
    commit_project(project, env, "generated")
    return {"env": env, "copy": copy, "project": project, "rendered": rendered, "state": state(project),
            "check": cruft("check", project, env=env), "update": cruft("update", project, env=env)}


def test_archive_render_succeeds_with_a_short_warning(archive):
    """Rendering from a copy without git works, and says on stderr (in two lines) that upgrades need git."""
    warning = [line for line in archive["rendered"].stderr.splitlines() if line.strip()]
    assert len(warning) == 2, archive["rendered"].stderr
    assert warning[0].startswith("WARNING: .cruft.json names no template commit")
    assert "git source" in warning[1]
    assert (archive["project"] / "script/up").is_file()


def test_archive_state_has_no_commit(archive):
    """.cruft.json keeps answers and skip list but names no commit, and the copy as the template."""
    recorded = archive["state"]
    assert "commit" not in recorded and "_commit" not in recorded["context"]["cookiecutter"]
    assert recorded["template"] == str(archive["copy"])
    assert recorded["context"]["cookiecutter"]["project_name"] == PROJECT
    assert ".env" in recorded["skip"]


@pytest.mark.parametrize("command", ["check", "update"])
def test_archive_project_never_claims_up_to_date(archive, command):
    """`cruft check` and `cruft update` fail, and neither says "up to date"."""
    result = archive[command]
    assert result.returncode != 0 and not claims_up_to_date(result), output(result)


def test_archive_project_fails_even_once_the_copy_becomes_a_repository(archive):
    """Making the unpacked copy a git repository later still gives no false "up to date"."""
    env, copy = archive["env"], archive["copy"]
    commit_project(copy, env, "the archive, committed")
    result = cruft("check", archive["project"], env=env)
    assert result.returncode != 0 and not claims_up_to_date(result), output(result)


def old_hook_project(base, env, clone):
    """A project rendered from a clone with `.` whose .cruft.json is then written as the old hook did."""
    cookiecutter(["."], clone, env, base / "out")
    project = base / "out" / PROJECT
    break_like_old_hook(project)
    return project


def archive_project(base, env, clone):
    """A project rendered from an unpacked `git archive` of the template (no commit recorded)."""
    tarball = base / "lhd.tar"
    git(clone, "archive", "--format=tar", "--prefix=lhd-1.0/", "-o", tarball, "HEAD", env=env)
    run(["tar", "-xf", tarball, "-C", base / "home"], env=env)
    cookiecutter(["."], base / "home" / "lhd-1.0", env, base / "out")
    return base / "out" / PROJECT


@pytest.fixture(scope="module", params=[old_hook_project, archive_project], ids=["old-hook-state", "archive-state"])
def repaired(request, tmp_path_factory):
    """A broken project, committed and edited; the template moves on; README.md's repair block runs."""
    base = tmp_path_factory.mktemp(request.param.__name__)
    env = user_env(base / "home")
    upstream, clone = base / "upstream", base / "home" / "lhd"
    commit_a = make_upstream(upstream, env)
    git(base, "clone", "-q", upstream, clone, env=env)
    project = request.param(base, env, clone)
    commit_project(project, env, "generated", date=DAY_PROJECT)
    edit_as_user(project, env)
    commit_b = move_template(upstream, env)
    git(clone, "pull", "-q", "--ff-only", env=env)
    broken = cruft("check", project, env=env)

    block = repair_block(ROOT / "README.md")
    run(["bash", "-euc", runnable(block)], cwd=project, env=dict(env, clone=str(clone), template=str(clone)))
    repaired_state = state(project)
    behind = cruft("check", project, env=env)
    cruft("update", project, check=True, env=env)
    return {"project": project, "a": commit_a, "b": commit_b, "broken": broken, "block": block,
            "repaired": repaired_state, "behind": behind, "after": state(project), "clone": clone}


def test_broken_state_misleads_before_repair(repaired):
    """Before the repair cruft cannot see the new template commit: it fails, or wrongly says up to date."""
    broken = repaired["broken"]
    assert broken.returncode != 0 or claims_up_to_date(broken), output(broken)
    assert "out of date" not in broken.stdout


def test_repair_names_template_and_rendered_commit(repaired):
    """The repair points .cruft.json at the template and at the commit the project was rendered from."""
    recorded = repaired["repaired"]
    assert (recorded["template"], recorded["commit"]) == (str(repaired["clone"]), repaired["a"])
    assert recorded["context"]["cookiecutter"]["project_name"] == PROJECT
    assert ".env" in recorded["skip"]


def test_check_flags_outdated_after_repair(repaired):
    """After the repair `cruft check` reports the moved template."""
    assert repaired["behind"].returncode == 1, output(repaired["behind"])
    assert "out of date" in repaired["behind"].stdout


def test_update_works_after_repair(repaired):
    """`cruft update` then brings the template change next to the user's edit and records the new commit."""
    text = (repaired["project"] / EDITED_FILE).read_text()
    assert text.startswith(USER_LINE) and text.endswith(TEMPLATE_LINE), text
    assert repaired["after"]["commit"] == repaired["b"]


def test_both_readmes_give_the_same_repair(repaired):
    """The generated project's docs/upgrading.md carries the very block README.md gives."""
    assert repair_block(repaired["project"] / "docs/upgrading.md") == repaired["block"]
