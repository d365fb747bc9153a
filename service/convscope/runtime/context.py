"""What every method runs on: the runtime plus the budget for batching."""

from __future__ import annotations

import contextvars
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from convscope.graph.channel_peaks import peaks_source
from convscope.limits import RequestLimits
from convscope.model.preprocessing import split_feeds
from convscope.model.types import ModelRecord
from convscope.runtime.graphs import graph_for
from convscope.runtime.sessions import Runtime

Task = TypeVar("Task")
Result = TypeVar("Result")

DEFAULT_BATCH_BUDGET_BYTES = 512 << 20
# Batches in flight at once in long runs (dataset jobs, occlusion), each on its own share of the
# cores.  One batch on all cores stalls whenever another thread (a decoder, numpy between runs)
# preempts one of its intra-op threads: the others wait at the op's barrier.  Two single-threaded
# runs on two cores do not, and the other work fills the gaps (benchmarks/dataset.py measures
# a job against plain inference).
INFERENCE_WORKERS = 2


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def parallel_runs(runtime: Runtime) -> int:
    """Runs worth having in flight at once: ``INFERENCE_WORKERS``, fewer where the runtime
    executes fewer at a time (a sandbox of one worker process runs them one after another)."""
    return max(1, min(INFERENCE_WORKERS, runtime.concurrent_runs))


def worker_threads(runs: int = INFERENCE_WORKERS) -> int:
    """onnxruntime intra-op threads for each of ``runs`` concurrent runs."""
    return max(1, available_cores() // runs)


def in_flight(
    work: Callable[[Task], Result], items: Iterable[Task], *, workers: int = INFERENCE_WORKERS
) -> Iterator[tuple[Task, Result]]:
    """``(item, work(item))`` for each item in order, ``workers`` items worked on at a time on
    threads.  Closing the iterator lets the running items finish and starts no more."""
    running: deque[tuple[Task, Future[Result]]] = deque()

    def oldest() -> tuple[Task, Result]:
        item, future = running.popleft()
        return item, future.result()

    with ThreadPoolExecutor(workers, thread_name_prefix="convscope-infer") as pool:
        for item in items:
            # A copy of the caller's context carries its call budget (runtime/budget.py) to the thread.
            running.append((item, pool.submit(contextvars.copy_context().run, work, item)))
            if len(running) == workers:
                yield oldest()
        while running:
            yield oldest()


def batch_size_for(record: ModelRecord, tensors: Sequence[str], budget_bytes: int) -> int:
    """How many samples fit the output budget, from the layer table's per-sample sizes (a
    tensor's channel peaks: four bytes a channel)."""
    per_sample = sum(
        record.layer(name).sample_bytes if (source := peaks_source(name)) is None else 4 * record.layer(source).shape[1]
        for name in tensors
    )
    return max(1, budget_bytes // max(1, per_sample))


@dataclass
class MethodContext:
    runtime: Runtime
    batch_budget_bytes: int = DEFAULT_BATCH_BUDGET_BYTES
    limits: RequestLimits = RequestLimits()

    def forward(
        self,
        record: ModelRecord,
        batch: np.ndarray,
        tensors: Sequence[str],
        *,
        threads: int = 0,
        others: Mapping[str, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """The named tensors for ``batch`` (and the model's ``others`` inputs), from the cheapest
        graph that has them, in memory-sized batches; ``threads``: onnxruntime's intra-op
        threads (0: one per core)."""
        spec = graph_for(set(tensors), {output.name for output in record.outputs})
        batched, fixed = split_feeds(record, others or {})
        return self.runtime.run_batched(
            record.id,
            spec,
            {record.input.name: batch, **batched},
            list(tensors),
            fixed=fixed,
            dynamic_batch=record.dynamic_batch,
            batch_size=batch_size_for(record, tensors, self.batch_budget_bytes),
            threads=threads,
        )
