"""The audit's checks: each turns the shared pass's numbers (or its sampled images) into figures
and a verdict, a ``CheckOutcome`` whose failures name the figure and its threshold.

audit/engine.py runs the pass and calls them in order; a check that raises is recorded there.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from convscope.audit import robustness as robustness_measures
from convscope.audit import sanity
from convscope.audit.human import HumanLabels, compare
from convscope.audit.stats import benjamini_hochberg, excess_error_p_value, wilson_interval
from convscope.core import Convscope
from convscope.methods.activations import DeadFilterCounts
from convscope.model.types import ModelRecord

TOP_K = 5
# Thumbnails the report shows per list (misclassified images, a worst slice).
THUMBNAILS = 12
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
    name = lambda c: names[c] if c < len(names) else str(c)
    per_class = []
    for c in range(classes):
        count = int(confusion[c].sum())
        if count:
            wrong = count - int(confusion[c, c])
            per_class.append(
                {
                    "class": c,
                    "label": name(c),
                    "images": count,
                    "error": wrong / count,
                    "interval": list(wilson_interval(wrong, count, level)),
                }
            )
    figures["per_class"] = per_class
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    pairs = np.argsort(-off, axis=None, kind="stable")[: settings["confused_pairs"]]
    figures["confused_pairs"] = [
        {"true": name(int(t)), "predicted": name(int(p)), "count": int(off[t, p])}
        for t, p in zip(*np.unravel_index(pairs, off.shape))
        if off[t, p]
    ]
    thumbnails = {"misclassified": np.flatnonzero(predicted != labels).tolist()}
    if human:
        figures["human"], against = compare(top, labels, human)
        thumbnails.update(against)
    return _verdict(
        "accuracy",
        failures,
        f"top-1 error {figures['top1_error']:.4f}",
        figures,
        thumbnails={caption: shown[:THUMBNAILS] for caption, shown in thumbnails.items()},
    )


# ---------------------------------------------------------------------------------- attributes


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
    return [
        (f"[{edges[i]:.4g}, {edges[i + 1]:.4g}{']' if i == len(edges) - 2 else ')'}", known & (which == i))
        for i in range(len(edges) - 1)
    ]


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
            rows.append(
                {
                    "attribute": attribute,
                    "slice": description,
                    "images": count,
                    "errors": errors,
                    "error": errors / count if count else 0.0,
                    "p_value": excess_error_p_value(errors, count, overall),
                    "members": members,
                }
            )
    rejected = benjamini_hochberg(np.array([row["p_value"] for row in rows]), settings["fdr"])
    failures = []
    for row, reject in zip(rows, rejected):
        row["significant"] = bool(reject)
        row["failed"] = bool(
            reject and row["images"] >= settings["min_slice"] and row["error"] - overall > settings["max_excess_error"]
        )
        if row["failed"]:
            failures.append(
                f"{row['attribute']} {row['slice']}: error {row['error']:.4f} exceeds the overall "
                f"{overall:.4f} by more than max_excess_error {settings['max_excess_error']}"
            )
    worst = max(rows, key=lambda row: (row["images"] >= settings["min_slice"], row["error"]), default=None)
    thumbnails = {}
    if worst is not None:
        members = np.flatnonzero(worst["members"] & wrong)[:THUMBNAILS]
        thumbnails[f"worst slice: {worst['attribute']} {worst['slice']} (misclassified)"] = members.tolist()
    for row in rows:
        del row["members"]
    figures = {"overall_error": overall, "slices": rows, "attributes": list(attributes)}
    return _verdict(
        "attributes", failures, f"no slice errs significantly more than {overall:.4f}", figures, thumbnails=thumbnails
    )


# ---------------------------------------------------------------------------------- filters


def dead_filters(counts: DeadFilterCounts | None, settings: dict[str, Any]) -> CheckOutcome:
    if counts is None or not counts.tensors:
        return CheckOutcome("dead_filters", "passed", "the model has no rectifier layer", {"layers": []})
    result = counts.result()
    layers, failures = [], []
    for report in result.reports:
        share = len(report.dead) / max(1, len(report.zero_fraction))
        layers.append(
            {"layer": report.tensor, "channels": len(report.zero_fraction), "dead": report.dead.tolist(), "dead_share": share}
        )
        if share > settings["max_dead_share"]:
            failures.append(f"{report.tensor}: dead_share {share:.3f} > max_dead_share {settings['max_dead_share']}")
    return _verdict(
        "dead_filters", failures, f"no layer over {settings['max_dead_share']} dead", {"images": result.samples, "layers": layers}
    )


def filter_smoothness(core: Convscope, record: ModelRecord, settings: dict[str, Any]) -> CheckOutcome:
    first = next((layer for layer in record.layers if layer.op_type == "Conv"), None)
    if first is None:
        return CheckOutcome("filter_smoothness", "passed", "the model has no convolution", {})
    result = core.filters(record.id, first.name, render=True)
    mean = result.mean_smoothness
    figures = {"layer": result.node, "mean_smoothness": mean, "smoothness": np.nan_to_num(result.smoothness).tolist()}
    failures = (
        []
        if mean >= settings["min_mean_smoothness"]
        else [f"{result.node}: mean_smoothness {mean:.3f} < min_mean_smoothness {settings['min_mean_smoothness']}"]
    )
    return _verdict(
        "filter_smoothness", failures, f"mean smoothness {mean:.3f}", figures, pictures={f"filters of {result.node}": result.png}
    )


# ---------------------------------------------------------------------------------- robustness


def evenly_spaced(count: int, total: int) -> list[int]:
    return sorted(set(np.linspace(0, total - 1, min(count, total)).round().astype(int).tolist()))


def robustness(
    core: Convscope | None,
    record: ModelRecord,
    infer: robustness_measures.Infer,
    pictures: dict[int, np.ndarray],
    labels: np.ndarray,
    settings: dict[str, Any],
    cancelled: threading.Event,
) -> CheckOutcome:
    """Accuracy under each common corruption and severity relative to clean accuracy on the same
    images, and under FGSM and PGD at each ε (a remote model, ``core`` None: corruptions only)."""
    chosen = evenly_spaced(settings["images"], len(labels))
    figures, failures = robustness_measures.corruption_table(
        infer, record, [pictures[i] for i in chosen], labels[chosen], settings
    )
    message = f"clean accuracy {figures['clean_accuracy']:.4f}; no corruption over its limit"
    if settings["attacks"] and core is None:
        figures["adversarial"] = {"skipped": ATTACKS_SKIPPED}
        message += f" (attacks skipped: {ATTACKS_SKIPPED})"
    elif settings["attacks"]:
        attacked = evenly_spaced(settings["attack_images"], len(labels))
        figures["adversarial"], attack_failures = robustness_measures.attack_table(
            core, record, [pictures[i] for i in attacked], labels[attacked], settings, cancelled
        )
        failures += attack_failures
        message = f"clean accuracy {figures['clean_accuracy']:.4f}; no corruption or attack over its limit"
    return _verdict("robustness", failures, message, figures)


# ---------------------------------------------------------------------------------- explanations


def explained_sample(
    record: ModelRecord, pictures: dict[int, np.ndarray], predicted: np.ndarray, count: int
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """``count`` images evenly spaced over the dataset, as one batch, with their top-1 classes."""
    chosen = evenly_spaced(count, len(predicted))
    return robustness_measures.model_input(record, [pictures[i] for i in chosen]).batch, predicted[chosen], chosen


def explanation_sanity(
    core: Convscope, record: ModelRecord, pictures: dict[int, np.ndarray], predicted: np.ndarray, settings: dict[str, Any]
) -> CheckOutcome:
    batch, targets, _ = explained_sample(record, pictures, predicted, settings["images"])
    table = sanity.cascade(core, record, batch, targets, settings["methods"], settings)
    limit = settings["max_mean_rank_correlation"]
    summary, failures = {}, []
    for method, steps in table.items():
        mean = float(np.mean([step["spearman"] for step in steps])) if steps else float("nan")
        summary[method] = mean
        if not mean < limit:
            failures.append(
                f"{method}: mean_rank_correlation {mean:.3f} >= max_mean_rank_correlation {limit} "
                "(its maps barely change when the weights are randomized)"
            )
    return _verdict(
        "explanation_sanity",
        failures,
        "every method's maps change under randomization",
        {"images": len(batch), "mean_rank_correlation": summary, "max_mean_rank_correlation": limit, "cascade": table},
    )


def explanation_faithfulness(
    core: Convscope, record: ModelRecord, pictures: dict[int, np.ndarray], predicted: np.ndarray, settings: dict[str, Any]
) -> CheckOutcome:
    batch, targets, _ = explained_sample(record, pictures, predicted, settings["images"])
    table = sanity.faithfulness(core, record, batch, targets, settings["methods"], settings)
    gap = {method: row["insertion_auc"] - row["deletion_auc"] for method, row in table.items()}
    margin = settings["min_margin"]
    failures = [
        f"{method}: insertion_auc - deletion_auc {gap[method]:.3f} does not beat a random map's "
        f"{gap['random']:.3f} by min_margin {margin}"
        for method in settings["methods"]
        if not gap[method] > gap["random"] + margin
    ]
    return _verdict(
        "explanation_faithfulness",
        failures,
        "every method ranks pixels better than a random map",
        {"images": len(batch), "auc": table, "insertion_minus_deletion": gap},
    )
