"""The memory, log-rotation, grace-period and placement rules fail on deliberately broken stacks."""

import copy

import pytest

from harness.rules import checks

LOGGING = {"driver": "json-file", "options": {"max-size": "10m", "max-file": "5"}}
GOOD = {
    "services": {
        "postgres": {"stop_grace_period": "1m", "logging": LOGGING,
                     "deploy": {"resources": {"limits": {"memory": "768M"}, "reservations": {"memory": "268435456"}},
                                "placement": {"constraints": ["node.labels.app.db == true"]}}},
        "lucky": {"logging": LOGGING,
                  "deploy": {"resources": {"limits": {"memory": "256M"}, "reservations": {"memory": "64M"}}}},
    }
}
README = """| Service | Reservation | Limit |
| --- | --- | --- |
| `postgres` | 256M | 768M |
| `lucky` | 64M | 256M |
"""

BREAKS = {
    "no-limit": lambda s: s["lucky"]["deploy"]["resources"].pop("limits"),
    "no-reservation": lambda s: s["lucky"]["deploy"]["resources"].pop("reservations"),
    "reservation-over-limit": lambda s: s["lucky"]["deploy"]["resources"]["reservations"].update(memory="1G"),
    "no-log-rotation": lambda s: s["lucky"]["logging"]["options"].pop("max-size"),
    "other-log-driver": lambda s: s["lucky"].update(logging={"driver": "syslog"}),
    "short-grace": lambda s: s["postgres"].update(stop_grace_period="10s"),
    "placed-by-role": lambda s: s["postgres"]["deploy"]["placement"].update(constraints=["node.role == manager"]),
}


def broken(mutate):
    stack = copy.deepcopy(GOOD)
    mutate(stack["services"])
    return stack


def test_good_stack_passes(tmp_path):
    """The reference stack and its README table are clean, so each break below isolates one rule."""
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert checks.resource_problems(GOOD, "app") == []
    assert checks.memory_table_problems(readme, GOOD) == []


@pytest.mark.parametrize("name", BREAKS)
def test_resource_rules_bite(name):
    assert checks.resource_problems(broken(BREAKS[name]), "app")


def test_memory_table_bites(tmp_path):
    """A README row that says other than the stack, or no row, is a problem."""
    readme = tmp_path / "README.md"
    readme.write_text(README.replace("| `lucky` | 64M | 256M |", "| `lucky` | 64M | 512M |"))
    assert checks.memory_table_problems(readme, GOOD)
    readme.write_text(README.replace("| `lucky` | 64M | 256M |\n", ""))
    assert checks.memory_table_problems(readme, GOOD)
