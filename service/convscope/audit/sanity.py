"""Explanation checks on a sample of images: do a method's maps change when the model's weights
are randomized (Adebayo et al. 2018), and do they rank pixels the model needs (deletion and
insertion, Petsiuk et al. 2018)?"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage, stats

from convscope.audit.randomize import layers_from_top, randomized
from convscope.core import Convscope
from convscope.methods import attribution as attribution_methods
from convscope.methods.faithfulness import curves, importance
from convscope.model.types import ModelRecord

SSIM_SIGMA = 1.5  # Wang et al. 2004: an 11×11 Gaussian window of σ 1.5
SSIM_TRUNCATE = 3.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def options_for(settings: dict[str, object], targets: np.ndarray) -> attribution_methods.AttributionOptions:
    return attribution_methods.AttributionOptions(
        target=targets.tolist(),
        steps=int(settings["ig_steps"]),
        samples=int(settings["smoothgrad_samples"]),
        seed=int(settings["seed"]),
    )


def normalized_maps(record: ModelRecord, maps: np.ndarray, spatial: tuple[int, int]) -> np.ndarray:
    """[N, H, W] |map| (summed over channels), clipped at its 99th percentile and scaled to [0, 1]."""
    magnitude = importance(record, maps, spatial).astype(np.float64)
    top = np.percentile(magnitude.reshape(len(magnitude), -1), 99, axis=1)[:, None, None]
    clipped = np.minimum(magnitude, top)
    scale = clipped.reshape(len(clipped), -1).max(1)[:, None, None]
    return np.divide(clipped, scale, out=np.zeros_like(clipped), where=scale > 0)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """Structural similarity of two maps with a Gaussian window (Wang et al. 2004), mean over the image."""
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    blur = lambda x: ndimage.gaussian_filter(x, SSIM_SIGMA, truncate=SSIM_TRUNCATE)
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    covariance = blur(a * b) - mu_a * mu_b
    index = ((2 * mu_a * mu_b + c1) * (2 * covariance + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    border = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)  # where the window runs off the map (as scikit-image crops)
    inner = index[border:-border, border:-border] if min(index.shape) > 2 * border else index
    return float(inner.mean())


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation; 0 where a map is constant (it has no ranking to share)."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(stats.spearmanr(a.ravel(), b.ravel()).statistic)


def cascade_counts(layers: int, steps: int) -> list[int]:
    """How many layers from the top each evaluated cascade step has randomized: every count up to
    ``steps`` layers, else ``steps`` counts evenly spaced from 1 (the top layer) to all of them —
    each step costs one upload and every method's maps, so a deep model's cascade is bounded."""
    return sorted(set(np.linspace(1, layers, min(steps, layers)).round().astype(int).tolist())) if layers else []


def cascade(
    core: Convscope,
    record: ModelRecord,
    batch: np.ndarray,
    targets: np.ndarray,
    methods: Sequence[str],
    settings: dict[str, object],
) -> dict[str, list[dict[str, float | str | int]]]:
    """Per method, per cascade step (top layers randomized so far): mean Spearman and SSIM
    between the original model's normalized maps and the randomized one's."""
    base = core.runtime.base_graph(record.id, dynamic_batch=record.dynamic_batch)
    spatial = attribution_methods.spatial_size(record, batch)
    options = options_for(settings, targets)

    def maps(model: ModelRecord) -> dict[str, np.ndarray]:
        return {
            method: normalized_maps(
                model, attribution_methods.attribution(core.context, model, batch, method, options).map, spatial
            )
            for method in methods
        }

    original = maps(record)
    layers = layers_from_top(base)
    table: dict[str, list[dict[str, float | str | int]]] = {method: [] for method in methods}
    for count in cascade_counts(len(layers), int(settings["cascade_steps"])):
        changed = randomized(base, count, seed=int(settings["seed"]))
        model = core.upload([("", changed.SerializeToString())], name=f"{record.name}-randomized-top{count}")
        try:
            for method, after in maps(model).items():
                before = original[method]
                table[method].append(
                    {
                        "randomized_layers": count,
                        "top_layer": layers[count - 1],
                        "spearman": float(np.mean([spearman(x, y) for x, y in zip(before, after)])),
                        "ssim": float(np.mean([ssim(x, y) for x, y in zip(before, after)])),
                    }
                )
        finally:
            core.delete(model.id)
    return table


def faithfulness(
    core: Convscope,
    record: ModelRecord,
    batch: np.ndarray,
    targets: np.ndarray,
    methods: Sequence[str],
    settings: dict[str, object],
) -> dict[str, dict[str, float]]:
    """Per method (and a seeded random map, the baseline to beat): mean deletion and insertion AUC."""
    options = options_for(settings, targets)
    spatial = attribution_methods.spatial_size(record, batch)
    maps = {method: attribution_methods.attribution(core.context, record, batch, method, options).map for method in methods}
    maps["random"] = np.random.default_rng(int(settings["seed"])).random((len(batch), *spatial))
    table = {}
    for method, saliency in maps.items():
        found = curves(
            core.context,
            record,
            batch,
            saliency,
            targets.tolist(),
            pixels_per_step=int(settings["pixels_per_step"]),
            blur_sigma=float(settings["blur_sigma"]),
        )
        table[method] = {f"{c.metric}_auc": float(c.auc.mean()) for c in found}
    return table
