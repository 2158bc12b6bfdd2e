"""Option combinations as data, derived from cookiecutter.json.

Every choice variable in cookiecutter.json is crossed with every other; the
UNSUPPORTED patterns remove the pairs the pre-generation hook rejects. Test
ids read ``key:value-key:value`` so a failure names its combination.
"""

import itertools
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COOKIECUTTER_JSON = json.loads((ROOT / "cookiecutter.json").read_text())

CHOICES = {k: v for k, v in COOKIECUTTER_JSON.items() if isinstance(v, list) and not k.startswith("_")}
DEFAULTS = {k: (v[0] if isinstance(v, list) else v) for k, v in COOKIECUTTER_JSON.items() if not k.startswith("_")}

# A combination matching every key/value of one of these is refused by
# hooks/pre_gen_project.py (COMBINATION_RULES).
UNSUPPORTED = [
    {"git_host": "gitlab", "ci": "github"},
    {"git_host": "github", "ci": "gitlab"},
]


def matches(combo, pattern):
    """Return True when combo has every key/value of pattern."""
    return all(combo.get(k) == v for k, v in pattern.items())


def all_combinations():
    """Every cross product of the choice variables, as dicts."""
    keys = list(CHOICES)
    for values in itertools.product(*(CHOICES[k] for k in keys)):
        yield dict(zip(keys, values, strict=True))


SUPPORTED = [c for c in all_combinations() if not any(matches(c, p) for p in UNSUPPORTED)]
REJECTED = [c for c in all_combinations() if any(matches(c, p) for p in UNSUPPORTED)]


def combo_id(combo):
    """Readable pytest id: only the values that differ from the defaults."""
    parts = [f"{k}:{v}" for k, v in combo.items() if DEFAULTS.get(k) != v]
    return "-".join(parts) or "defaults"


def rendered_defaults():
    """The answers cookiecutter derives from cookiecutter.json with no input."""
    from cookiecutter.generate import generate_context
    from cookiecutter.prompt import prompt_for_config

    context = generate_context(context_file=str(ROOT / "cookiecutter.json"))
    answers = prompt_for_config(context, no_input=True)
    return {k: v for k, v in answers.items() if not k.startswith("_")}
