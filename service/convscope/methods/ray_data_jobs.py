"""Folder dataset jobs on Ray Data: images read, decoded and inferred on the cluster.

The server walks and checks the folder as for a local job (same data roots, same sorted file
list, same limits) and cuts the list into the job's batches. A Ray Data pipeline maps each
batch, on a pool of actors that each hold one onnxruntime session of the job's graph, to its
outcome: the worker reads the files with the server's reader (no links out, FIFOs or devices),
decodes them with the server's decoder and preprocessing (the same pixels), runs the graph and
keeps the accumulator's reduction (``Accumulator.reduce``: top-k candidates, zero counts,
codes). The server takes the outcomes in dataset order and merges them with the local engine's
code (``dataset_jobs.merge_batches``), so the results are the same numbers.

Batches are cut before decoding, so an unreadable image leaves its batch one sample short
where the local engine would fill it from the next image; the results do not depend on it.
"""

from __future__ import annotations

import contextlib
import itertools
import pickle
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convscope.data.streams import DataRoots, DatasetTooLarge, Decoder, PathItem, Sample, Skipped
from convscope.errors import ServiceError
from convscope.methods import dataset_jobs
from convscope.methods.dataset_jobs import Accumulator, JobEvent
from convscope.methods.ray_jobs import import_ray
from convscope.model.preprocessing import batch_of, tiled_others
from convscope.model.types import ModelRecord
from convscope.runtime.providers import new_session


@dataclass(frozen=True)
class FolderJob:
    """What a worker needs to read, decode and infer a batch: all plain, picklable values."""

    record: ModelRecord
    roots: DataRoots
    graph: bytes
    tensors: list[str]
    reduce: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
    pictures: bool
    max_pixels: int
    max_bytes: int
    first_shape: tuple[int, ...] | None
    others: Mapping[str, np.ndarray] | None = None


@dataclass
class _Outcome:
    """One batch, as the worker sends it back."""

    skipped: list[Skipped] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)  # index, ref, picture: the values stay there
    reduced: dict[str, np.ndarray] | None = None
    read_bytes: int = 0
    failure: ServiceError | None = None  # ends the job: a path out of the roots, the byte limit


class BatchInference:
    """A Ray Data actor: one onnxruntime session (one intra-op thread, the actor has one CPU)
    and one decoder; maps rows of (batch number, first index, paths) to pickled outcomes."""

    def __init__(self, job: FolderJob) -> None:
        self.job = job
        self.session = new_session(job.graph, threads=1)
        self.decoder = Decoder(job.record, job.roots, pictures=job.pictures, max_pixels=job.max_pixels, max_bytes=job.max_bytes)

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outcomes = [
            pickle.dumps(self._batch(int(start), list(paths), list(found)))
            for start, paths, found in zip(rows["start"], rows["paths"], rows["found"])
        ]
        return {"number": rows["number"], "outcome": np.array(outcomes, dtype=object)}

    def _batch(self, start: int, paths: Sequence[str], found: Sequence[str]) -> _Outcome:
        outcome = _Outcome()
        before = self.decoder.read_bytes
        try:
            entries = [
                entry
                for offset, (path, real) in enumerate(zip(paths, found))
                for entry in self.decoder(PathItem(path, found_at=Path(real)), start + offset)
            ]
        except ServiceError as error:  # the decoder's fatal errors; others are skipped items
            return _Outcome(failure=error)
        outcome.read_bytes = self.decoder.read_bytes - before
        values = []
        for entry in entries:
            if isinstance(entry, Sample):
                # None: no image was usable when the server looked; this one now is.
                first_shape = self.job.first_shape or entry.value.shape
                if (unlike := dataset_jobs.unlike_first(entry, first_shape)) is None:
                    values.append(entry.value)
                    outcome.samples.append(Sample(entry.index, entry.ref, None, entry.picture))
                    continue
                entry = unlike
            outcome.skipped.append(entry)
        if values:
            batch = batch_of(values)
            feeds = {self.job.record.input.name: batch}
            if self.job.others:
                feeds.update(tiled_others(self.job.record, self.job.others, len(batch)))
            tensors = self.session.run(self.job.tensors, feeds)
            outcome.reduced = self.job.reduce(dict(zip(self.job.tensors, tensors)))
        return outcome


def probe_first_shape(decoder: Decoder, items: Sequence[PathItem]) -> tuple[int, ...] | None:
    """The shape of the first usable image, decoded here: every batch must have it, the local
    engine's rule (usually the first file; unreadable ones before it are read twice)."""
    for index, item in enumerate(items):
        for entry in decoder(item, index):
            if isinstance(entry, Sample) and entry.value is not None:
                return entry.value.shape
    return None


def run_folder_job(
    job: FolderJob,
    accumulator: Accumulator,
    items: Sequence[PathItem],
    *,
    batch_size: int,
    workers: int,
    cancelled: threading.Event | None = None,
) -> Iterator[JobEvent]:
    """Run ``job`` over ``items`` (a checked folder walk, in order) on a Ray Data pipeline with
    ``workers`` actors; yield progress, skipped items and the result as the local engine does.
    Cancelling (or closing this iterator) shuts the pipeline down and releases its actors."""
    ray = import_ray()
    cancelled = cancelled or threading.Event()
    context = ray.data.DataContext.get_current()
    # Dataset order is the merge order: top-k ties and embedding rows follow it, as locally.
    context.execution_options.preserve_order = True
    # The job streams its own progress; Ray Data's bars would only fill the server's log.
    context.enable_progress_bars = False
    rows = [
        {
            "number": number,
            "start": start,
            "paths": [item.path for item in chunk],
            "found": [str(item.found_at) for item in chunk],
        }
        for number, (start, chunk) in enumerate(
            (start, items[start : start + batch_size]) for start in range(0, len(items), batch_size)
        )
    ]
    pipeline = ray.data.from_items(rows).map_batches(
        BatchInference,
        fn_constructor_args=(job,),
        batch_size=1,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=1,
    )
    with contextlib.closing(_entries(iter(pipeline.iter_rows()), job.max_bytes)) as entries:
        yield from dataset_jobs.merge_batches(accumulator, entries, total=len(items), cancelled=cancelled)


def _entries(rows: Iterator[dict[str, Any]], max_bytes: int) -> Iterator[Skipped | tuple[list[Sample], dict[str, np.ndarray]]]:
    """Each batch's skipped items, then its samples and reduction; the job's byte limit summed
    over every worker."""
    read_bytes = 0
    try:
        for expected, row in zip(itertools.count(), rows):
            if row["number"] != expected:
                raise RuntimeError(f"Ray Data returned batch {row['number']} where {expected} was due")
            outcome: _Outcome = pickle.loads(row["outcome"])
            if outcome.failure is not None:
                raise outcome.failure
            read_bytes += outcome.read_bytes
            if read_bytes > max_bytes:
                raise DatasetTooLarge.beyond(max_bytes)
            yield from outcome.skipped
            if outcome.reduced is not None:
                yield outcome.samples, outcome.reduced
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()
