"""A call's time budget as the runtime sees it: when it runs out, or the call is cancelled,
every onnxruntime run started under it is told to stop (``RunOptions.terminate``, which
onnxruntime checks between kernels), and the call's callbacks fire.

The budget is bound to the handling thread with a context variable, so the runtime needs no
gRPC object; threads that work for the call copy the context (``runtime.context.in_flight``).
A worker process would receive the deadline as a number and do the same on its side.
"""

from __future__ import annotations

import contextlib
import contextvars
import heapq
import itertools
import threading
import time
from collections.abc import Callable, Iterator

import onnxruntime as ort

from convscope.errors import Cancelled, DeadlineExceeded

_current: contextvars.ContextVar[CallBudget | None] = contextvars.ContextVar("convscope_call_budget", default=None)


class CallBudget:
    def __init__(self, seconds: float | None, what: str = "the call") -> None:
        self.seconds = seconds
        self.what = what
        self.deadline = time.monotonic() + seconds if seconds is not None else None
        self.expired = False  # the deadline passed (not merely the call ended)
        self._stopped = False
        self._lock = threading.Lock()
        self._runs: set[ort.RunOptions] = set()
        self._callbacks: list[Callable[[], None]] = []
        if self.deadline is not None:
            _watchdog.watch(self)

    def add_callback(self, callback: Callable[[], None]) -> None:
        """``callback`` runs once when the deadline passes (at once if it has)."""
        with self._lock:
            if not self.expired:
                self._callbacks.append(callback)
                return
        callback()

    def stop(self, *, expired: bool) -> None:
        """Terminate the runs in progress; ``expired``: because the deadline passed."""
        with self._lock:
            if self._stopped:
                return
            self._stopped, self.expired = True, expired
            runs, callbacks = list(self._runs), self._callbacks if expired else []
            self._callbacks = []
        for options in runs:
            options.terminate = True
        for callback in callbacks:
            callback()

    @property
    def stopped(self) -> bool:
        return self._stopped

    def stopped_error(self) -> Cancelled | DeadlineExceeded:
        if self.expired:
            return DeadlineExceeded(
                f"{self.what} ran past its deadline of {self.seconds:g} s and was stopped; ask for less work "
                "(smaller batch, fewer steps or positions), or the operator for a longer --deadline/--method-deadline"
            )
        return Cancelled(f"{self.what} was cancelled (by the client or its deadline)")

    @contextlib.contextmanager
    def bound(self) -> Iterator[CallBudget]:
        """Make this the budget of runs started in this thread (and copies of its context)."""
        token = _current.set(self)
        try:
            yield self
        finally:
            try:
                _current.reset(token)
            except ValueError:  # a streaming handler closed from another thread than it ran in
                _current.set(None)
            _watchdog.forget(self)

    @contextlib.contextmanager
    def run_options(self) -> Iterator[ort.RunOptions]:
        options = ort.RunOptions()
        with self._lock:
            options.terminate = self._stopped
            self._runs.add(options)
        try:
            yield options
        finally:
            with self._lock:
                self._runs.discard(options)


def current_budget() -> CallBudget | None:
    return _current.get()


@contextlib.contextmanager
def run_options() -> Iterator[ort.RunOptions | None]:
    """RunOptions tied to the current call's budget, or None outside a call."""
    budget = _current.get()
    if budget is None:
        yield None
        return
    with budget.run_options() as options:
        yield options


class _Watchdog:
    """One thread for every deadline: sleeps until the earliest, then stops its budget."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, CallBudget]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, budget: CallBudget) -> None:
        assert budget.deadline is not None
        with self._wake:
            heapq.heappush(self._heap, (budget.deadline, next(self._order), budget))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="convscope-deadlines", daemon=True)
                self._thread.start()
            self._wake.notify()

    def forget(self, budget: CallBudget) -> None:
        with self._wake:
            kept = [entry for entry in self._heap if entry[2] is not budget]
            if len(kept) != len(self._heap):
                self._heap = kept
                heapq.heapify(self._heap)

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._wake.wait(timeout=self._heap[0][0] - time.monotonic() if self._heap else None)
                _, _, budget = heapq.heappop(self._heap)
            budget.stop(expired=True)


_watchdog = _Watchdog()
