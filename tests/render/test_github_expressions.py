"""harness/github_steps.py's GitHub expression evaluator and file commands, against the "Expressions" reference
(https://docs.github.com/actions/learn-github-actions/expressions); no engine."""

import pytest

from harness.github_steps import (
    ExpressionError,
    Status,
    Unsupported,
    condition,
    evaluate,
    interpolate,
    parse_file_commands,
)

CONTEXTS = {
    "github": {"event_name": "push", "ref": "refs/heads/main", "ref_name": "main", "base_ref": ""},
    "env": {"PRODUCTION_DOMAIN": "example.com", "STAGING_DOMAIN": "staging.example.com"},
    "steps": {"tags": {"outputs": {"sha": "0123abcd"}, "outcome": "success"}},
    "needs": {"build": {"result": "success", "outputs": {"digests": "a b"}}},
    "secrets": {"SSH_KEY": ""},
    "inputs": {"subtractive": False},
    "vars": {},
}


@pytest.mark.parametrize("expression, value", [
    # && and || return an operand, not a boolean
    ("github.ref_name == 'main' && 'production' || 'staging'", "production"),
    ("github.ref_name == 'staging' && 'production' || 'staging'", "staging"),
    ("'' || 'fallback'", "fallback"),
    ("'x' && ''", ""),
    ("null || 0", 0),
    ("!''", True),
    ("!'false'", False),  # a non-empty string is truthy
    # loose equality: strings ignore case; different types are compared as numbers
    ("'MAIN' == 'main'", True),
    ("'1' == 1", True),
    ("null == 0", True),
    ("true == 1", True),
    ("'' == 0", True),
    ("'abc' == 0", False),  # NaN equals nothing
    ("'abc' != 0", True),
    ("null == ''", True),
    ("2 > '10'", False),
    ("'b' > 'A'", True),
    # contexts: a missing property is null; case-insensitive names
    ("github.nothing", None),
    ("GitHub.Event_Name", "push"),
    ("steps.tags.outputs.sha", "0123abcd"),
    ("steps['tags'].outputs['sha']", "0123abcd"),
    ("needs.build.outputs.digests", "a b"),
    ("needs.build.result == 'success' && !(github.event_name == 'pull_request')", True),
    ("inputs.subtractive", False),
    # functions
    ("format('https://api.{0}', github.ref_name == 'main' && env.PRODUCTION_DOMAIN || env.STAGING_DOMAIN)",
     "https://api.example.com"),
    ("format('{{{0}}} {1}', 'a', true)", "{a} true"),
    ("contains('Hello', 'ELL')", True),
    ("startsWith(github.ref, 'refs/heads/')", True),
    ("endsWith(github.ref, 'MAIN')", True),
    ("fromJSON('[1, 2]')[1]", 2),
    ("'It''s'", "It's"),
    ("0xff == 255", True),
])
def test_expression_values(expression, value):
    got = evaluate(expression, CONTEXTS)
    assert got == value and type(got) is type(value) or (isinstance(value, (int, float)) and got == value), got


@pytest.mark.parametrize("text, status, expected", [
    # without a status function an if is success() && (...)
    ("github.event_name == 'push'", Status(), True),
    ("github.event_name == 'push'", Status(succeeded=False, failed=True), False),
    ("always()", Status(succeeded=False, failed=True), True),
    ("failure()", Status(succeeded=False, failed=True), True),
    ("failure()", Status(), False),
    (None, Status(succeeded=False, failed=True), False),
    ("${{ github.event_name == 'push' }}", Status(), True),
    ("github.event_name == 'push' || (github.event_name == 'workflow_dispatch' &&\n(github.ref == "
     "'refs/heads/main' || github.ref == 'refs/heads/staging'))", Status(), True),
    (False, Status(), False),
])
def test_conditions(text, status, expected):
    assert condition(text, CONTEXTS, status) is expected


def test_interpolation_writes_values_as_github_does():
    text = "sha=${{ steps.tags.outputs.sha }} key=${{ secrets.SSH_KEY }} s=${{ inputs.subtractive }} n=${{ 1.50 }}"
    assert interpolate(text, CONTEXTS) == "sha=0123abcd key= s=false n=1.5"
    assert interpolate("${{ secrets.MISSING }}", CONTEXTS) == ""  # an unset secret is empty


@pytest.mark.parametrize("bad", ["github.ref_name == \"main\"", "github.", "(1", "nope.x", "1 == = 2"])
def test_bad_expressions_are_refused(bad):
    with pytest.raises((ExpressionError, Unsupported)):
        evaluate(bad, CONTEXTS)


def test_unsupported_function_is_named():
    with pytest.raises(Unsupported, match="hashFiles"):
        evaluate("hashFiles('x')", CONTEXTS)


def test_file_commands():
    text = "sha=0123abcd\ndigests=a@sha256:1 b@sha256:2\nbody<<EOF\nline 1\nline=2\nEOF\nempty=\n"
    assert parse_file_commands(text) == {"sha": "0123abcd", "digests": "a@sha256:1 b@sha256:2",
                                         "body": "line 1\nline=2", "empty": ""}
    with pytest.raises(Unsupported):
        parse_file_commands("body<<EOF\nno end\n")
