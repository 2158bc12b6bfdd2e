"""`nox -s all` runs every proof (harness/lanes.py): every tier in lanes that run at once. The lanes cover every test
module exactly once, the tiers that deploy to this host's swarm share its lane, and the runner runs lanes side by
side, a lane's steps one after another, with each step's output whole; once the gate (compile) fails, no step
starts."""

import ast
import os
import sys
from pathlib import Path

import pytest

from harness import lanes
from harness.combinations import ROOT

SWARM_LANE = "swarm"


def modules(paths):
    """The test modules given, or under the folders given (paths relative to the repository)."""
    found = []
    for path in paths:
        full = ROOT / path
        found += [full] if full.is_file() else full.rglob("test_*.py")
    return sorted(str(module.relative_to(ROOT)) for module in found)


def sources(paths):
    """The test modules of paths and the conftest.py files pytest loads for them."""
    tests = ROOT / "tests"
    found = set(modules(paths))
    for module in list(found):
        folder = (ROOT / module).parent
        while folder != tests.parent:
            if (folder / "conftest.py").is_file():
                found.add(str((folder / "conftest.py").relative_to(ROOT)))
            folder = folder.parent
    return sorted(found)


def covered(lane_map):
    """Every module the steps of lane_map run, once per step that runs it."""
    return sorted(module for names in lane_map.values() for step in names
                  for module in modules(lanes.step_tier(step)[1]))


