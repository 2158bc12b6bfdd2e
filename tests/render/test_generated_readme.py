"""What the generated README tells its reader to run agrees with the scripts and with the machines they run on
(the contradictions the generated-README review of 2026-12 found, each held by a test)."""

import re

from harness.combinations import ROOT


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
