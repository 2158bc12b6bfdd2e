"""Refuse an answer that holds Jinja syntax before cookiecutter runs it as code.

cookiecutter 2.7.1 renders each answer given without a prompt (extra context on the command
line, a .cruft.json that cruft passes back, ~/.cookiecutterrc) as a Jinja template while it
collects them (cookiecutter/prompt.py, prompt_for_config -> render_variable:
env.from_string(raw).render()), before hooks/pre_gen_project.py sees any value: an answer
`tls={{ cycler.__init__.__globals__.os.getpid() }}@example.com` runs Python. The pre-gen hook
only sees the result, so the refusal has to happen here.

This is a Jinja extension listed in cookiecutter.json `_extensions`: cookiecutter 2.7.1 loads the
listed extensions into every Environment it makes (cookiecutter/environment.py,
ExtensionLoaderMixin; cookiecutter/utils.py, create_env_with_context), with the template
directory on sys.path while it prompts and generates (cookiecutter/main.py,
_patch_import_path_for_repo); cruft 2.16.0 calls prompt_for_config and generate_files itself
with its clone on sys.path (cruft/_commands/utils/iohelper.py, AltTemporaryDirectory). Jinja
3.1.6 hands every source to Extension.preprocess before it parses it (jinja2/environment.py,
Environment._tokenize).

A source from Environment.from_string (name None) that holds Jinja syntax is refused unless it is
the template's own text: a string of its cookiecutter.json (the defaults such as
`{{ cookiecutter.project_name }}`), the name of an entry of its top directory (the project
directory `{{cookiecutter.project_name}}`) or a hook script (cookiecutter/hooks.py,
run_script_with_context renders it with from_string). These are all the from_string sources a
render of this template makes besides answers and paths built from answers. Files of the project
are loaded by name (name not None) and are template text.
"""

import json
import sys
from pathlib import Path

from cookiecutter.exceptions import FailedHookException
from jinja2.ext import Extension

EXTENSION = f"{__name__}.RefuseJinjaInAnswers"


class JinjaInAnswer(FailedHookException):
    """An answer holds Jinja syntax.

    A FailedHookException because cookiecutter 2.7.1's command line prints exactly those (and a few
    others) as one line and exits 1 (cookiecutter/cli.py, main); any other exception is a traceback.
    """


def template_dirs():
    """Directories of the templates in use: this file's, and each on sys.path that lists this extension.

    A process can render several copies of the template (tests, cruft update's two commits) while
    Python imports this module once, from the first.
    """
    found = [Path(__file__).resolve().parent.parent]
    for entry in sys.path:
        directory = Path(entry or ".").resolve()
        try:
            config = json.loads((directory / "cookiecutter.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(config, dict) and EXTENSION in (config.get("_extensions") or []) and directory not in found:
            found.append(directory)
    return found


def strings(value):
    """Every string in a JSON value, nested lists and objects included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)


def template_text(directory):
    """The from_string sources a render of the template at directory makes from its own text."""
    try:
        yield from strings(json.loads((directory / "cookiecutter.json").read_text(encoding="utf-8")))
    except (OSError, ValueError):
        pass
    try:
        yield from (entry.name for entry in directory.iterdir())
        yield from (hook.read_text(encoding="utf-8") for hook in (directory / "hooks").iterdir() if hook.is_file())
    except (OSError, UnicodeDecodeError):
        pass


def building_context():
    """The context cookiecutter is building the current Environment from, or None.

    cookiecutter 2.7.1 keeps it in the `context` argument of ExtensionLoaderMixin.__init__
    (cookiecutter/environment.py), which is on the stack while Jinja makes the extensions.
    """
    from cookiecutter.environment import ExtensionLoaderMixin

    code = ExtensionLoaderMixin.__init__.__code__
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is code:
            return frame.f_locals.get("context")
        frame = frame.f_back
    return None


def jinja_markers(environment):
    """What starts Jinja syntax in this environment: its delimiters and line prefixes."""
    markers = [environment.variable_start_string, environment.block_start_string, environment.comment_start_string]
    return [m for m in markers + [environment.line_statement_prefix, environment.line_comment_prefix] if m]


class RefuseJinjaInAnswers(Extension):
    """Refuse, before parsing, a from_string source with Jinja syntax that is not the template's own text."""

    def __init__(self, environment):
        super().__init__(environment)
        self.markers = jinja_markers(environment)
        self.allowed = {text for directory in template_dirs() for text in template_text(directory)}
        context = building_context() or {}
        self.answers = context.get("cookiecutter", {}) if isinstance(context, dict) else {}

    def names_of(self, source):
        """The answers whose value is source (a choice counts by any of its options)."""
        return [key for key, value in self.answers.items()
                if value == source or (isinstance(value, list) and source in value)]

    def preprocess(self, source, name, filename=None):
        if name is not None or source in self.allowed:
            return source
        found = [m for m in self.markers if m in source]
        if found:
            names = self.names_of(source)
            what = f"{names[0]}={source!r}" if names else f"the template string {source!r}"
            raise JinjaInAnswer(
                f"ERROR: {what} is not valid: it contains Jinja syntax ({', '.join(map(repr, found))}), which "
                "cookiecutter would run as code before any check; give the value itself, without Jinja.")
        return source
