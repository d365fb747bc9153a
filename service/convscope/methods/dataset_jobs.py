"""Dataset jobs: one pass of the model over a dataset, feeding an accumulator.

The jobs — top activations, CNN-code embeddings, dead filters — differ only in what they keep
from each batch; the pass is shared: decoded samples (from :mod:`convscope.data.streams`,
decoded ahead in a thread pool) are batched, run through the cheapest graph that yields the
accumulator's tensors, and handed over. The pass reports progress (images done, rate, ETA),
reports each skipped item, checks for cancellation between batches, and ends with the result.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import onnx

from convscope.data.prefetch import RunAhead
from convscope.data.streams import Decoded, DecodedBatch, Sample, Skipped
from convscope.errors import Cancelled, InvalidArgument
from convscope.graph.receptive_field import FieldMap, receptive_fields
from convscope.methods.activations import DeadFilterCounts, DeadFiltersResult
from convscope.methods.embedding import Embedding, EmbeddingResult, code_layer
from convscope.methods.top_activations import TopActivations, TopActivationsResult
from convscope.model.preprocessing import batch_of, tiled_others
from convscope.model.types import ModelRecord
from convscope.runtime.context import (
    DEFAULT_BATCH_BUDGET_BYTES,
    INFERENCE_WORKERS,
    MethodContext,
    batch_size_for,
    in_flight,
    parallel_runs,
    worker_threads,
)
from convscope.runtime.shaped import table_input_shape
from convscope_client.choices import EmbeddingMethod

# Samples per inference call (fewer when the tensors a job needs would exceed the batch budget).
# Each batch's Python work (hand-offs, bookkeeping, the audit's attribute moments) is paid per
# batch, so small samples go in large batches; large ones are held down by the budget anyway.
JOB_BATCH = 128
BATCHES_AHEAD = 2
# A run's working memory per sample, in its largest tensors: an op's input and output and one
# kept for later (a residual branch). onnxruntime keeps a session's peak for the next run: on
# EfficientNet-Lite0, batches of 32 held 3.0 GB through an audit's pass, of 16 1.8 GB, as fast.
WORKING_TENSORS = 3
PROGRESS_SECONDS = 0.5


# ---------------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class TopActivationsJob:
    layer: str
    channels: tuple[int, ...] = ()
    k: int = 9
    directions: np.ndarray | None = None  # (C,) or (D, C): rank by projection instead of channels
    render: bool = True


@dataclass(frozen=True)
class EmbeddingJob:
    layer: str = ""  # empty: the CNN code feeding the classifier
    method: EmbeddingMethod = EmbeddingMethod.TSNE
    perplexity: float = 30.0
    seed: int = 0
    render: bool = True


@dataclass(frozen=True)
class DeadFiltersJob:
    layers: tuple[str, ...] = ()  # empty: every tensor with a channel axis


DatasetJob = TopActivationsJob | EmbeddingJob | DeadFiltersJob


# ---------------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Progress:
    done: int  # samples run through the model
    skipped: int
    total: int | None  # items expected, when known (folder jobs; streams that say)
    seconds: float
    rate: float  # samples per second so far
    eta: float | None  # seconds left, when the total is known


JobResult = TopActivationsResult | EmbeddingResult | DeadFiltersResult
JobEvent = Progress | Skipped | JobResult


class Accumulator(Protocol):
    @property
    def tensors(self) -> list[str]: ...

    @property
    def needs_pictures(self) -> bool: ...

    def add(self, samples: Sequence[Sample], values: dict[str, np.ndarray]) -> None: ...

    # add = add_reduced(reduce(values)): reduce keeps what the job needs of a batch's tensors,
    # so a remote engine (Ray) ships the reduction, not the tensors, and the merge stays here.
    def reduce(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def add_reduced(self, samples: Sequence[Sample], reduced: dict[str, np.ndarray]) -> None: ...

    def result(self) -> JobResult: ...


class BatchEngine(Protocol):
    """Runs batches elsewhere (methods/ray_jobs.py): the accumulator's reduction of the model's
    tensors for a batch and the other inputs' values; ``workers`` batches may be in flight."""

    workers: int

    def __call__(self, batch: np.ndarray, others: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]: ...


