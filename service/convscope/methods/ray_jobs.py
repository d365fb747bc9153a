"""Dataset jobs over streamed images on Ray: batches inferred by Ray actors, each holding one
onnxruntime session. (Folder jobs run on Ray Data, where the cluster reads the files too:
``ray_data_jobs.py``.)

The driver (the server) keeps the pass of ``dataset_jobs.run_job`` — decoding ahead, batching,
progress, skipped items, cancellation between batches — and hands each batch to an actor, which
runs the graph exposing the job's tensors and returns the accumulator's reduction of them
(``Accumulator.reduce``: top-k candidates, zero counts, codes; kilobytes, not the tensors). The
driver merges the reductions in stream order with the same code as the local engine, so the
results are the same numbers. Ray is an optional extra (``pip install convscope[ray]``).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from convscope.errors import Unimplemented
from convscope.runtime.providers import new_session

# Batches queued per actor: one running, one arriving, so no actor waits for the driver.
BATCHES_PER_ACTOR = 2


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise Unimplemented("dataset jobs on Ray need Ray installed: pip install 'convscope[ray]'") from None
    return ray


class _BatchActor:
    """One onnxruntime session (one intra-op thread: the actor has one CPU) over the job's graph."""

    def __init__(
        self, model: bytes, input_name: str, tensors: list[str], reduce: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
    ) -> None:
        self.session = new_session(model, threads=1)
        self.input_name = input_name
        self.tensors = tensors
        self.reduce = reduce

    def run(self, batch: np.ndarray, others: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
        values = self.session.run(self.tensors, {self.input_name: batch, **(others or {})})
        return self.reduce(dict(zip(self.tensors, values)))


class RayEngine:
    """A ``dataset_jobs.BatchEngine`` on ``workers`` Ray actors (round robin), in the Ray this
    process is connected to (``ray.init``)."""

    def __init__(
        self,
        model: bytes,
        input_name: str,
        tensors: list[str],
        reduce: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
        *,
        workers: int,
    ) -> None:
        ray = import_ray()
        actor = ray.remote(num_cpus=1)(_BatchActor)
        shared = ray.put(model)
        self._ray = ray
        self._actors = [actor.remote(shared, input_name, tensors, reduce) for _ in range(max(1, workers))]
        self._next = itertools.cycle(self._actors)
        self._lock = threading.Lock()
        self.workers = BATCHES_PER_ACTOR * len(self._actors)

    def __call__(self, batch: np.ndarray, others: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
        with self._lock:
            actor = next(self._next)
        return self._ray.get(actor.run.remote(batch, others))

    def close(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor)
