"""Option combinations as data: the bakes the render and lint tiers check.

Chosen by what changes the output, as cookiecutter-django lists its
combinations: every choice that changes a file is crossed with the others,
and a value that changes nothing in some combination is left out there, so no
two bakes render the same project (tests/render/test_generation.py proves it).
What does not change output:

- `template_update_check` without a CI file (`ci=none`): the job lives in the
  CI file, so only its default is baked there;
- the Let's Encrypt account beyond `tls=letsencrypt`: a different e-mail
  changes one line, which test_prompts.py and test_names_follow_answers cover;
- free-text answers (names, domain), covered by test_names_follow_answers.

Test ids read ``key:value-key:value``, naming the values that differ from the
defaults (for `ci`, the default is the git host), or ``defaults``.
"""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COOKIECUTTER_JSON = json.loads((ROOT / "cookiecutter.json").read_text())

KEYS = ("git_host", "ci", "tls", "monitoring", "template_update_check")

# One row per bake; the first is the defaults.
TABLE = [
    ("gitlab", "gitlab", "origin-certs", "yes", "yes"),
    ("gitlab", "gitlab", "origin-certs", "yes", "no"),
    ("gitlab", "gitlab", "origin-certs", "no", "yes"),
    ("gitlab", "gitlab", "origin-certs", "no", "no"),
    ("gitlab", "gitlab", "letsencrypt", "yes", "yes"),
    ("gitlab", "gitlab", "letsencrypt", "yes", "no"),
    ("gitlab", "gitlab", "letsencrypt", "no", "yes"),
    ("gitlab", "gitlab", "letsencrypt", "no", "no"),
    ("gitlab", "none", "origin-certs", "yes", "yes"),
    ("gitlab", "none", "origin-certs", "no", "yes"),
    ("gitlab", "none", "letsencrypt", "yes", "yes"),
    ("gitlab", "none", "letsencrypt", "no", "yes"),
    ("github", "github", "origin-certs", "yes", "yes"),
    ("github", "github", "origin-certs", "yes", "no"),
    ("github", "github", "origin-certs", "no", "yes"),
    ("github", "github", "origin-certs", "no", "no"),
    ("github", "github", "letsencrypt", "yes", "yes"),
    ("github", "github", "letsencrypt", "yes", "no"),
    ("github", "github", "letsencrypt", "no", "yes"),
    ("github", "github", "letsencrypt", "no", "no"),
    ("github", "none", "origin-certs", "yes", "yes"),
    ("github", "none", "origin-certs", "no", "yes"),
    ("github", "none", "letsencrypt", "yes", "yes"),
    ("github", "none", "letsencrypt", "no", "yes"),
]
SUPPORTED = [dict(zip(KEYS, row, strict=True)) for row in TABLE]

# Refused by hooks/pre_gen_project.py (COMBINATION_RULES): a CI file for the other host.
REJECTED = [
    {"git_host": "gitlab", "ci": "github"},
    {"git_host": "github", "ci": "gitlab"},
]


def default_for(key, combo):
    """The value cookiecutter picks for key when it is not given: ci follows git_host."""
    # ci's first option is "{{ cookiecutter.git_host }}", rendered before it is taken
    # (cookiecutter 2.7.1, cookiecutter/prompt.py, prompt_choice_for_config).
    if key == "ci":
        return combo.get("git_host", COOKIECUTTER_JSON["git_host"][0])
    value = COOKIECUTTER_JSON[key]
    return value[0] if isinstance(value, list) else value


def combo_id(combo):
    """Readable pytest id: only the values that differ from the defaults."""
    parts = [f"{k}:{v}" for k, v in combo.items() if default_for(k, combo) != v]
    return "-".join(parts) or "defaults"


def rendered_defaults():
    """Every answer cookiecutter derives from cookiecutter.json with no input: questions, pins, derived values."""
    from cookiecutter.generate import generate_context
    from cookiecutter.prompt import prompt_for_config

    context = generate_context(context_file=str(ROOT / "cookiecutter.json"))
    answers = prompt_for_config(context, no_input=True)
    return {k: v for k, v in answers.items() if isinstance(v, str)}
