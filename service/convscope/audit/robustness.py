"""The robustness check's measurements on the pictures the model sees (decoded once, by the
shared pass): accuracy under common corruptions at three severities, and under untargeted L∞
FGSM and PGD attacks at each ε — the loop the ``Adversarial`` RPC runs (methods/adversarial.py).

An attack starts from the images the model gets right and moves them away from their label (for
those, the top class): its success is the share of them it fools, and robust accuracy is the
share of all sampled images still right under attack (never above clean accuracy).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from convscope.audit import corruptions
from convscope.core import Convscope
from convscope.errors import Cancelled
from convscope.methods.adversarial import AdversarialOptions, AdversarialResult
from convscope.model.preprocessing import ImageSample, ModelInput, batch_of
from convscope.model.types import ModelRecord

PIXEL_LEVELS = 255  # ε is given in 1/255 of the pixel range

# A batch of model inputs → the model's first output for it: all the corruptions need, so they also
# run on a model served elsewhere.
Infer = Callable[[np.ndarray], np.ndarray]


def model_input(record: ModelRecord, pictures: Sequence[np.ndarray]) -> ModelInput:
    """The model's batch for decoded pictures (H×W×3 uint8, as the model sees them)."""
    dtype = np.dtype(record.input.dtype)
    return ModelInput(batch_of([ImageSample(picture, record.preprocessing, dtype) for picture in pictures]), tuple(pictures))


def local_infer(core: Convscope, record: ModelRecord) -> Infer:
    output = record.outputs[0].name
    return lambda batch: core.context.forward(record, batch, [output])[output]


def top1(infer: Infer, batch: np.ndarray) -> np.ndarray:
    return infer(batch).reshape(len(batch), -1).argmax(1)


def corruption_table(
    infer: Infer, record: ModelRecord, pictures: Sequence[np.ndarray], truth: np.ndarray, settings: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """Clean accuracy and, per corruption, accuracy at severities 1–3 and the mean relative drop."""

    def accuracy_on(batch_pictures: Sequence[np.ndarray]) -> float:
        return float((top1(infer, model_input(record, batch_pictures).batch) == truth).mean())

    clean = accuracy_on(pictures)
    rng = np.random.default_rng(settings["seed"])
    table, failures = {}, []
    limit = settings["max_mean_relative_drop"]
    stack = np.stack(pictures)  # the pictures the model sees: one size
    for name in corruptions.CORRUPTIONS:
        accuracies = [accuracy_on(list(corruptions.corrupt(stack, name, severity, rng))) for severity in (1, 2, 3)]
        drops = [(clean - accuracy) / clean if clean else 0.0 for accuracy in accuracies]
        table[name] = {"accuracy": accuracies, "relative_drop": drops, "mean_relative_drop": float(np.mean(drops))}
        if table[name]["mean_relative_drop"] > limit:
            failures.append(
                f"{name}: mean_relative_drop {table[name]['mean_relative_drop']:.3f} > max_mean_relative_drop {limit}"
            )
    figures = {"images": len(pictures), "clean_accuracy": clean, "severities": corruptions.SEVERITIES, "corruptions": table}
    return figures, failures


def attack_options(attack: str, epsilon: float, settings: dict[str, Any]) -> AdversarialOptions:
    return AdversarialOptions(
        method=attack, epsilon=epsilon / PIXEL_LEVELS, steps=settings["pgd_steps"] if attack == "pgd" else 1
    )


def attack_table(
    core: Convscope,
    record: ModelRecord,
    pictures: Sequence[np.ndarray],
    truth: np.ndarray,
    settings: dict[str, Any],
    cancelled: threading.Event | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Per attack and ε: robust accuracy and attack success; a failure names the attack, ε and the threshold."""
    sample = model_input(record, pictures)
    right = top1(local_infer(core, record), sample.batch) == truth
    attacked = ModelInput(sample.batch[right], tuple(p for p, ok in zip(pictures, right) if ok))
    epsilons = [float(e) for e in settings["epsilons"]]
    table: dict[str, list[dict[str, float]]] = {}
    failures = []
    for attack in settings["attacks"]:
        table[attack] = []
        for epsilon, limit in zip(epsilons, settings["max_attack_success"]):
            if cancelled is not None and cancelled.is_set():
                raise Cancelled("the audit was cancelled")
            fooled = (
                _fooled(core, record, attacked, attack_options(attack, epsilon, settings)) if right.any() else np.zeros(0, bool)
            )
            success = float(fooled.mean()) if len(fooled) else 0.0
            table[attack].append(
                {
                    "epsilon": epsilon,
                    "robust_accuracy": float((len(fooled) - fooled.sum()) / len(truth)),
                    "attack_success": success,
                    "attacked": int(len(fooled)),
                }
            )
            if success > limit:
                failures.append(f"{attack} at ε {epsilon:g}/255: attack_success {success:.3f} > max_attack_success {limit}")
    figures = {
        "images": len(pictures),
        "clean_accuracy": float(right.mean()),
        "epsilons": epsilons,
        "pgd_steps": settings["pgd_steps"],
        "attacks": table,
        "max_attack_success": list(settings["max_attack_success"]),
    }
    return figures, failures


def _fooled(core: Convscope, record: ModelRecord, attacked: ModelInput, options: AdversarialOptions) -> np.ndarray:
    """[N] bool: the attack moved the top class off each (correctly classified) image's label."""
    *_, result = core.adversarial(record.id, attacked, options)  # step progress, then the result
    assert isinstance(result, AdversarialResult)
    return np.asarray(result.success, bool)
