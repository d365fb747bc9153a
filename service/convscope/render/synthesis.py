"""Figures of images made by gradients: side-by-side panels with captions under each."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from convscope.render.images import tile
from convscope.render.montage import BACKGROUND, LABEL_HEIGHT, font

CAPTION_CHARS = 34  # of a label, so five lines fit under a 224-pixel tile


def captioned(picture: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """``picture`` with ``lines`` of text in a strip under it."""
    width = picture.shape[1]
    strip = Image.new("RGB", (width, LABEL_HEIGHT * len(lines) + 2), (BACKGROUND,) * 3)
    draw = ImageDraw.Draw(strip)
    for row, line in enumerate(lines):
        draw.text((2, 1 + row * LABEL_HEIGHT), line, fill=(235, 235, 235), font=font())
    return np.concatenate([picture, np.asarray(strip)], axis=0)


def amplified(original: np.ndarray, changed: np.ndarray) -> np.ndarray:
    """The difference of two uint8 pictures around grey, stretched to the full range."""
    delta = changed.astype(np.float32) - original.astype(np.float32)
    bound = float(np.abs(delta).max()) or 1.0
    return np.clip(127.5 + 127.5 * delta / bound, 0, 255).astype(np.uint8)


def prediction_lines(labels: Sequence[str], probabilities: Sequence[float]) -> list[str]:
    return [f"{p:6.1%} {label[:CAPTION_CHARS]}" for label, p in zip(labels, probabilities)]


def adversarial_panel(
    original: np.ndarray, changed: np.ndarray, before: Sequence[str], after: Sequence[str], linf: float
) -> np.ndarray:
    """original | amplified perturbation | adversarial, top-5 predictions under the pictures."""
    tiles = [
        captioned(original, ["original", *before]),
        captioned(amplified(original, changed), [f"perturbation (max {linf * 255:.1f}/255), amplified", *[""] * len(after)]),
        captioned(changed, ["adversarial", *after]),
    ]
    return tile(tiles, columns=3)


def captioned_row(pictures: Sequence[np.ndarray], captions: Sequence[str]) -> np.ndarray:
    """Pictures in one row (a grid when there are many), each with a one-line caption."""
    tiles = [captioned(picture, [caption]) for picture, caption in zip(pictures, captions)]
    return tile(tiles, columns=min(len(tiles), 6))


def match_lines(
    first: np.ndarray, second: np.ndarray, points: np.ndarray, matches: np.ndarray, similarity: np.ndarray, mirrored: np.ndarray
) -> np.ndarray:
    """Two pictures side by side, a line from each point of the first to its match in the
    second, coloured by similarity: blue to yellow for matches found in the second as it is,
    purple to pink for matches found in its mirror image; a caption says which is which."""
    gap = 8
    canvas = Image.new("RGB", (first.shape[1] + gap + second.shape[1], max(first.shape[0], second.shape[0])), (BACKGROUND,) * 3)
    canvas.paste(Image.fromarray(first), (0, 0))
    canvas.paste(Image.fromarray(second), (first.shape[1] + gap, 0))
    draw = ImageDraw.Draw(canvas)
    low, high = float(similarity.min()), float(similarity.max())
    for (y0, x0), (y1, x1), value, reflected in zip(points, matches, similarity, mirrored):
        t = (value - low) / (high - low) if high > low else 1.0
        if reflected:
            colour = (int(120 + 135 * t), int(30 + 110 * t), int(150 + 80 * t))
        else:
            colour = (int(40 + 215 * t), int(90 + 150 * t), int(255 * (1 - t)))
        end = (x1 + first.shape[1] + gap, y1)
        draw.line([(x0, y0), end], fill=colour, width=1)
        for x, y in ((x0, y0), end):
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], outline=colour)
    caption = f"similarity low-high: blue-yellow in B, purple-pink in B mirrored ({int(np.sum(mirrored))} of {len(mirrored)})"
    return captioned(np.asarray(canvas), [caption])
