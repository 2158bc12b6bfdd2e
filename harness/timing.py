"""Where a run's time goes: the wall time of the harness's slow operations by kind (one of the project's scripts,
a bounded wait, the image kit), counted at the outermost level only, so a wait inside a script call is not
counted twice. tests/conftest.py prints the table at the end of a run; benchmarks/suite_time.py reads it."""

import threading
import time
from collections import defaultdict
from contextlib import contextmanager

_spent = defaultdict(float)
_count = defaultdict(int)
_local = threading.local()
HEADER = "where the time went"


@contextmanager
def timed(kind):
    """Add the block's wall time to `kind`, unless an enclosing block of this thread is timed already."""
    depth = getattr(_local, "depth", 0)
    _local.depth = depth + 1
    start = time.monotonic()
    try:
        yield
    finally:
        _local.depth = depth
        if depth == 0:
            _spent[kind] += time.monotonic() - start
            _count[kind] += 1


def table():
    """[(kind, seconds, times)], the most expensive kind first."""
    return sorted(((kind, _spent[kind], _count[kind]) for kind in _spent), key=lambda row: -row[1])


def lines():
    """The table as the lines the run's summary prints: `  SECONDSs  TIMES×  KIND`."""
    return [f"{seconds:9.1f}s {times:5d}×  {kind}" for kind, seconds, times in table()]
