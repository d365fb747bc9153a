"""The audit: one forward pass over the labelled data feeds accuracy, attribute slices and dead
filters together; then each enabled check turns those numbers into figures and a verdict.

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
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from convscope.audit import attributes as image_attributes
from convscope.audit import robustness as robustness_measures
from convscope.audit import sanity
from convscope.audit.dataset import AuditItem, rows_message
from convscope.audit.decoding import ChunkDecoder, chunks
from convscope.audit.human import HumanLabels, compare
from convscope.audit.stats import benjamini_hochberg, excess_error_p_value, wilson_interval
from convscope.core import Convscope
from convscope.data.streams import DEFAULT_DECODE_WORKERS, Prefetcher, Sample, Skipped
from convscope.errors import Cancelled, InvalidArgument
from convscope.limits import RequestLimits
from convscope.methods.activations import DeadFilterCounts
from convscope.methods.dataset_jobs import Progress, run_job
from convscope.model.types import ModelRecord
from convscope.runtime.context import INFERENCE_WORKERS

TOP_K = 5
RECTIFIERS = {"Relu", "Clip", "LeakyRelu", "PRelu"}
# Thumbnails the report shows per list (misclassified images, a worst slice).
THUMBNAILS = 12
# The order the checks run in and the report lists them.
CHECK_ORDER = ("accuracy", "attributes", "dead_filters", "filter_smoothness", "robustness", "explanation_sanity",
               "explanation_faithfulness")
# What a black box cannot give, per check (the robustness check keeps its corruptions: they need outputs only).
REMOTE_SKIPS = {
    "dead_filters": "a remote model's hidden activations are not served, only its outputs",
    "filter_smoothness": "a remote model's weights are not served",
    "explanation_sanity": "it randomizes the model's weights and needs gradients; a remote model serves neither",
    "explanation_faithfulness": "its explanation methods need gradients, which a remote model does not serve",
}
ATTACKS_SKIPPED = "FGSM and PGD need gradients, which a remote model does not serve"


@dataclass
class CheckOutcome:
    name: str
    status: str  # "passed", "failed", "error" (the check raised), "disabled", "skipped" (it cannot run on this model)
    message: str
    figures: dict[str, Any] = field(default_factory=dict)
    thumbnails: dict[str, list[int]] = field(default_factory=dict)  # caption → item indices
    pictures: dict[str, bytes] = field(default_factory=dict)  # caption → PNG made by the method
    crashed: bool = False  # the check raised (its status is "error", or "passed" where allowed)
    seconds: float = 0.0


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
    stream = Prefetcher(chunks(items), ChunkDecoder(record, sizes, shared.measured, max_pixels=limits.max_image_pixels), count=lambda chunk: len(chunk.items),
                        depth=2 * DEFAULT_DECODE_WORKERS, cancelled=cancelled)
    try:
        # A local model runs on the context's runtime, which also serves the dead filters' tensors.
        job = run_job(core.context if core else None, record, shared, stream, total=len(items), cancelled=cancelled,
                      engine=None if core else _InferEngine(infer, shared))
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
    for name in CHECK_ORDER:
        if cancelled.is_set():
            raise Cancelled("the audit was cancelled")
        outcomes.append(_run_check(name, config, checks[name]))
        yield outcomes[-1]
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
            name, "passed" if allowed else "error",
            f"the check raised {type(error).__name__}: {error}" + (" (allowed by allow_error)" if allowed else ""),
            {"traceback": traceback.format_exc(limit=4)}, crashed=True,
        )
    outcome.seconds = time.monotonic() - start
    return outcome


def _skipped(name: str, reason: str) -> CheckOutcome:
    return CheckOutcome(name, "skipped", f"skipped for a remote model: {reason}", {"skipped": reason})


def _verdict(name: str, failures: list[str], passed_message: str, figures: dict[str, Any], **extra: Any) -> CheckOutcome:
    if failures:
        return CheckOutcome(name, "failed", "; ".join(failures), figures, **extra)
    return CheckOutcome(name, "passed", passed_message, figures, **extra)


# ---------------------------------------------------------------------------------- accuracy


def accuracy(
    top: np.ndarray, labels: np.ndarray, names: Sequence[str], settings: dict[str, Any], human: Sequence[HumanLabels] = ()
) -> CheckOutcome:
    """Top-1/top-5 error with Wilson intervals, per-class error, the most confused pairs; with
    human labels, model and people compared on the same images."""
    total = len(labels)
    level = settings["confidence"]
    figures: dict[str, Any] = {"images": total, "confidence": level}
    failures = []
    for k, key in ((1, "top1"), (TOP_K, "top5")):
        if top.shape[1] < k:
            continue
        errors = int((top[:, :k] != labels[:, None]).all(axis=1).sum())
        rate = errors / total
        figures[f"{key}_error"] = rate
        figures[f"{key}_errors"] = errors
        figures[f"{key}_interval"] = list(wilson_interval(errors, total, level))
        threshold = settings[f"max_{key}_error"]
        if rate > threshold:
            failures.append(f"{key}_error {rate:.4f} > max_{key}_error {threshold}")
    predicted = top[:, 0]
    classes = max(int(labels.max()) + 1, int(predicted.max()) + 1, len(names))
    confusion = np.zeros((classes, classes), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    name = (lambda c: names[c] if c < len(names) else str(c))
    per_class = []
    for c in range(classes):
        count = int(confusion[c].sum())
        if count:
            wrong = count - int(confusion[c, c])
            per_class.append({"class": c, "label": name(c), "images": count, "error": wrong / count,
                              "interval": list(wilson_interval(wrong, count, level))})
    figures["per_class"] = per_class
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    pairs = np.argsort(-off, axis=None, kind="stable")[: settings["confused_pairs"]]
    figures["confused_pairs"] = [
        {"true": name(int(t)), "predicted": name(int(p)), "count": int(off[t, p])}
        for t, p in zip(*np.unravel_index(pairs, off.shape)) if off[t, p]
    ]
    thumbnails = {"misclassified": np.flatnonzero(predicted != labels).tolist()}
    if human:
        figures["human"], against = compare(top, labels, human)
        thumbnails.update(against)
    return _verdict("accuracy", failures, f"top-1 error {figures['top1_error']:.4f}", figures,
                    thumbnails={caption: shown[:THUMBNAILS] for caption, shown in thumbnails.items()})


# ---------------------------------------------------------------------------------- attributes


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


def slices_of(values: np.ndarray, bins: int) -> list[tuple[str, np.ndarray]]:
    """(description, member mask) per slice: quantile bins of a numeric attribute (edges that
    coincide are merged), one slice per value of a categorical one."""
    if values.dtype == object:
        return [(f"= {value}", values == value) for value in sorted(set(values.tolist()))]
    known = ~np.isnan(values)
    if not known.any() or np.ptp(values[known]) == 0:
        return []
    edges = np.unique(np.quantile(values[known], np.linspace(0, 1, bins + 1)))
    # Right-closed bins [e_i, e_i+1), the last one closed: np.digitize on the inner edges.
    which = np.digitize(values, edges[1:-1], right=False)
    return [(f"[{edges[i]:.4g}, {edges[i + 1]:.4g}{']' if i == len(edges) - 2 else ')'}", known & (which == i))
            for i in range(len(edges) - 1)]


def attribute_slices(wrong: np.ndarray, attributes: dict[str, np.ndarray], settings: dict[str, Any]) -> CheckOutcome:
    """Error per slice of each attribute; a slice fails when it is large enough, its error exceeds
    the whole set's by more than ``max_excess_error`` and Benjamini–Hochberg over all slices
    rejects chance."""
    overall = float(wrong.mean())
    rows = []
    for attribute, values in attributes.items():
        for description, members in slices_of(values, settings["bins"]):
            count = int(members.sum())
            errors = int(wrong[members].sum())
            rows.append({"attribute": attribute, "slice": description, "images": count, "errors": errors,
                         "error": errors / count if count else 0.0,
                         "p_value": excess_error_p_value(errors, count, overall), "members": members})
    rejected = benjamini_hochberg(np.array([row["p_value"] for row in rows]), settings["fdr"])
    failures = []
    for row, reject in zip(rows, rejected):
        row["significant"] = bool(reject)
        row["failed"] = bool(reject and row["images"] >= settings["min_slice"]
                             and row["error"] - overall > settings["max_excess_error"])
        if row["failed"]:
            failures.append(f"{row['attribute']} {row['slice']}: error {row['error']:.4f} exceeds the overall "
                            f"{overall:.4f} by more than max_excess_error {settings['max_excess_error']}")
    worst = max(rows, key=lambda row: (row["images"] >= settings["min_slice"], row["error"]), default=None)
    thumbnails = {}
    if worst is not None:
        members = np.flatnonzero(worst["members"] & wrong)[:THUMBNAILS]
        thumbnails[f"worst slice: {worst['attribute']} {worst['slice']} (misclassified)"] = members.tolist()
    for row in rows:
        del row["members"]
    figures = {"overall_error": overall, "slices": rows, "attributes": list(attributes)}
    return _verdict("attributes", failures, f"no slice errs significantly more than {overall:.4f}", figures,
                    thumbnails=thumbnails)


# ---------------------------------------------------------------------------------- filters


def dead_filters(counts: DeadFilterCounts | None, settings: dict[str, Any]) -> CheckOutcome:
    if counts is None or not counts.tensors:
        return CheckOutcome("dead_filters", "passed", "the model has no rectifier layer", {"layers": []})
    result = counts.result()
    layers, failures = [], []
    for report in result.reports:
        share = len(report.dead) / max(1, len(report.zero_fraction))
        layers.append({"layer": report.tensor, "channels": len(report.zero_fraction), "dead": report.dead.tolist(), "dead_share": share})
        if share > settings["max_dead_share"]:
            failures.append(f"{report.tensor}: dead_share {share:.3f} > max_dead_share {settings['max_dead_share']}")
    return _verdict("dead_filters", failures, f"no layer over {settings['max_dead_share']} dead",
                    {"images": result.samples, "layers": layers})


def filter_smoothness(core: Convscope, record: ModelRecord, settings: dict[str, Any]) -> CheckOutcome:
    first = next((layer for layer in record.layers if layer.op_type == "Conv"), None)
    if first is None:
        return CheckOutcome("filter_smoothness", "passed", "the model has no convolution", {})
    result = core.filters(record.id, first.name, render=True)
    mean = result.mean_smoothness
    figures = {"layer": result.node, "mean_smoothness": mean, "smoothness": np.nan_to_num(result.smoothness).tolist()}
    failures = [] if mean >= settings["min_mean_smoothness"] else [
        f"{result.node}: mean_smoothness {mean:.3f} < min_mean_smoothness {settings['min_mean_smoothness']}"]
    return _verdict("filter_smoothness", failures, f"mean smoothness {mean:.3f}", figures,
                    pictures={f"filters of {result.node}": result.png})


# ---------------------------------------------------------------------------------- robustness


def evenly_spaced(count: int, total: int) -> list[int]:
    return sorted(set(np.linspace(0, total - 1, min(count, total)).round().astype(int).tolist()))


def sampled_images(config: dict[str, dict[str, Any]], total: int) -> dict[str, list[int]]:
    """The images each enabled sampled check uses, evenly spaced over the dataset, by check
    setting: what the shared pass keeps decoded."""
    counts = {("robustness", "images"), ("explanation_sanity", "images"), ("explanation_faithfulness", "images")}
    if config["robustness"]["attacks"]:
        counts.add(("robustness", "attack_images"))
    return {f"{check}.{key}": evenly_spaced(config[check][key], total) for check, key in counts if config[check]["enabled"]}


def robustness(core: Convscope | None, record: ModelRecord, infer: robustness_measures.Infer, pictures: dict[int, np.ndarray],
               labels: np.ndarray, settings: dict[str, Any], cancelled: threading.Event) -> CheckOutcome:
    """Accuracy under each common corruption and severity relative to clean accuracy on the same
    images, and under FGSM and PGD at each ε (a remote model, ``core`` None: corruptions only)."""
    chosen = evenly_spaced(settings["images"], len(labels))
    figures, failures = robustness_measures.corruption_table(infer, record, [pictures[i] for i in chosen], labels[chosen], settings)
    message = f"clean accuracy {figures['clean_accuracy']:.4f}; no corruption over its limit"
    if settings["attacks"] and core is None:
        figures["adversarial"] = {"skipped": ATTACKS_SKIPPED}
        message += f" (attacks skipped: {ATTACKS_SKIPPED})"
    elif settings["attacks"]:
        attacked = evenly_spaced(settings["attack_images"], len(labels))
        figures["adversarial"], attack_failures = robustness_measures.attack_table(
            core, record, [pictures[i] for i in attacked], labels[attacked], settings, cancelled)
        failures += attack_failures
        message = f"clean accuracy {figures['clean_accuracy']:.4f}; no corruption or attack over its limit"
    return _verdict("robustness", failures, message, figures)


# ---------------------------------------------------------------------------------- explanations


def explained_sample(record: ModelRecord, pictures: dict[int, np.ndarray], predicted: np.ndarray,
                     count: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """``count`` images evenly spaced over the dataset, as one batch, with their top-1 classes."""
    chosen = evenly_spaced(count, len(predicted))
    return robustness_measures.model_input(record, [pictures[i] for i in chosen]).batch, predicted[chosen], chosen


def explanation_sanity(core: Convscope, record: ModelRecord, pictures: dict[int, np.ndarray], predicted: np.ndarray,
                       settings: dict[str, Any]) -> CheckOutcome:
    batch, targets, _ = explained_sample(record, pictures, predicted, settings["images"])
    table = sanity.cascade(core, record, batch, targets, settings["methods"], settings)
    limit = settings["max_mean_rank_correlation"]
    summary, failures = {}, []
    for method, steps in table.items():
        mean = float(np.mean([step["spearman"] for step in steps])) if steps else float("nan")
        summary[method] = mean
        if not mean < limit:
            failures.append(f"{method}: mean_rank_correlation {mean:.3f} >= max_mean_rank_correlation {limit} "
                            "(its maps barely change when the weights are randomized)")
    return _verdict("explanation_sanity", failures, "every method's maps change under randomization",
                    {"images": len(batch), "mean_rank_correlation": summary, "max_mean_rank_correlation": limit, "cascade": table})


def explanation_faithfulness(core: Convscope, record: ModelRecord, pictures: dict[int, np.ndarray], predicted: np.ndarray,
                             settings: dict[str, Any]) -> CheckOutcome:
    batch, targets, _ = explained_sample(record, pictures, predicted, settings["images"])
    table = sanity.faithfulness(core, record, batch, targets, settings["methods"], settings)
    gap = {method: row["insertion_auc"] - row["deletion_auc"] for method, row in table.items()}
    margin = settings["min_margin"]
    failures = [f"{method}: insertion_auc - deletion_auc {gap[method]:.3f} does not beat a random map's "
                f"{gap['random']:.3f} by min_margin {margin}" for method in settings["methods"] if not gap[method] > gap["random"] + margin]
    return _verdict("explanation_faithfulness", failures, "every method ranks pixels better than a random map",
                    {"images": len(batch), "auc": table, "insertion_minus_deletion": gap})
