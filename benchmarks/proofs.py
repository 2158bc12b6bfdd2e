"""Print the proofs per tier: collected tests and the assert statements in them.

    python3 -m benchmarks.proofs [CHECKOUT]

CHECKOUT (default: this one) is any checkout of this repository, so a count can be compared across commits
(`git worktree add /tmp/before <commit>`, then `python3 -m benchmarks.proofs /tmp/before`). For each marker,
`pytest --collect-only -q -m MARKER` (in CHECKOUT, with this interpreter) lists the tests; each collected test
function is counted once however it is parametrized, and its `assert` statements are counted from its source
(the asserts of helpers it calls are not). Collection needs no engine.
"""

import ast
import sys
from collections import Counter
from pathlib import Path

from harness.proc import run

MARKERS = ("render", "lint", "upgrade", "compile", "docker", "cluster", "pipeline", "acme")


def registered(checkout):
    """The markers checkout's pytest configuration registers."""
    result = run([sys.executable, "-m", "pytest", "--markers", "-p", "no:cacheprovider"], cwd=checkout, timeout=600)
    return {line.split(":")[0].removeprefix("@pytest.mark.").split("(")[0] for line in result.stdout.splitlines()
            if line.startswith("@pytest.mark.")}


def collected(checkout, marker):
    """Node ids pytest collects for the marker in checkout."""
    result = run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m", marker],
                 cwd=checkout, check=False, timeout=600)
    return [line for line in result.stdout.splitlines() if "::" in line]


def asserts_by_function(path):
    """(class or None, function name) -> number of assert statements in the test function's body."""
    tree = ast.parse(path.read_text())
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    found[(node.name, item.name)] = sum(isinstance(n, ast.Assert) for n in ast.walk(item))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            found[(None, node.name)] = sum(isinstance(n, ast.Assert) for n in ast.walk(node))
    return found


def proofs(checkout, node_ids):
    """(tests collected, distinct test functions, assert statements in them)."""
    functions = set()
    for node_id in node_ids:
        parts = node_id.split("[")[0].split("::")
        functions.add((parts[0], parts[1] if len(parts) == 3 else None, parts[-1]))
    parsed, total = {}, 0
    for module, cls, name in functions:
        if module not in parsed:
            parsed[module] = asserts_by_function(checkout / module)
        total += parsed[module].get((cls, name), 0)
    return len(node_ids), len(functions), total


def main():
    checkout = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    totals = Counter()
    print(f"proofs in {checkout}")
    print(f"{'marker':<10}{'tests':>8}{'functions':>11}{'asserts':>9}")
    known = registered(checkout)
    for marker in (m for m in MARKERS if m in known):
        tests, functions, asserts = proofs(checkout, collected(checkout, marker))
        totals.update(tests=tests, functions=functions, asserts=asserts)
        print(f"{marker:<10}{tests:>8}{functions:>11}{asserts:>9}")
    print(f"{'all':<10}{totals['tests']:>8}{totals['functions']:>11}{totals['asserts']:>9}")


if __name__ == "__main__":
    main()
