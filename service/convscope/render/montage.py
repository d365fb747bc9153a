"""Figures of dataset jobs: receptive-field crops with their values beside the full images with
the box drawn (Girshick et al. 2014, fig. 4), and CNN-code embeddings as image grids and
thumbnail scatters (van der Maaten & Hinton 2008; Karpathy's t-SNE grids)."""

from __future__ import annotations

import functools
import math
import struct
import zlib
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from convscope.render.images import TILE_GAP, tile, to_unit_square

BACKGROUND = 40
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BOX_COLOUR = (255, 64, 32)
LABEL_HEIGHT = 14
FONT_SIZE = 11


@functools.lru_cache(maxsize=4)
def font(size: int = FONT_SIZE) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def encode_png_fast(pixels: np.ndarray) -> bytes:
    """H×W×3 uint8 → PNG with one fixed filter (Sub) and zlib's fastest level.

    Figures are drawn by the thousand (one per channel of a layer); Pillow's encoder, even at
    compress_level=1, took 2–2.3× longer for files 5–7 % smaller: 7 s more for the 1,280
    figures of a top-activations job (benchmarks/png.py).
    """
    height, width, channels = pixels.shape
    rows = np.ascontiguousarray(pixels, np.uint8).reshape(height, width * channels)
    raw = np.empty((height, width * channels + 1), np.uint8)
    raw[:, 0] = 1  # filter type Sub: each byte minus the byte one pixel to the left
    raw[:, 1 : channels + 1] = rows[:, :channels]
    np.subtract(rows[:, channels:], rows[:, :-channels], out=raw[:, channels + 1 :])
    header = struct.pack(">IIBBBBB", width, height, 8, 2 if channels == 3 else 0, 0, 0, 0)
    return b"".join(
        (PNG_SIGNATURE, _chunk(b"IHDR", header), _chunk(b"IDAT", zlib.compress(raw.tobytes(), 1)), _chunk(b"IEND", b""))
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def fit(picture: np.ndarray, size: int) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Scale an H×W×3 picture so its longer side is ``size`` and centre it on a square tile.

    Returns the tile, the scale, and the (top, left) of the picture inside the tile, so boxes
    can be drawn in tile coordinates. Enlarging uses nearest neighbours (small inputs such as
    8×8 digits stay crisp); shrinking is bilinear.
    """
    height, width = picture.shape[:2]
    scale = size / max(height, width, 1)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BILINEAR
    resized = np.asarray(Image.fromarray(picture).resize((new_w, new_h), resample))
    canvas = np.full((size, size, 3), BACKGROUND, np.uint8)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = resized
    return canvas, scale, (top, left)


def crop(picture: np.ndarray, box: tuple[int, int, int, int] | None, size: int) -> np.ndarray:
    """The box's pixels (the whole picture without a box), fitted to a ``size`` tile."""
    if box is not None:
        y0, x0, y1, x1 = box
        picture = picture[y0:y1, x0:x1]
    return fit(picture, size)[0]


def outlined(tile_pixels: np.ndarray, box: tuple[int, int, int, int] | None) -> np.ndarray:
    """A tile with ``box`` (in the tile's pixels) outlined."""
    if box is None:
        return tile_pixels
    y0, x0, y1, x1 = box
    image = Image.fromarray(tile_pixels)
    ImageDraw.Draw(image).rectangle((x0, y0, x1 - 1, y1 - 1), outline=BOX_COLOUR, width=max(1, tile_pixels.shape[0] // 48))
    return np.asarray(image)


def text_strip(width: int, text: str) -> np.ndarray:
    """Light text on a dark strip ``width`` pixels wide."""
    strip = Image.new("RGB", (width, LABEL_HEIGHT), (BACKGROUND,) * 3)
    ImageDraw.Draw(strip).text((2, 1), text, fill=(235, 235, 235), font=font())
    return np.asarray(strip)


def labelled(picture: np.ndarray, text: str) -> np.ndarray:
    """A tile with a strip of text under it."""
    return np.concatenate([picture, text_strip(picture.shape[1], text)], axis=0)


def hits_figure(
    pictures: Sequence[np.ndarray],
    boxes: Sequence[tuple[int, int, int, int] | None],
    values: Sequence[float],
    crops: Sequence[np.ndarray],
) -> np.ndarray:
    """Left: the receptive-field ``crops`` with their values; right: the whole images with their
    boxes. Every picture and crop is a tile of one size, boxes are in the tiles' pixels: the
    caller fits each image once, however many figures show it."""
    count = len(values)
    columns = math.ceil(math.sqrt(count))
    left = tile([labelled(t, f"{v:.4g}") for t, v in zip(crops, values)], columns, background=BACKGROUND)
    right = tile([labelled(outlined(p, b), "") for p, b in zip(pictures, boxes)], columns, background=BACKGROUND)
    height = max(left.shape[0], right.shape[0])
    gap = np.full((height, 4 * TILE_GAP + 6, 3), 0, np.uint8)
    return np.concatenate([_pad_to(left, height), gap, _pad_to(right, height)], axis=1)


def _pad_to(picture: np.ndarray, height: int) -> np.ndarray:
    if picture.shape[0] == height:
        return picture
    extra = np.full((height - picture.shape[0], picture.shape[1], 3), BACKGROUND, np.uint8)
    return np.concatenate([picture, extra], axis=0)


GRID_GAP = 3  # between t-SNE grid cells: touching photos read as stripes, not as images


def grid(thumbnails: Sequence[np.ndarray], cells: Sequence[int], side: int, *, gap: int = GRID_GAP) -> np.ndarray:
    """Thumbnails (equal squares) placed at grid ``cells`` (row-major indices into side×side),
    ``gap`` pixels apart; empty cells stay background."""
    size = thumbnails[0].shape[0]
    pitch = size + gap
    canvas = np.full((side * pitch + gap, side * pitch + gap, 3), BACKGROUND, np.uint8)
    for thumbnail, cell in zip(thumbnails, cells):
        row, column = divmod(int(cell), side)
        top, left = gap + row * pitch, gap + column * pitch
        canvas[top : top + size, left : left + size] = thumbnail
    return canvas


def scatter(thumbnails: Sequence[np.ndarray], coords: np.ndarray, *, canvas_size: int) -> np.ndarray:
    """Thumbnails drawn at 2-D coordinates scaled to the canvas (later ones on top)."""
    size = thumbnails[0].shape[0]
    canvas = np.full((canvas_size, canvas_size, 3), BACKGROUND, np.uint8)
    span = canvas_size - size
    for thumbnail, (x, y) in zip(thumbnails, to_unit_square(coords)):
        left, top = int(round(x * span)), int(round((1 - y) * span))
        canvas[top : top + size, left : left + size] = thumbnail
    return canvas