def holds_host_swarm(step):
    """True when a module of the step (or a conftest it loads) imports harness.swarm's Swarm: it deploys to this
    host's swarm."""
    for module in sources(lanes.step_tier(step)[1]):
        for node in ast.walk(ast.parse((ROOT / module).read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "harness.swarm" and \
                    any(alias.name == "Swarm" for alias in node.names):
                return True
    return False


def misplaced(lane_map):
    """Steps that deploy to this host's swarm outside its lane."""
    return [f"{step} deploys to this host's swarm but runs in lane {lane}"
            for lane, names in lane_map.items() if lane != SWARM_LANE for step in names if holds_host_swarm(step)]


def test_all_runs_every_test_module_once():
    assert covered(lanes.LANES) == modules(folder for folders in lanes.TIERS.values() for folder in folders)


def test_a_tier_left_out_of_the_lanes_is_found():
    without_drill = {lane: [s for s in names if s != "drill"] for lane, names in lanes.LANES.items()}
    assert covered(without_drill) != covered(lanes.LANES)
    assert "tests/drill/test_disaster_drill.py" not in covered(without_drill)


def test_a_part_of_a_tier_run_twice_is_found():
    twice = {**lanes.LANES, "extra": ["e2e:containers"]}
    assert covered(twice).count("tests/contracts/test_images.py") == 2


def test_the_tiers_that_deploy_to_this_hosts_swarm_share_its_lane():
    assert [step for step in lanes.steps() if holds_host_swarm(step)] == ["e2e:swarm"]
    assert misplaced(lanes.LANES) == []


def test_a_swarm_tier_in_another_lane_is_found():
    moved = {**lanes.LANES, "swarm": [], "host": ["e2e:swarm", *lanes.LANES["host"]]}
    assert misplaced(moved) == ["e2e:swarm deploys to this host's swarm but runs in lane host"]


def test_all_is_a_session_and_the_noxfile_says_what_it_runs():
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    named = [ast.unparse(d) for node in tree.body if isinstance(node, ast.FunctionDef) for d in node.decorator_list]
    assert any("name='all'" in d for d in named), named
    doc = ast.get_docstring(tree)
    assert "`nox -s all` runs every tier" in doc, doc


def default_sessions(source=None):
    """The sessions `nox` runs with no arguments (nox.options.sessions in the noxfile's source)."""
    tree = ast.parse(source if source is not None else (ROOT / "noxfile.py").read_text())
    return next(ast.literal_eval(node.value) for node in tree.body
                if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "nox.options.sessions")


def tiers_left_out(sessions):
    """The tiers no session of `sessions` runs: `all` runs every step of the lanes, any other session its tier."""
    run = {lanes.step_tier(step)[0] for step in lanes.steps()} if "all" in sessions else set(sessions)
    return sorted(set(lanes.TIERS) - run)


def test_nox_with_no_arguments_runs_every_tier():
    """What CI runs (.ci/run: the README's `python3 -m nox`) is every proof, pipeline and cluster included."""
    assert tiers_left_out(default_sessions()) == []


def test_a_default_run_without_a_tier_is_found():
    eight = 'nox.options.sessions = ["render", "lint", "upgrade", "compile", "e2e", "acme", "drill", "cluster"]'
    assert tiers_left_out(default_sessions(eight)) == ["pipeline"]


# -- the runner --------------------------------------------------------------------------------------------

def python(code):
    return [sys.executable, "-c", code]


def waits_for(mine, other):
    """A step that leaves its flag, then waits (10 s at most) for the other's: it passes only beside it."""
    return python(f"import pathlib, sys, time\npathlib.Path({str(mine)!r}).touch()\n"
                  f"end = time.monotonic() + 10\n"
                  f"while not pathlib.Path({str(other)!r}).exists():\n"
                  f"    if time.monotonic() > end: sys.exit('the other lane never ran beside this one')\n"
                  f"    time.sleep(0.05)\n"
                  f"print('1 passed in 0.1s')")


def test_lanes_run_at_once_and_a_lanes_steps_in_turn(tmp_path):
    echoed = []
    a, b = tmp_path / "a.flag", tmp_path / "b.flag"
    order = tmp_path / "order"
    commands = {
        "one": python(f"open({str(order)!r}, 'a').write('one ')\nprint('2 passed in 0.1s')"),
        "a": waits_for(a, b),
        "two": python(f"open({str(order)!r}, 'a').write('two ')\nprint('3 passed in 0.1s')"),
        "b": waits_for(b, a),
    }
    done = lanes.run_lanes({"x": ["one", "a"], "y": ["two", "b"]}, lambda step: (commands[step], None),
                           tmp_path / "logs", echo=echoed.append, poll=0.05)
    assert {s.name: s.status for s in done} == {"one": 0, "two": 0, "a": 0, "b": 0}, echoed
    by_name = {s.name: s for s in done}
    assert by_name["a"].started >= by_name["one"].started + by_name["one"].seconds - 0.1
    assert by_name["one"].result == "2 passed"


def test_a_failed_step_is_reported_and_its_lane_goes_on(tmp_path):
    echoed = []
    commands = {"bad": python("print('noise'); print('1 failed in 0.1s'); raise SystemExit(1)"),
                "after": python("print('4 passed in 0.1s')")}
    done = lanes.run_lanes({"x": ["bad", "after"]}, lambda step: (commands[step], None), tmp_path / "logs",
                           echo=echoed.append, poll=0.05)
    assert [(s.name, s.status, s.result) for s in done] == [("bad", 1, "1 failed"), ("after", 0, "4 passed")]
    closing = lanes.report(done, 1.0)
    assert closing[-1].endswith("failed: bad"), closing
    # the step's output is echoed whole, under its name, then its step= line
    block = next(text for text in echoed if "bad (x lane)" in text)
    assert "noise" in block and "1 failed" in block
    assert echoed[echoed.index(block) + 1].startswith("step=bad lane=x ")


def test_a_failed_gate_starts_no_further_step_and_lets_running_ones_end(tmp_path):
    echoed = []
    commands = {"gate": python("print('1 failed in 0.1s'); raise SystemExit(1)"),
                "slow": python("import time; time.sleep(0.5); print('2 passed in 0.5s')"),
                "after-gate": python("print('3 passed in 0.1s')"), "after-slow": python("print('4 passed in 0.1s')")}
    done = lanes.run_lanes({"x": ["gate", "after-gate"], "y": ["slow", "after-slow"]}, lambda step: (commands[step], None),
                           tmp_path / "logs", echo=echoed.append, poll=0.05, gate="gate")
    assert {s.name: (s.status, s.result) for s in done} == {
        "gate": (1, "1 failed"), "slow": (0, "2 passed"),
        "after-gate": (None, "(not run: gate failed)"), "after-slow": (None, "(not run: gate failed)")}, echoed
    assert lanes.report(done, 1.0)[-1].endswith("; failed: gate; not run: after-gate, after-slow")


def test_a_failed_step_other_than_the_gate_stops_nothing(tmp_path):
    commands = {"bad": python("raise SystemExit(1)"), "next": python("print('1 passed in 0.1s')")}
    done = lanes.run_lanes({"x": ["bad", "next"]}, lambda step: (commands[step], None), tmp_path / "logs",
                           echo=lambda text: None, poll=0.05, gate="compile")
    assert [(s.name, s.status) for s in done] == [("bad", 1), ("next", 0)]


def test_the_steps_named_nice_run_at_a_lower_priority_and_the_others_do_not(tmp_path):
    niceness = "import os; print('niceness', os.nice(0)); print('1 passed in 0.1s')"
    base = os.nice(0)
    done = lanes.run_lanes({"x": ["cpu"], "y": ["stack"]}, lambda step: (python(niceness), None), tmp_path / "logs",
                           echo=lambda text: None, poll=0.05, nice=("cpu",))
    assert {s.name: s.log.read_text().split()[1] for s in done} == {"cpu": str(min(base + lanes.NICE, 19)),
                                                                     "stack": str(base)}


def test_the_gate_is_the_compile_tier_and_the_first_step_of_its_lane():
    assert lanes.GATE == "compile"
    assert [lane[0] for lane in lanes.LANES.values()].count(lanes.GATE) == 1


def test_every_step_names_a_tier_or_a_part_of_one():
    for step in lanes.steps():
        tier, folders = lanes.step_tier(step)
        assert tier in lanes.TIERS and folders, step
        assert all(any(f == t or f.startswith(t + "/") for t in lanes.TIERS[tier]) for f in folders), step


def test_an_unknown_step_is_refused():
    with pytest.raises(KeyError):
        lanes.step_tier("e2e:everything")


def test_logs_live_where_the_runner_was_told(tmp_path):
    echoed = []
    lanes.run_lanes({"x": ["s:1"]}, lambda step: (python("print('1 passed in 0.1s')"), None), tmp_path / "logs",
                    echo=echoed.append, poll=0.05)
    assert (Path(tmp_path) / "logs" / "s-1.log").read_text().startswith("1 passed")
