"""The run's "where the time went" table (harness/timing.py): outermost blocks only, per thread, and the lines the
suite benchmark reads back."""

import threading
import time

from benchmarks.suite_time import time_by_kind
from harness import timing


def test_a_block_inside_a_timed_block_is_not_counted_twice(monkeypatch):
    monkeypatch.setattr(timing, "_spent", type(timing._spent)(float))
    monkeypatch.setattr(timing, "_count", type(timing._count)(int))
    with timing.timed("script/deploy"):
        with timing.timed("wait"):
            time.sleep(0.05)
    assert [kind for kind, _, _ in timing.table()] == ["script/deploy"]
    assert timing.table()[0][1] >= 0.05 and timing.table()[0][2] == 1


def test_each_thread_counts_its_own_outermost_block(monkeypatch):
    monkeypatch.setattr(timing, "_spent", type(timing._spent)(float))
    monkeypatch.setattr(timing, "_count", type(timing._count)(int))
    inside = threading.Event()

    def stream():
        with timing.timed("wait"):
            inside.wait(5)

    with timing.timed("script/deploy"):
        worker = threading.Thread(target=stream)
        worker.start()
        inside.set()
        worker.join(5)
    assert {kind: times for kind, _, times in timing.table()} == {"script/deploy": 1, "wait": 1}


def test_the_suite_benchmark_reads_the_printed_table(monkeypatch):
    monkeypatch.setattr(timing, "_spent", type(timing._spent)(float, {"script/build": 120.5, "wait": 3.0}))
    monkeypatch.setattr(timing, "_count", type(timing._count)(int, {"script/build": 2, "wait": 9}))
    output = "\n".join(["..", f"{'=' * 10} {timing.HEADER} {'=' * 10}", *timing.lines(), "=== 3 passed in 9s ==="])
    assert [line.split()[-1] for line in time_by_kind(output)] == ["script/build", "wait"]
