"""What an operator watches: Prometheus metrics (``--metrics-port``) and logs that carry each
call's request id (``--log-format json`` for one JSON object per line).

Every call gets a request id — the client's ``x-request-id`` metadata, or a fresh one — that
every log line written while handling it carries and that returns in the trailing metadata.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from convscope.logs import request_id as _request_id
from convscope.rpc.handlers import Coder, around, method_name
from convscope.runtime.sessions import Runtime
from convscope.workers.runtime import SandboxedRuntime

log = logging.getLogger(__name__)

REQUEST_ID_KEY = "x-request-id"
# Calls range from a health check (< 1 ms) to a dataset job (hours).
LATENCY_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200)


class QueueingExecutor(futures.ThreadPoolExecutor):
    """The RPC thread pool, counting calls accepted but still waiting for a thread."""

    def __init__(self, max_workers: int, thread_name_prefix: str) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix=thread_name_prefix)
        self._waiting = 0
        self._count_lock = threading.Lock()

    @property
    def waiting(self) -> int:
        return self._waiting

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> futures.Future[Any]:
        with self._count_lock:
            self._waiting += 1

        def started(*args: Any, **kwargs: Any) -> Any:
            with self._count_lock:
                self._waiting -= 1
            return fn(*args, **kwargs)

        return super().submit(started, *args, **kwargs)


class Metrics:
    """The server's metrics, in a registry of its own (several servers may share a process)."""

    def __init__(self, runtime: Runtime, executor: QueueingExecutor) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "convscope_requests", "Calls by method and final status code", ["method", "code"], registry=self.registry
        )
        self.latency = Histogram(
            "convscope_request_seconds", "Call duration by method", ["method"], buckets=LATENCY_BUCKETS_S, registry=self.registry
        )
        self.bytes_in = Counter(
            "convscope_request_bytes", "Request message bytes received, by method", ["method"], registry=self.registry
        )
        self.bytes_out = Counter(
            "convscope_response_bytes", "Response message bytes sent, by method", ["method"], registry=self.registry
        )
        self.in_progress = Gauge("convscope_calls_in_progress", "Calls being handled now", registry=self.registry)
        Gauge("convscope_queue_depth", "Calls accepted and waiting for a handler thread", registry=self.registry).set_function(
            lambda: executor.waiting
        )
        Gauge("convscope_cached_sessions", "onnxruntime sessions in the cache", registry=self.registry).set_function(
            runtime.session_count
        )
        Gauge(
            "convscope_cached_session_bytes", "Estimated memory of the cached onnxruntime sessions", registry=self.registry
        ).set_function(runtime.cache_bytes)
        if isinstance(runtime, SandboxedRuntime):
            replaced = Counter(
                "convscope_worker_replacements",
                "Worker processes killed or lost, and replaced, by cause (crashed, memory, deadline, cancelled)",
                ["cause"],
                registry=self.registry,
            )
            runtime.pool.on_replace.append(lambda cause: replaced.labels(cause).inc())
            Gauge("convscope_workers", "Worker processes in the pool", registry=self.registry).set_function(
                lambda: len(runtime.pool.pids())
            )
        self._http: Any = None

    def serve(self, host: str, port: int) -> int:
        """Expose /metrics over HTTP; returns the bound port (0 picks one)."""
        self._http, _ = start_http_server(port, addr=host, registry=self.registry)
        return int(self._http.server_port)

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()


def _final_code(context: grpc.ServicerContext, error: BaseException | None) -> str:
    code = context.code()
    if code is not None:
        return code.name
    if isinstance(error, GeneratorExit):  # grpc dropped the stream: the client went away
        return grpc.StatusCode.CANCELLED.name
    return grpc.StatusCode.UNKNOWN.name if error is not None else grpc.StatusCode.OK.name


class ObservabilityInterceptor(grpc.ServerInterceptor):
    """Outermost interceptor: counts every call (refused ones too), times it, sizes its messages,
    and binds its request id for the logs."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = method_name(handler_call_details.method)
        metrics = self._metrics
        given = dict(handler_call_details.invocation_metadata or ()).get(REQUEST_ID_KEY)
        bytes_in, bytes_out = metrics.bytes_in.labels(method), metrics.bytes_out.labels(method)

        @contextlib.contextmanager
        def observed(context: grpc.ServicerContext) -> Iterator[grpc.ServicerContext]:
            request_id = str(given)[:64] if given else uuid.uuid4().hex[:16]
            context.set_trailing_metadata(((REQUEST_ID_KEY, request_id),))
            metrics.in_progress.inc()
            token, started, error = _request_id.set(request_id), time.perf_counter(), None
            try:
                yield context
            except BaseException as raised:
                error = raised
                raise
            finally:
                elapsed = time.perf_counter() - started
                code = _final_code(context, error)
                metrics.in_progress.dec()
                metrics.requests.labels(method, code).inc()
                metrics.latency.labels(method).observe(elapsed)
                log.info("%s %s in %.3f s", method, code, elapsed)
                try:
                    _request_id.reset(token)
                except ValueError:  # a stream closed from another thread than it ran in
                    _request_id.set("-")

        def counted_in(deserializer: Coder) -> Coder:
            def deserialize(data: bytes) -> Any:
                bytes_in.inc(len(data))
                return deserializer(data) if deserializer else data

            return deserialize

        def counted_out(serializer: Coder) -> Coder:
            def serialize(message: Any) -> bytes:
                data = serializer(message) if serializer else message
                bytes_out.inc(len(data))
                return data

            return serialize

        return around(handler, observed, deserializer=counted_in, serializer=counted_out)
