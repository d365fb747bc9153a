"""Figures of gradient maps and occlusion: each map drawn as its paper draws it, then the same map
over the image, with a colour bar (and its values) beside every heat map.

- saliency: max |gradient| over channels in grey (Simonyan, Vedaldi & Zisserman 2013);
- guided backprop, deconvnet, guided Grad-CAM: the input-shaped gradient as an RGB image, grey
  where it is zero (Springenberg et al. 2014; Zeiler & Fergus 2014);
- gradient, input × gradient, integrated gradients, SmoothGrad: |map| summed over channels in
  grey, clipped at the 99th percentile (Sundararajan et al. 2017; Smilkov et al. 2017);
- Grad-CAM and occlusion: heat maps over the image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from convscope.render.images import INFERNO, enlarge, grey, robust_bounds, tile, to_unit
from convscope.render.montage import font, labelled, text_strip

BACKGROUND = 255
TEXT = (20, 20, 20)
FONT_SIZE = 12
TITLE_HEIGHT = 18
BAR_WIDTH = 12
LABEL_WIDTH = 52
GAP = 8
GREYS = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
OVERLAY_OPACITY = 0.85


def _text(size: tuple[int, int], lines: list[tuple[int, str]]) -> np.ndarray:
    """A white strip of ``size`` (width, height) with each (top, text) written at the left."""
    strip = Image.new("RGB", size, (BACKGROUND,) * 3)
    draw = ImageDraw.Draw(strip)
    for top, text in lines:
        draw.text((2, top), text, fill=TEXT, font=font(FONT_SIZE))
    return np.asarray(strip)


def _value(number: float) -> str:
    return f"{number:.3g}"


def colour_bar(height: int, colours: np.ndarray, low: float, high: float, *, clipped: bool = False) -> np.ndarray:
    """A vertical bar, ``high`` at the top, with the values at its ends and middle."""
    ramp = colours[np.linspace(255, 0, height).round().astype(np.int64)]
    bar = np.repeat(ramp[:, None], BAR_WIDTH, axis=1)
    bar[[0, -1]] = bar[:, [0, -1]] = TEXT  # a frame, so a white end still shows
    top = f">{_value(high)}" if clipped else _value(high)
    last = max(0, height - FONT_SIZE - 2)
    labels = _text((LABEL_WIDTH, height), [(0, top), (last // 2, _value((low + high) / 2)), (last, _value(low))])
    return np.concatenate([bar, np.full((height, 3, 3), BACKGROUND, np.uint8), labels], axis=1)


def _unit(values: np.ndarray, percentile: float) -> tuple[np.ndarray, float, float]:
    """(values scaled to [0, 1] between their minimum and ``percentile``, low, high)."""
    low, high = robust_bounds(values, percentile=percentile)
    return (np.clip((values - low) / (high - low), 0, 1) if high > low else np.zeros_like(values)), low, high


def _resized(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if values.shape == shape[:2]:
        return values
    return np.asarray(
        Image.fromarray(values.astype(np.float32), mode="F").resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
    )


def over_image(picture: np.ndarray, values: np.ndarray, *, percentile: float = 100.0) -> np.ndarray:
    """The map in inferno over the image: strong values cover it, weak ones let it show through."""
    unit, _, _ = _unit(_resized(np.nan_to_num(np.asarray(values, np.float32)), picture.shape), percentile)
    colours = INFERNO[(unit * 255).round().astype(np.uint8)].astype(np.float32)
    alpha = (OVERLAY_OPACITY * unit)[..., None]
    return ((1 - alpha) * picture.astype(np.float32) + alpha * colours).round().clip(0, 255).astype(np.uint8)


def heat_panel(values: np.ndarray, *, colours: np.ndarray = INFERNO, percentile: float = 100.0) -> np.ndarray:
    """A scalar map in ``colours`` with its colour bar."""
    values = np.nan_to_num(np.asarray(values, np.float32))
    unit, low, high = _unit(values, percentile)
    image, clipped = colours[(unit * 255).round().astype(np.uint8)], bool(values.max() > high)
    gap = np.full((image.shape[0], 4, 3), BACKGROUND, np.uint8)
    return np.concatenate([image, gap, colour_bar(image.shape[0], colours, low, high, clipped=clipped)], axis=1)


def rgb_gradient(gradient: np.ndarray, *, percentile: float = 99.5) -> np.ndarray:
    """H×W×3 signed gradient → an RGB image: zero is mid-grey, ± the ``percentile`` of |gradient|
    are the ends (the normalization behind the guided-backprop and deconvnet figures)."""
    gradient = np.nan_to_num(np.asarray(gradient, np.float32))
    bound = float(np.percentile(np.abs(gradient), percentile)) or float(np.abs(gradient).max()) or 1.0
    return ((0.5 + 0.5 * np.clip(gradient / bound, -1, 1)) * 255).round().astype(np.uint8)


def titled(panel: np.ndarray, title: str) -> np.ndarray:
    return np.concatenate([_text((panel.shape[1], TITLE_HEIGHT), [(2, title)]), panel], axis=0)


def _joined(parts: list[np.ndarray], axis: int) -> np.ndarray:
    """Pictures along ``axis`` (1: left to right, 0: top to bottom), ``GAP`` apart, aligned at
    the top left, on white."""
    across = max(part.shape[1 - axis] for part in parts)
    pieces = []
    for index, part in enumerate(parts):
        if index:
            pieces.append(np.full((GAP, across, 3) if axis == 0 else (across, GAP, 3), BACKGROUND, np.uint8))
        padded = np.full((part.shape[0], across, 3) if axis == 0 else (across, part.shape[1], 3), BACKGROUND, np.uint8)
        padded[: part.shape[0], : part.shape[1]] = part
        pieces.append(padded)
    return np.concatenate(pieces, axis=axis)


def side_by_side(panels: list[np.ndarray]) -> np.ndarray:
    return _joined(panels, axis=1)


def stacked(rows: list[np.ndarray]) -> np.ndarray:
    return _joined(rows, axis=0)


RGB_METHODS = {"guided_backprop": "guided backprop", "deconvnet": "deconvnet", "guided_grad_cam": "guided Grad-CAM"}
MAGNITUDE_METHODS = {
    "saliency": "saliency: max |gradient| over channels",
    "gradient": "|gradient| summed over channels",
    "input_x_gradient": "|input × gradient| summed over channels",
    "integrated_gradients": "|integrated gradients| summed over channels",
    "smoothgrad": "|SmoothGrad| summed over channels",
}
# Gradient magnitudes have a few extreme pixels; the papers clip them to show the rest.
MAGNITUDE_PERCENTILE = 99.0
MIN_PANEL = 320  # small inputs are enlarged (nearest: no invented detail) so titles and maps read


def attribution_figure(
    method: str, values: np.ndarray, picture: np.ndarray | None, *, projected: np.ndarray | None = None
) -> np.ndarray:
    """One sample's map as ``method``'s paper draws it, then over ``picture`` (when there is one).

    ``values``: H×W for saliency and Grad-CAM, else H×W×C (channels last, in RGB order).
    ``projected``: the map already placed on ``picture`` (the whole photo as sent, where the
    model saw a resized crop); drawn over it instead of ``values``' own magnitude.
    """
    values = enlarge(np.asarray(values, np.float32), MIN_PANEL)
    percentile = MAGNITUDE_PERCENTILE
    if method == "grad_cam":  # scaled to [0, 1] already
        scalar, percentile = values, 100.0
        first = titled(heat_panel(values), "Grad-CAM")
    elif method in RGB_METHODS:
        scalar = np.abs(values).max(axis=-1)
        first = titled(rgb_gradient(values), f"{RGB_METHODS[method]} (grey = 0)")
    else:
        scalar = values if values.ndim == 2 else np.abs(values).sum(axis=-1)
        first = titled(heat_panel(scalar, colours=GREYS, percentile=percentile), MAGNITUDE_METHODS.get(method, method))
    if picture is None:
        return first
    shown = scalar if projected is None else projected
    return side_by_side([first, titled(over_image(enlarge(picture, MIN_PANEL), shown, percentile=percentile), "over the image")])


def occlusion_figure(maps: np.ndarray, picture: np.ndarray | None, titles: list[str]) -> np.ndarray:
    """Per target, the score's drop under the box at each pixel, with its colour bar and over the image."""
    rows = []
    for values, title in zip(maps, titles):
        values = enlarge(values, MIN_PANEL)
        panels = [titled(heat_panel(values), title)]
        if picture is not None:
            panels.append(titled(over_image(enlarge(picture, MIN_PANEL), np.maximum(values, 0)), "over the image (drops only)"))
        rows.append(side_by_side(panels))
    return stacked(rows)


def channel_grid(maps: np.ndarray, channels: Sequence[int], *, caption: str) -> np.ndarray:
    """One sample's ``channels`` of C×H×W activations as grey tiles, each scaled on its own and
    labelled with its index, under a ``caption`` that says which channels these are.

    Per-channel scaling shows each map's pattern (the seed's activation figures); dead
    channels come out black.
    """
    maps = np.asarray(maps)
    if maps.ndim == 1:
        maps = maps[:, None, None]
    elif maps.ndim == 2:
        maps = maps[None]
    elif maps.ndim > 3:
        maps = maps.reshape(maps.shape[0], maps.shape[-2], maps.shape[-1])
    grid = tile([labelled(enlarge(grey(to_unit(maps[c]))), str(c)) for c in channels])
    return np.concatenate([text_strip(grid.shape[1], caption), grid], axis=0)
