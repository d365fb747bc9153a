"""Intervals and tests for error rates: Wilson score intervals, one-sided binomial tests of a
slice against the whole set, and Benjamini–Hochberg over many slices."""

from __future__ import annotations

import numpy as np
from scipy import stats


def wilson_interval(errors: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of an error rate (sound near 0 and 1, where the normal one is not)."""
    if total == 0:
        return (0.0, 1.0)
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    rate = errors / total
    centre = (rate + z * z / (2 * total)) / (1 + z * z / total)
    half = z * np.sqrt(rate * (1 - rate) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (max(0.0, centre - half), min(1.0, centre + half))


def excess_error_p_value(errors: int, total: int, overall_rate: float) -> float:
    """P(at least ``errors`` errors in ``total`` images) if the slice erred at the overall rate."""
    if total == 0:
        return 1.0
    return float(stats.binom.sf(errors - 1, total, overall_rate))


def benjamini_hochberg(p_values: np.ndarray, fdr: float) -> np.ndarray:
    """Which hypotheses the Benjamini–Hochberg step-up procedure rejects at false-discovery rate ``fdr``."""
    p = np.asarray(p_values, np.float64)
    rejected = np.zeros(p.shape, bool)
    if p.size == 0:
        return rejected
    order = np.argsort(p, kind="stable")
    below = p[order] <= fdr * np.arange(1, p.size + 1) / p.size
    if below.any():
        rejected[order[: np.flatnonzero(below)[-1] + 1]] = True
    return rejected
