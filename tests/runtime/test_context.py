"""runtime/context.py: ``in_flight``, the pipelining every batched method runs its batches
through: results in order, a bounded number at a time, the caller's context (its call budget)
on the threads, and nothing more started once the caller stops asking."""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time

from convscope.runtime.context import in_flight

REQUEST = contextvars.ContextVar("request", default="none")


def test_results_come_in_item_order_with_at_most_workers_running() -> None:
    lock, running, most = threading.Lock(), [0], [0]

    def work(item: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02 * (5 - item))  # later items finish first
        with lock:
            running[0] -= 1
        return item * item

    assert list(in_flight(work, range(5), workers=3)) == [(i, i * i) for i in range(5)]
    assert most[0] == 3


def test_the_callers_context_reaches_the_threads() -> None:
    REQUEST.set("call-7")
    assert [seen for _, seen in in_flight(lambda _: REQUEST.get(), range(4), workers=2)] == ["call-7"] * 4


def test_closing_starts_no_more_items_and_lets_the_running_ones_finish() -> None:
    started: list[int] = []
    finished: list[int] = []

    def work(item: int) -> int:
        started.append(item)
        time.sleep(0.01)
        finished.append(item)
        return item

    with contextlib.closing(in_flight(work, range(100), workers=2)) as results:
        assert next(results) == (0, 0)
    assert sorted(started) == sorted(finished) == [0, 1]