def accumulator_for(job: DatasetJob, record: ModelRecord, base: onnx.ModelProto) -> Accumulator:
    """Check the job's parameters against the model (before any data is read) and set it up."""
    if isinstance(job, TopActivationsJob):
        if not job.layer:
            raise InvalidArgument("top activations need a layer (a tensor name from the layer table)")
        layer = record.tensor(job.layer)
        return TopActivations(
            record,
            layer,
            channels=job.channels,
            k=job.k,
            directions=job.directions,
            field=fields_of(base, record).get(layer),
            render=job.render,
        )
    if isinstance(job, EmbeddingJob):
        layer = record.tensor(job.layer) if job.layer else code_layer(base, record)
        return Embedding(record, layer, method=job.method, perplexity=job.perplexity, seed=job.seed, render=job.render)
    if isinstance(job, DeadFiltersJob):
        counts = DeadFilterCounts(record, job.layers)
        if not counts.tensors:
            raise InvalidArgument("none of the requested layers has a channel axis")
        return counts
    raise InvalidArgument("the job names no method: top activations, embedding or dead filters")


def fields_of(base: onnx.ModelProto, record: ModelRecord) -> dict[str, FieldMap | None]:
    """Exact receptive fields of every tensor, at the layer table's shapes."""
    shapes: dict[str, tuple[int, ...]] = {layer.tensor: layer.shape for layer in record.layers}
    shapes[record.input.name] = table_input_shape(record)
    return receptive_fields(base, shapes, layout=record.preprocessing.layout)


# ---------------------------------------------------------------------------------- the pass


