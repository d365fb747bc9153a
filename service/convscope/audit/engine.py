"""The audit: one forward pass over the labelled data feeds accuracy, attribute slices and dead
filters together; then each enabled check (audit/checks.py) turns those numbers into figures
and a verdict.

A check that raises is recorded as an error (never as passed) unless its ``allow_error`` is set.

``run_remote_audit`` audits a model served elsewhere (a black box reached through an ``Infer``
call, e.g. over the Open Inference Protocol): the same pass and checks with every batch inferred
there; the checks that need gradients or the weights are reported as skipped, with the reason.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from convscope.audit import attributes as image_attributes
from convscope.audit import robustness as robustness_measures
from convscope.audit.checks import (
    TOP_K,
    CheckOutcome,
    accuracy,
    attribute_slices,
    dead_filters,
    evenly_spaced,
    explanation_faithfulness,
    explanation_sanity,
    filter_smoothness,
    robustness,
)
from convscope.audit.dataset import AuditItem, rows_message
from convscope.audit.decoding import ChunkDecoder, chunks
from convscope.audit.human import HumanLabels
from convscope.core import Convscope
from convscope.data.prefetch import DEFAULT_DECODE_WORKERS, Prefetcher
from convscope.data.streams import Sample, Skipped
from convscope.errors import Cancelled, InvalidArgument
from convscope.limits import RequestLimits
from convscope.methods.activations import DeadFilterCounts
from convscope.methods.dataset_jobs import Progress, job_batch_size, run_job
from convscope.model.types import ModelRecord
from convscope.runtime.context import INFERENCE_WORKERS

RECTIFIERS = {"Relu", "Clip", "LeakyRelu", "PRelu"}
# The order the checks run in and the report lists them.
CHECK_ORDER = (
    "accuracy",
    "attributes",
    "dead_filters",
    "filter_smoothness",
    "robustness",
    "explanation_sanity",
    "explanation_faithfulness",
)
# What a black box cannot give, per check (the robustness check keeps its corruptions: they need outputs only).
# The checks that run the model again on sampled images, longest first: after the pass they run
# side by side, as many at once as the runtime's concurrent runs (each run's threads are sized so
# that these fill the cores). One at a time, each left a core idle: a run uses one thread on two
# cores, and the corruptions' JPEG round trips are single-threaded Python.
SAMPLING_CHECKS = ("robustness", "explanation_sanity", "explanation_faithfulness", "filter_smoothness")
REMOTE_SKIPS = {
    "dead_filters": "a remote model's hidden activations are not served, only its outputs",
    "filter_smoothness": "a remote model's weights are not served",
    "explanation_sanity": "it randomizes the model's weights and needs gradients; a remote model serves neither",
    "explanation_faithfulness": "its explanation methods need gradients, which a remote model does not serve",
}


@dataclass
class AuditResult:
    record: ModelRecord
    items: Sequence[AuditItem]
    config: dict[str, dict[str, Any]]
    checks: list[CheckOutcome]
    predictions: np.ndarray  # [N, TOP_K] class indices, best first
    seconds: float

    @property
    def passed(self) -> bool:
        return all(check.status in ("passed", "disabled", "skipped") for check in self.checks)

    @property
    def errored(self) -> bool:
        return any(check.status == "error" for check in self.checks)

    def row_ref(self, index: int) -> dict[str, Any]:
        """Where the ``index``-th item is in the dataset, its label and the model's top-1 class, by name."""
        item = self.items[index]
        labels = self.record.labels
        name = lambda c: labels[c] if 0 <= c < len(labels) else str(c)
        predicted = int(self.predictions[index, 0])
        return {"row": item.row, "path": str(item.path), "label": name(item.label), "predicted": name(predicted)}


# The reduction's key for the top-k classes; a tensor name never has a space.
TOP_CLASSES = "top classes"


