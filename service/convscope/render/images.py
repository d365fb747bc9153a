"""Drawing primitives for every method's pictures."""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

from convscope.data.pictures import to_unit

# Anchor colours of matplotlib's "inferno" map (perceptually uniform, readable in grey print),
# interpolated to 256 entries: we need one colormap, not matplotlib.
_INFERNO_ANCHORS = np.array(
    [
        [0, 0, 4],
        [31, 12, 72],
        [85, 15, 109],
        [136, 34, 106],
        [186, 54, 85],
        [227, 89, 51],
        [249, 140, 10],
        [249, 201, 50],
        [252, 255, 164],
    ],
    dtype=np.float32,
)
INFERNO = np.stack(
    [np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_INFERNO_ANCHORS)), _INFERNO_ANCHORS[:, c]) for c in range(3)],
    axis=1,
).astype(np.uint8)

TILE_GAP = 1
MIN_TILE = 32  # small feature maps are enlarged (nearest) so a grid stays legible


def encode_png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def to_unit_square(points: np.ndarray) -> np.ndarray:
    """Points [N, D] with each coordinate min–max scaled to [0, 1] (a constant one: 0)."""
    low, high = points.min(axis=0), points.max(axis=0)
    return (points - low) / np.where(high > low, high - low, 1)


def tile(tiles: list[np.ndarray], columns: int | None = None, *, background: int = 40) -> np.ndarray:
    """Lay equal-sized H×W×3 uint8 tiles out in a grid with one-pixel gaps."""
    count = len(tiles)
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    height, width = tiles[0].shape[:2]
    canvas = np.full((rows * (height + TILE_GAP) + TILE_GAP, columns * (width + TILE_GAP) + TILE_GAP, 3), background, np.uint8)
    for index, picture in enumerate(tiles):
        row, column = divmod(index, columns)
        top, left = TILE_GAP + row * (height + TILE_GAP), TILE_GAP + column * (width + TILE_GAP)
        canvas[top : top + height, left : left + width] = picture
    return canvas


def enlarge(picture: np.ndarray, minimum: int = MIN_TILE) -> np.ndarray:
    factor = max(1, math.ceil(minimum / max(1, min(picture.shape[:2]))))
    return picture.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else picture


def grey(unit: np.ndarray) -> np.ndarray:
    level = (unit * 255).round().astype(np.uint8)
    return np.repeat(level[..., None], 3, axis=2)


def filter_grid(weights: np.ndarray, *, max_filters: int = 256, max_inputs: int = 32) -> np.ndarray:
    """Conv weights [out, in, kh, kw] drawn as the seed's filter figures.

    Three input channels (a first layer) become one colour tile per filter; deeper layers get
    one grey tile per (filter, input channel), a row per filter; one input channel each (a
    depthwise layer) makes a square grid of grey tiles. Weights are signed, so grey 0.5 is zero
    and each filter is scaled by its own largest magnitude.
    """
    weights = np.asarray(weights, np.float32)[:max_filters]
    if weights.shape[1] == 3:
        tiles = [enlarge((to_unit(w, symmetric=True).transpose(1, 2, 0) * 255).round().astype(np.uint8), 48) for w in weights]
        return tile(tiles)
    if weights.shape[1] == 1:
        return tile([enlarge(grey(to_unit(w[0], symmetric=True)), 32) for w in weights])
    inputs = min(weights.shape[1], max_inputs)
    tiles = [enlarge(grey(kernel), 16) for w in weights for kernel in to_unit(w, symmetric=True)[:inputs]]
    return tile(tiles, columns=inputs)


def robust_bounds(values: np.ndarray, *, percentile: float = 99.5) -> tuple[float, float]:
    """(minimum, a high percentile): gradient maps have a few extreme pixels that would otherwise
    leave everything else black."""
    low, high = float(values.min()), float(np.percentile(values, percentile))
    return low, high if high > low else float(values.max())
