"""Bounded waits: a condition polled until it holds or its time runs out, never a fixed sleep."""

import time

from harness.timing import timed


class WaitTimeout(AssertionError):
    """A wait ran out; the message names what was awaited and the last error seen."""


def until(check, timeout, what, pause=0.5):
    """Call check() every `pause` s until it returns a truthy value, and return that value.

    After `timeout` s raise WaitTimeout naming `what` (a string, or a callable
    evaluated only then, e.g. to include logs) and the last exception check raised.
    """
    with timed("wait (polling until a condition holds)"):
        return _poll(check, timeout, what, pause)


def _poll(check, timeout, what, pause):
    deadline = time.monotonic() + timeout
    error = None
    while True:
        try:
            value = check()
        except Exception as exc:  # noqa: BLE001 - keep polling, remember why
            value, error = None, exc
        if value:
            return value
        if time.monotonic() >= deadline:
            description = what() if callable(what) else what
            last = f" (last error: {error})" if error else ""
            raise WaitTimeout(f"timed out after {timeout}s waiting for {description}{last}")
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