class AuditPass:
    """The shared pass's accumulator: top-k predictions, computed attributes (measured as each
    chunk is decoded, audit/decoding.py), when the dead
    filters check is on per-channel zero counts of every rectifier output, and the decoded
    pictures of the images the sampled checks use (so no check decodes an image again)."""

    needs_pictures = True

    def __init__(self, record: ModelRecord, count: int, config: dict[str, dict[str, Any]], *, activations: bool = True) -> None:
        self.kept = set().union(*sampled_images(config, count).values())
        self.pictures: dict[int, np.ndarray] = {}
        self.output = record.outputs[0].name
        self.classes = int(np.prod(record.outputs[0].shape[1:]))
        self.top = np.full((count, min(TOP_K, self.classes)), -1, np.int64)
        self.measured: dict[str, np.ndarray] = {}
        if config["attributes"]["enabled"]:
            self.measured = {name: np.full(count, np.nan) for name in image_attributes.COMPUTED}
        self.dead: DeadFilterCounts | None = None
        if config["dead_filters"]["enabled"] and activations:
            layers = [layer.tensor for layer in record.layers if layer.op_type in RECTIFIERS] or None
            self.dead = DeadFilterCounts(record, layers, threshold=config["dead_filters"]["zero_share"])

    @property
    def tensors(self) -> list[str]:
        return list(dict.fromkeys([self.output, *(self.dead.tensors if self.dead else [])]))

    def add(self, samples: Sequence[Sample], values: dict[str, np.ndarray]) -> None:
        self.add_reduced(samples, self.reduce(values))

    def reduce(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """What ``add`` keeps of a batch's tensors: its top-k classes and the dead filters' counts."""
        scores = values[self.output].reshape(len(values[self.output]), -1)
        reduced = {TOP_CLASSES: np.argsort(-scores, axis=1, kind="stable")[:, : self.top.shape[1]]}
        if self.dead is not None:
            reduced.update(self.dead.reduce(values))
        return reduced

    def add_reduced(self, samples: Sequence[Sample], reduced: dict[str, np.ndarray]) -> None:
        rows = np.array([sample.index for sample in samples])
        self.top[rows] = reduced[TOP_CLASSES]
        self.pictures.update((sample.index, sample.picture) for sample in samples if sample.index in self.kept)
        if self.dead is not None:
            self.dead.add_reduced(samples, reduced)

    def result(self) -> AuditPass:
        return self


def run_audit(
    core: Convscope,
    model_id: str,
    items: Sequence[AuditItem],
    config: dict[str, dict[str, Any]],
    *,
    human: Sequence[HumanLabels] = (),
    cancelled: threading.Event | None = None,
) -> Iterator[Progress | CheckOutcome | AuditResult]:
    """Progress of the shared pass, each check's outcome as it finishes, then the result.  An
    unreadable image is an input error naming its rows (an audit over fewer images than given
    would pass on data nobody chose)."""
    record = core.model(model_id)
    yield from _audit(record, robustness_measures.local_infer(core, record), core, items, config, human, cancelled)


def run_remote_audit(
    record: ModelRecord,
    infer: robustness_measures.Infer,
    items: Sequence[AuditItem],
    config: dict[str, dict[str, Any]],
    *,
    human: Sequence[HumanLabels] = (),
    cancelled: threading.Event | None = None,
) -> Iterator[Progress | CheckOutcome | AuditResult]:
    """``run_audit``'s events for a model served elsewhere: ``record`` stands in for it (from its
    metadata, with the preprocessing that makes its inputs) and ``infer`` runs a batch there."""
    yield from _audit(record, infer, None, items, config, human, cancelled)


class _InferEngine:
    """The shared pass's batches sent to ``infer`` (a black box: its first output only), reduced here."""

    workers = INFERENCE_WORKERS  # a serving endpoint takes concurrent requests

    def __init__(self, infer: robustness_measures.Infer, shared: AuditPass) -> None:
        self.infer = infer
        self.shared = shared

    def __call__(self, batch: np.ndarray, others: Any) -> dict[str, np.ndarray]:
        return self.shared.reduce({self.shared.output: self.infer(batch)})


def _audit(
    record: ModelRecord,
    infer: robustness_measures.Infer,
    core: Convscope | None,
    items: Sequence[AuditItem],
    config: dict[str, dict[str, Any]],
    human: Sequence[HumanLabels],
    cancelled: threading.Event | None,
) -> Iterator[Progress | CheckOutcome | AuditResult]:
    """The audit of ``record``, its batches inferred by ``infer``; ``core`` holds the model itself,
    None for a remote one (then the checks that need more than outputs are skipped)."""
    start = time.monotonic()
    cancelled = cancelled or threading.Event()
    shared = AuditPass(record, len(items), config, activations=core is not None)
    limits = core.limits if core else RequestLimits()  # a remote model's audit runs here, with the defaults
    sizes: dict[int, tuple[int, int]] = {}
    skipped: list[Skipped] = []
    batch = job_batch_size(core.context if core else None, record, shared.tensors)
    stream = Prefetcher(
        chunks(items, batch),
        ChunkDecoder(record, sizes, shared.measured, max_pixels=limits.max_image_pixels),
        count=lambda chunk: len(chunk.items),
        depth=2 * DEFAULT_DECODE_WORKERS,
        cancelled=cancelled,
    )
    try:
        # A local model runs on the context's runtime, which also serves the dead filters' tensors.
        job = run_job(
            core.context if core else None,
            record,
            shared,
            stream,
            total=len(items),
            cancelled=cancelled,
            engine=None if core else _InferEngine(infer, shared),
        )
        for event in job:
            if isinstance(event, Skipped):
                skipped.append(event)
            elif isinstance(event, Progress):
                yield event
    finally:
        stream.close()
    if skipped:
        rows = [(items[entry.index].row, f"{items[entry.index].path}: {entry.reason}") for entry in skipped]
        raise InvalidArgument(rows_message("images could not be read", rows))
    labels = np.array([item.label for item in items])
    checks: dict[str, Callable[[dict[str, Any]], CheckOutcome]] = {
        "accuracy": lambda c: accuracy(shared.top, labels, record.labels, c, human),
        "attributes": lambda c: attribute_slices(shared.top[:, 0] != labels, _attributes(shared, items, sizes), c),
        "robustness": lambda c: robustness(core, record, infer, shared.pictures, labels, c, cancelled),
    }
    if core is not None:
        checks |= {
            "dead_filters": lambda c: dead_filters(shared.dead, c),
            "filter_smoothness": lambda c: filter_smoothness(core, record, c),
            "explanation_sanity": lambda c: explanation_sanity(core, record, shared.pictures, shared.top[:, 0], c),
            "explanation_faithfulness": lambda c: explanation_faithfulness(core, record, shared.pictures, shared.top[:, 0], c),
        }
    else:
        checks |= {name: (lambda c, name=name, reason=reason: _skipped(name, reason)) for name, reason in REMOTE_SKIPS.items()}
    outcomes = []
    with ThreadPoolExecutor(INFERENCE_WORKERS, thread_name_prefix="convscope-check") as pool:
        running = {
            name: pool.submit(_run_check, name, config, checks[name]) for name in SAMPLING_CHECKS if config[name]["enabled"]
        }
        try:
            for name in CHECK_ORDER:
                if cancelled.is_set():
                    raise Cancelled("the audit was cancelled")
                outcomes.append(running[name].result() if name in running else _run_check(name, config, checks[name]))
                yield outcomes[-1]
        finally:
            pool.shutdown(cancel_futures=True)  # a cancelled audit starts no further check; the running ones end first
    yield AuditResult(record, items, config, outcomes, shared.top, time.monotonic() - start)


def _run_check(name: str, config: dict[str, dict[str, Any]], check: Callable[[dict[str, Any]], CheckOutcome]) -> CheckOutcome:
    settings = config[name]
    if not settings["enabled"]:
        return CheckOutcome(name, "disabled", "turned off in the config")
    start = time.monotonic()
    try:
        outcome = check(settings)
    except Cancelled:
        raise
    except Exception as error:  # noqa: BLE001 - a crashing check is reported, never counted as passed
        allowed = settings["allow_error"]
        outcome = CheckOutcome(
            name,
            "passed" if allowed else "error",
            f"the check raised {type(error).__name__}: {error}" + (" (allowed by allow_error)" if allowed else ""),
            {"traceback": traceback.format_exc(limit=4)},
            crashed=True,
        )
    outcome.seconds = time.monotonic() - start
    return outcome


def _skipped(name: str, reason: str) -> CheckOutcome:
    return CheckOutcome(name, "skipped", f"skipped for a remote model: {reason}", {"skipped": reason})


def _attributes(shared: AuditPass, items: Sequence[AuditItem], sizes: dict[int, tuple[int, int]]) -> dict[str, np.ndarray]:
    """Every attribute per image: computed ones, the stored size, and the CSV's extra columns
    (numbers where every value parses as one, else categories)."""
    values = dict(shared.measured)
    for name in image_attributes.FROM_FILE:
        values[name] = np.full(len(items), np.nan)
    for index, (width, height) in sizes.items():
        for name, value in image_attributes.from_size(width, height).items():
            values[name][index] = value
    for column in dict.fromkeys(key for item in items for key in item.attributes):
        raw = [item.attributes.get(column, "") for item in items]
        try:
            values[column] = np.array([float(text) if text else np.nan for text in raw])
        except ValueError:
            values[column] = np.array(raw, dtype=object)
    return values


def sampled_images(config: dict[str, dict[str, Any]], total: int) -> dict[str, list[int]]:
    """The images each enabled sampled check uses, evenly spaced over the dataset, by check
    setting: what the shared pass keeps decoded."""
    counts = {("robustness", "images"), ("explanation_sanity", "images"), ("explanation_faithfulness", "images")}
    if config["robustness"]["attacks"]:
        counts.add(("robustness", "attack_images"))
    return {f"{check}.{key}": evenly_spaced(config[check][key], total) for check, key in counts if config[check]["enabled"]}