def job_batch_size(
    context: MethodContext | None, record: ModelRecord, tensors: Sequence[str], batch_size: int = JOB_BATCH
) -> int:
    """Samples per inference call: ``batch_size``, fewer where the tensors a job needs, or the
    run's working memory, would exceed an in-flight run's share of the batch budget (the size a
    stream of :class:`DecodedBatch` entries is best decoded in)."""
    share = (context.batch_budget_bytes if context is not None else DEFAULT_BATCH_BUDGET_BYTES) // INFERENCE_WORKERS
    working = WORKING_TENSORS * max((layer.sample_bytes for layer in record.layers), default=1)
    return max(1, min(batch_size, batch_size_for(record, tensors, share), share // max(1, working)))


def run_job(
    context: MethodContext | None,
    record: ModelRecord,
    accumulator: Accumulator,
    stream: Iterable[Decoded],
    *,
    total: int | None = None,
    cancelled: threading.Event | None = None,
    batch_size: int = JOB_BATCH,
    others: Mapping[str, np.ndarray] | None = None,
    engine: BatchEngine | None = None,
) -> Iterator[JobEvent]:
    """Run the model over ``stream`` in batches; yield progress, skipped items, then the result.
    ``others``: the model's other inputs, one sample's values (``constant_others``), fed with
    every batch. ``engine``: where batches run (default: here, on the context's runtime); the
    accumulator merges their reductions here, in stream order, whatever ran them. ``context``:
    None when the engine runs a model this process does not hold (batches sized by the default budget).

    Batches are assembled (stacked) ahead on a helper thread, so the model never waits for the
    copy; ``INFERENCE_WORKERS`` batches run at once and reach the accumulator in stream order;
    cancellation is checked between batches (the ones already running finish first).
    """
    cancelled = cancelled or threading.Event()
    tensors = accumulator.tensors
    batch_size = job_batch_size(context, record, tensors, batch_size)
    threads = worker_threads(parallel_runs(context.runtime)) if context is not None else worker_threads()

    def infer(entry: Skipped | tuple[list[Sample], np.ndarray]) -> dict[str, np.ndarray] | None:
        if isinstance(entry, Skipped):
            return None
        constants = tiled_others(record, others, len(entry[1])) if others else None
        if engine is not None:
            return engine(entry[1], constants)
        assert context is not None, "a job without a context runs on an engine"
        return accumulator.reduce(context.forward(record, entry[1], tensors, threads=threads, others=constants))

    workers = engine.workers if engine is not None else INFERENCE_WORKERS
    ahead = RunAhead(_batches(stream, batch_size), depth=max(BATCHES_AHEAD, workers), cancelled=cancelled)
    try:
        with contextlib.closing(in_flight(infer, ahead, workers=workers)) as results:
            yield from merge_batches(
                accumulator,
                (entry if isinstance(entry, Skipped) else (entry[0], values) for entry, values in results),
                total=total,
                cancelled=cancelled,
            )
    finally:
        ahead.close()


def merge_batches(
    accumulator: Accumulator,
    entries: Iterable[Skipped | tuple[Sequence[Sample], dict[str, np.ndarray]]],
    *,
    total: int | None,
    cancelled: threading.Event,
) -> Iterator[JobEvent]:
    """Merge batch reductions into ``accumulator`` in stream order, whichever engine made them;
    yield skipped items, progress (the first batch, then twice a second) and, last, the result.
    Cancellation is checked between entries."""
    start = time.monotonic()
    last_report = start
    done = skipped = 0

    def progress() -> Progress:
        seconds = time.monotonic() - start
        rate = done / seconds if seconds > 0 else 0.0
        left = None if total is None else max(0, total - done - skipped)
        eta = None if left is None or rate <= 0 else left / rate
        return Progress(done, skipped, total, seconds, rate, eta)

    for entry in entries:
        if cancelled.is_set():
            raise Cancelled("the job was cancelled")
        if isinstance(entry, Skipped):
            skipped += 1
            yield entry
            continue
        samples, reduced = entry
        accumulator.add_reduced(samples, reduced)
        done += len(samples)
        now = time.monotonic()
        if done <= len(samples) or now - last_report >= PROGRESS_SECONDS:
            last_report = now
            yield progress()
    if cancelled.is_set():
        raise Cancelled("the job was cancelled")
    if done == 0:
        raise InvalidArgument(f"the dataset gave no usable image ({skipped} skipped)")
    yield progress()
    yield accumulator.result()


def unlike_first(sample: Sample, first_shape: tuple[int, ...]) -> Skipped | None:
    """A batch holds one shape: a sample shaped unlike the stream's first is skipped, saying so."""
    if sample.value.shape == first_shape:
        return None
    return Skipped(
        sample.index, sample.ref, f"shape {list(sample.value.shape)} differs from the first item's {list(first_shape)}"
    )


def _batches(stream: Iterable[Decoded], size: int) -> Iterator[Skipped | tuple[list[Sample], np.ndarray]]:
    """Skipped entries as they come, samples written into batches of ``size``; a sample shaped
    unlike the first one is skipped (a batch holds one shape). A decoded batch passes as it is,
    cut to ``size``."""
    first_shape: tuple[int, ...] | None = None
    pending: list[Sample] = []
    for entry in stream:
        if isinstance(entry, Skipped):
            yield entry
            continue
        if isinstance(entry, DecodedBatch):
            if pending:
                yield pending, batch_of([sample.value for sample in pending])
                pending = []
            for start in range(0, len(entry.samples), size):
                yield entry.samples[start : start + size], entry.values[start : start + size]
            continue
        if first_shape is None:
            first_shape = entry.value.shape
        elif (unlike := unlike_first(entry, first_shape)) is not None:
            yield unlike
            continue
        pending.append(entry)
        if len(pending) >= size:
            yield pending, batch_of([sample.value for sample in pending])
            pending = []
    if pending:
        yield pending, batch_of([sample.value for sample in pending])
