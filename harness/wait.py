"""Bounded waits: readiness polled by pytest-docker's `wait_until_responsive`,
never a fixed sleep."""

from pytest_docker.plugin import Services


class WaitTimeout(AssertionError):
    """A wait ran out; the message names what was awaited and the last error seen."""


def until(check, timeout, what, pause=0.5):
    """Call check() every `pause` s until it returns a truthy value, and return that value.

    After `timeout` s raise WaitTimeout naming `what` (a string, or a callable
    evaluated only then, e.g. to include logs) and the last exception check raised.
    """
    seen = {"value": None, "error": None}

    def probe():
        try:
            seen["value"] = check()
        except Exception as exc:  # noqa: BLE001 - keep polling, remember why
            seen["error"] = exc
            return False
        return bool(seen["value"])

    try:
        # Services only needs its compose executor for port lookups; waiting uses none.
        Services(None).wait_until_responsive(check=probe, timeout=timeout, pause=pause)
    except Exception:  # pytest-docker 3.2.6 raises a bare Exception on timeout
        description = what() if callable(what) else what
        last = f" (last error: {seen['error']})" if seen["error"] else ""
        raise WaitTimeout(f"timed out after {timeout}s waiting for {description}{last}") from None
    return seen["value"]
