"""The README's two commands for a fresh machine: the first renders a project beside the clone, the second runs the
whole suite, and `.ci/run` runs exactly that second command and nothing before it (so CI fails where a new user
would)."""

import re
import shlex
import sys

from harness.combinations import COOKIECUTTER_JSON, ROOT
from harness.proc import run


def readme_commands():
    """The lines of the README's first shell block."""
    block = re.search(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def ci_commands():
    """The commands .ci/run runs: its lines less comments, the shebang, `set` and the `cd` to the repository."""
    lines = (ROOT / ".ci/run").read_text().splitlines()
    return [line for line in lines
            if line.strip() and not line.startswith("#") and not line.startswith(("set ", 'cd "$(dirname'))]


def test_readme_starts_with_a_render_and_a_test_command():
    render, suite = readme_commands()
    assert "cookiecutter" in render and "nox" in suite


def test_ci_runs_exactly_the_readme_test_command():
    """Nothing runs before the README's test command in CI: no bootstrap, no install the user would not do."""
    assert ci_commands() == [readme_commands()[1]]


def test_render_command_renders_beside_the_clone(tmp_path):
    """The README's render command, run in a fresh clone, writes the project next to the clone and leaves the clone
    itself untouched (nothing of the suite can trip over a project rendered inside it)."""
    render = readme_commands()[0]
    cookiecutter = render.split("&&")[1].split()
    assert cookiecutter[:3] == ["python3", "-m", "cookiecutter"]
    clone = tmp_path / "lhd"
    run(["git", "clone", "--quiet", ROOT, clone])
    run([sys.executable, *cookiecutter[1:], "--no-input"], cwd=clone)
    project = tmp_path / COOKIECUTTER_JSON["project_name"]
    assert (project / ".cruft.json").is_file() and (project / "script/up").is_file()
    assert run(["git", "status", "--porcelain", "--ignored"], cwd=clone).stdout == ""


def test_render_command_pins_the_cookiecutter_the_suite_uses():
    """The render command installs the cookiecutter version the harness is pinned to (requirements/constraints.txt)."""
    pinned = re.search(r"^cookiecutter==(\S+)$", (ROOT / "requirements/constraints.txt").read_text(), re.M).group(1)
    assert f"cookiecutter=={pinned}" in shlex.split(readme_commands()[0])


def test_noxfile_docstring_lists_the_sessions_nox_runs():
    """The noxfile's first line names exactly the sessions `nox` runs, in order (nox.options.sessions)."""
    import ast

    tree = ast.parse((ROOT / "noxfile.py").read_text())
    sessions = next(ast.literal_eval(node.value) for node in tree.body
                    if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "nox.options.sessions")
    first_line = ast.get_docstring(tree).splitlines()[0]
    assert first_line.endswith(f"`nox` runs {', '.join(sessions)}.")
