"""onnxruntime sessions, cached per (model, graph spec) within a memory budget.

The public surface is message-shaped — model id, graph spec, arrays in, arrays out — so the
sessions can later live in sandboxed worker processes without changing callers.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import onnx
import onnxruntime as ort

from convscope.errors import InvalidArgument, ResourceExhausted
from convscope.graph.base import base_graph as build_base_graph
from convscope.model.store import Upload
from convscope.model.types import LayerInfo, ModelRecord
from convscope.runtime.budget import current_budget, run_options
from convscope.runtime.graphs import GraphSpec, LossGraph
from convscope.runtime.ingest import describe_upload, layer_table, probe_array
from convscope.runtime.memory import raise_if_out_of_memory
from convscope.runtime.providers import new_session, usable_providers

log = logging.getLogger(__name__)
Result = TypeVar("Result")

DEFAULT_SESSION_BUDGET_BYTES = 4 << 30
# A session holds the weights, onnxruntime's optimized copy and arena buffers.
SESSION_BYTES_PER_MODEL_BYTE = 3


class Runtime:
    """Runs graph specs of stored models; owns every onnxruntime session of the server."""

    def __init__(
        self,
        load_model: Callable[[str], onnx.ModelProto],
        *,
        budget_bytes: int = DEFAULT_SESSION_BUDGET_BYTES,
        providers: Sequence[str] | None = None,
    ) -> None:
        self._load_model = load_model
        self.budget_bytes = budget_bytes
        self._providers = tuple(providers) if providers else None
        self._sessions: OrderedDict[tuple[str, GraphSpec, int], tuple[ort.InferenceSession, int]] = OrderedDict()
        self._bases: OrderedDict[str, onnx.ModelProto] = OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[tuple[str, GraphSpec, int], threading.Lock] = {}

    @property
    def providers(self) -> tuple[str, ...]:
        """Execution providers in preference order; probed on first use (a server whose models
        run in worker processes never loads onnxruntime's providers itself)."""
        return self._providers or usable_providers()

    @property
    def concurrent_runs(self) -> int:
        """Runs that execute at the same time: no limit of its own here (the callers' threads run
        them; they size themselves by the cores)."""
        return sys.maxsize

    def describe_upload(self, model_id: str, upload: Upload, **options: Any) -> ModelRecord:
        """Validate an upload's files by loading and probing them: ``runtime.ingest.describe_upload``."""
        return describe_upload(model_id, upload, **options)

    def layer_table(
        self,
        model_id: str,
        shape: Sequence[int],
        dtype: str,
        *,
        dynamic_batch: bool,
        layout: str,
        others: Mapping[str, np.ndarray],
    ) -> tuple[LayerInfo, ...]:
        """``runtime.ingest.layer_table`` of the model at input ``shape`` (its probe array)."""
        base = self.base_graph(model_id, dynamic_batch=dynamic_batch)
        return layer_table(base, probe_array(shape, np.dtype(dtype)), layout=layout, others=others)

    def base_graph(self, model_id: str, *, dynamic_batch: bool) -> onnx.ModelProto:
        """The stored model, with a symbolic batch when the store verified that it is safe."""
        with self._lock:
            if model_id in self._bases:
                self._bases.move_to_end(model_id)
                return self._bases[model_id]
        model = self._load_model(model_id)
        base = build_base_graph(model, dynamic_batch=dynamic_batch)
        with self._lock:
            self._bases[model_id] = base
            while len(self._bases) > 4:
                self._bases.popitem(last=False)
        return base

    def session(self, model_id: str, spec: GraphSpec, *, dynamic_batch: bool, threads: int = 0) -> ort.InferenceSession:
        """The cached session for ``spec``; ``threads``: onnxruntime's intra-op threads (0: one per core)."""
        # onnxruntime fixes the thread count when it builds a session, so it is part of the key:
        # a graph that one-shot calls (0) and concurrent batches (worker_threads()) both run holds
        # two sessions in the budget.  Callers keep one count per task for that reason.
        key = (model_id, spec, threads)
        with self._lock:
            if key in self._sessions:
                self._sessions.move_to_end(key)
                return self._sessions[key][0]
            building = self._building.setdefault(key, threading.Lock())
        with building:  # one build per key; concurrent callers wait for it
            with self._lock:
                if key in self._sessions:
                    return self._sessions[key][0]
            graph = spec.build(self.base_graph(model_id, dynamic_batch=dynamic_batch))
            serialized = graph.SerializeToString()
            cost = len(serialized) * SESSION_BYTES_PER_MODEL_BYTE
            if cost > self.budget_bytes:
                raise ResourceExhausted(
                    f"this graph needs about {cost / 2**20:.0f} MiB of session memory, over the server's "
                    f"budget of {self.budget_bytes / 2**20:.0f} MiB"
                )
            started = time.perf_counter()
            session = new_session(serialized, providers=self.providers, threads=threads, spin=isinstance(spec, LossGraph))
            log.info(
                "session for model %s (%s) built in %.2f s", model_id[:12], type(spec).__name__, time.perf_counter() - started
            )
            with self._lock:
                self._sessions[key] = (session, cost)
                self._building.pop(key, None)
                self._evict()
            return session

    def _evict(self) -> None:
        total = sum(cost for _, cost in self._sessions.values())
        while total > self.budget_bytes and len(self._sessions) > 1:
            (model_id, spec, _), (_, cost) = self._sessions.popitem(last=False)
            total -= cost
            log.debug("evicted session %s %s", model_id[:12], spec)

    def cache_bytes(self) -> int:
        """Estimated memory of the cached sessions: what the budget is checked against."""
        with self._lock:
            return sum(cost for _, cost in self._sessions.values())

    def session_count(self) -> int:
        with self._lock:
            return len(self._sessions)

    def forget(self, model_id: str) -> None:
        """Drop every session and cached graph of a model (after it was deleted)."""
        with self._lock:
            for key in [k for k in self._sessions if k[0] == model_id]:
                del self._sessions[key]
            self._bases.pop(model_id, None)

    def reset_failures(self, model_id: str) -> None:
        """Give a model uploaded again a fresh start. In process nothing is held against it; the
        sandboxed runtime forgets its worker crashes and lifts a quarantine."""

    def close(self) -> None:
        with self._lock:
            self._sessions.clear()
            self._bases.clear()

    def run(
        self,
        model_id: str,
        spec: GraphSpec,
        feeds: Mapping[str, np.ndarray],
        outputs: Sequence[str],
        *,
        dynamic_batch: bool,
        threads: int = 0,
    ) -> dict[str, np.ndarray]:
        session = self.session(model_id, spec, dynamic_batch=dynamic_batch, threads=threads)
        values = guarded_run(lambda options: session.run(list(outputs), dict(feeds), options))
        return dict(zip(outputs, values))

    def run_batched(
        self,
        model_id: str,
        spec: GraphSpec,
        feeds: Mapping[str, np.ndarray],
        outputs: Sequence[str],
        *,
        dynamic_batch: bool,
        batch_size: int,
        threads: int = 0,
        fixed: Mapping[str, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """``run`` over slices of the batch axis of every feed (``fixed`` feeds go whole to each
        run), concatenated back."""
        runs = []
        for chunk in iter_batches(feeds, batch_size if dynamic_batch else 1):
            chunk.update(fixed or {})
            runs.append(self.run(model_id, spec, chunk, outputs, dynamic_batch=dynamic_batch, threads=threads))
        return concatenated(runs, outputs)


def concatenated(runs: Sequence[Mapping[str, np.ndarray]], outputs: Sequence[str]) -> dict[str, np.ndarray]:
    """The ``outputs`` of runs over consecutive slices of a batch, joined along the batch axis."""
    return {name: np.concatenate([values[name] for values in runs]) if len(runs) > 1 else runs[0][name] for name in outputs}


def guarded_run(run: Callable[[ort.RunOptions | None], Result]) -> Result:
    """``run(options)`` under the current call's RunOptions, onnxruntime's failures turned into
    the service's errors (stopped by the budget, out of memory, an input the model rejects)."""
    try:
        with run_options() as options:
            return run(options)
    except Exception as error:
        budget = current_budget()
        if budget is not None and budget.stopped:  # onnxruntime obeyed RunOptions.terminate
            raise budget.stopped_error() from None
        raise_if_out_of_memory(error)
        if not isinstance(error, (ort.capi.onnxruntime_pybind11_state.InvalidArgument, ort.capi.onnxruntime_pybind11_state.Fail)):
            raise
        message = str(error).split("] ", 1)[-1].strip().splitlines()[0][:400]
        raise InvalidArgument(f"the model rejected the input: {message}") from None


def iter_batches(feeds: Mapping[str, np.ndarray], batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    total = len(next(iter(feeds.values())))
    for start in range(0, total, max(1, batch_size)):
        yield {name: value[start : start + batch_size] for name, value in feeds.items()}
