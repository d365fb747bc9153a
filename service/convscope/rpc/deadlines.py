"""A deadline for every call: the client's, or the server's default for the method when the
client set none (or a longer one). Work stops when it passes: onnxruntime runs are terminated
(runtime/budget.py), handlers that watch ``context.is_active()`` see the call as over, and
the client gets DEADLINE_EXCEEDED naming the deadline.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import grpc

from convscope.rpc.handlers import around, method_name
from convscope.runtime.budget import CallBudget

DEFAULT_DEADLINE_S = 300.0
# Methods that legitimately run long: whole datasets, uploads of GB-sized models, loops.
DEFAULT_METHOD_DEADLINES_S: Mapping[str, float] = {
    "UploadModel": 1800.0,
    "RunDatasetJob": 4 * 3600.0,
    "Occlusion": 1800.0,
    "Invert": 1800.0,
    "Visualize": 1800.0,
    "Adversarial": 1800.0,
}
UNBOUNDED_SERVICES = ("/grpc.health.v1.Health/Watch",)  # a watch is meant to stay open


class _BudgetedContext:
    """The servicer context, but over (inactive) once the budget has run out, and aborting with
    DEADLINE_EXCEEDED where a handler reports that as a cancellation."""

    def __init__(self, context: grpc.ServicerContext, budget: CallBudget) -> None:
        self._context = context
        self._budget = budget

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    def is_active(self) -> bool:
        return self._context.is_active() and not self._budget.expired

    def time_remaining(self) -> float | None:
        remaining = self._context.time_remaining()
        if self._budget.deadline is None:
            return remaining
        own = max(0.0, self._budget.deadline - time.monotonic())
        return own if remaining is None else min(own, remaining)

    def add_callback(self, callback: Callable[[], None]) -> bool:
        self._budget.add_callback(callback)
        return self._context.add_callback(callback)

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        if self._budget.expired and code == grpc.StatusCode.CANCELLED:
            error = self._budget.stopped_error()
            code, details = error.status, str(error)
        self._context.abort(code, details)


class DeadlineInterceptor(grpc.ServerInterceptor):
    def __init__(self, default_s: float = DEFAULT_DEADLINE_S, per_method_s: Mapping[str, float] | None = None) -> None:
        self._default_s = default_s
        self._per_method_s = {**DEFAULT_METHOD_DEADLINES_S, **(per_method_s or {})}

    def seconds_for(self, method: str) -> float:
        return self._per_method_s.get(method_name(method), self._default_s)

    def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(UNBOUNDED_SERVICES):
            return handler
        seconds, what = self.seconds_for(method), method_name(method)

        @contextlib.contextmanager
        def bounded(context: grpc.ServicerContext) -> Iterator[grpc.ServicerContext]:
            remaining = context.time_remaining()
            budget = CallBudget(min(seconds, remaining) if remaining is not None else seconds, what)
            context.add_callback(lambda: budget.stop(expired=False))  # the call ended: stop its runs
            with budget.bound():
                yield _BudgetedContext(context, budget)  # type: ignore[misc]

        return around(handler, bounded)
