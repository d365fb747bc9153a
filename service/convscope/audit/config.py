"""The audit's thresholds: documented defaults, overridden by a TOML file, every check switchable.

A key the audit does not know is a configuration error (exit 2), not silently ignored: a typo in
a threshold would otherwise turn a check into one that always passes.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import tomllib

from convscope.errors import InvalidArgument

EXPLANATION_METHODS = ("gradient", "guided_backprop", "grad_cam", "integrated_gradients", "smoothgrad")
ATTACKS = ("fgsm", "pgd")
# The values a list setting may hold: names from a fixed set, or numbers.
LIST_CHOICES: dict[str, tuple[str, ...]] = {"methods": EXPLANATION_METHODS, "attacks": ATTACKS}

# Each check: ``enabled``; ``allow_error`` (an error inside the check counts as passed, with the
# error reported); and its thresholds.  Error rates and shares are fractions in [0, 1].
DEFAULTS: dict[str, dict[str, Any]] = {
    "accuracy": {
        "enabled": True,
        "allow_error": False,
        "max_top1_error": 0.10,  # fails when the top-1 error exceeds this
        "max_top5_error": 0.05,  # fails when the top-5 error exceeds this (models with ≥ 5 classes)
        "confidence": 0.95,  # Wilson score intervals at this level
        "confused_pairs": 10,  # how many (true, predicted) pairs the report lists
    },
    "attributes": {
        "enabled": True,
        "allow_error": False,
        "bins": 4,  # quantile bins per numeric attribute
        "min_slice": 20,  # slices with fewer images are reported but never fail
        "max_excess_error": 0.10,  # a slice fails when its error exceeds the whole set's by more…
        "fdr": 0.05,  # …and Benjamini–Hochberg over every slice rejects "chance" at this rate
    },
    "dead_filters": {
        "enabled": True,
        "allow_error": False,
        "max_dead_share": 0.5,  # fails when a layer has more than this share of channels dead
        "zero_share": 1.0,  # a channel is dead when it is zero on at least this share of images
    },
    "filter_smoothness": {
        "enabled": True,
        "allow_error": False,
        "min_mean_smoothness": 0.2,  # first convolution: mean spectral smoothness (white-noise 7×7 filters ≈ 0.2)
    },
    "robustness": {
        "enabled": True,
        "allow_error": False,
        "images": 1000,  # evenly spaced over the dataset (all of it when smaller)
        # Relative accuracy drop (clean − corrupted) / clean, averaged over the three severities:
        # a corruption fails when it exceeds this.
        "max_mean_relative_drop": 0.25,
        "seed": 0,
        # Adversarial attacks (methods/adversarial.py): untargeted L∞ FGSM and PGD, no random
        # start, PGD's step 2.5·ε/steps (Madry et al.); [] turns them off.
        "attacks": list(ATTACKS),
        "epsilons": [1, 2, 4, 8],  # L∞ budgets in 1/255 of the pixel range
        "pgd_steps": 10,
        "attack_images": 200,  # evenly spaced over the dataset; those the model gets right are attacked
        # Per ε (same order): an attack fails the check when it fools more than this share of the
        # images the model gets right. 1.0 reports without gating: ordinary models are not robust.
        "max_attack_success": [1.0, 1.0, 1.0, 1.0],
    },
    "explanation_sanity": {
        "enabled": True,
        "allow_error": False,
        "methods": list(EXPLANATION_METHODS),
        "images": 8,  # evenly spaced over the dataset; each map explains the model's top-1 class
        # A method passes when its maps change: the mean Spearman correlation of |maps| between the
        # original and the cascade's randomized models, averaged over the cascade, stays below this.
        "max_mean_rank_correlation": 0.5,
        # Cascade steps evaluated: every layer on models with at most this many parametric layers
        # (Conv/Gemm/MatMul/BatchNormalization), else this many evenly spaced from the top to all.
        "cascade_steps": 8,
        "ig_steps": 16,
        "smoothgrad_samples": 10,
        "seed": 0,
    },
    "explanation_faithfulness": {
        "enabled": True,
        "allow_error": False,
        "methods": list(EXPLANATION_METHODS),
        "images": 16,
        "pixels_per_step": 0,  # 0: 1/64 of the image per step
        "blur_sigma": 5.0,  # insertion starts from the image blurred with this σ (input pixels)
        # A method fails when its insertion − deletion AUC does not beat a random map's by this margin.
        "min_margin": 0.0,
        "ig_steps": 16,
        "smoothgrad_samples": 10,
        "seed": 0,
    },
}


class ConfigError(InvalidArgument):
    """A configuration the audit refuses (exit 2)."""


def resolve(overrides: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """The defaults with ``overrides`` (parsed TOML) applied, each value checked against its default's type."""
    config = copy.deepcopy(DEFAULTS)
    for check, values in (overrides or {}).items():
        if check not in config:
            raise ConfigError(f"unknown check [{check}] in the audit config; known: {', '.join(config)}")
        if not isinstance(values, dict):
            raise ConfigError(f"[{check}] must be a table of settings, not {values!r}")
        for key, value in values.items():
            if key not in config[check]:
                raise ConfigError(f"unknown setting {check}.{key}; known: {', '.join(config[check])}")
            default = config[check][key]
            if isinstance(default, bool) != isinstance(value, bool) or not isinstance(value, (type(default), int)):
                raise ConfigError(f"{check}.{key} must be a {type(default).__name__}, not {value!r}")
            if isinstance(default, list):
                _check_list(f"{check}.{key}", value, LIST_CHOICES.get(key))
            config[check][key] = type(default)(value)
    if config["explanation_sanity"]["cascade_steps"] < 1:
        raise ConfigError(
            f"explanation_sanity.cascade_steps must be at least 1, got {config['explanation_sanity']['cascade_steps']}"
        )
    robustness = config["robustness"]
    if len(robustness["max_attack_success"]) != len(robustness["epsilons"]):
        raise ConfigError(
            f"robustness.max_attack_success needs one share per epsilon ({len(robustness['epsilons'])}), "
            f"got {len(robustness['max_attack_success'])}"
        )
    return config


def _check_list(name: str, value: list[Any], choices: tuple[str, ...] | None) -> None:
    """Names from ``choices``, or (without choices) numbers ≥ 0."""
    if choices is not None:
        if not set(value) <= set(choices):
            raise ConfigError(f"{name}: unknown {sorted(map(str, set(value) - set(choices)))}; choose from {list(choices)}")
    elif not all(isinstance(number, (int, float)) and not isinstance(number, bool) and number >= 0 for number in value):
        raise ConfigError(f"{name} must be a list of numbers ≥ 0, not {value!r}")


def load(path: Path | None) -> dict[str, dict[str, Any]]:
    if path is None:
        return resolve()
    try:
        return resolve(tomllib.loads(path.read_text()))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    except OSError as error:
        raise ConfigError(f"cannot read the audit config {path}: {error.strerror}") from None
