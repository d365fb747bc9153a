"""Figures of dataset jobs: the hand-written PNG encoder decodes with Pillow to the same
pixels, and the t-SNE grid puts each image in one cell, cells apart."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from convscope.render.montage import BACKGROUND, GRID_GAP, encode_png_fast, grid


@pytest.mark.parametrize("shape", [(1, 1, 3), (7, 13, 3), (334, 594, 3)])
def test_fast_encoder_output_decodes_with_pillow_to_the_same_pixels(shape: tuple[int, int, int]) -> None:
    pixels = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    with Image.open(io.BytesIO(encode_png_fast(pixels))) as decoded:
        assert decoded.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(decoded), pixels)


def test_grid_places_each_thumbnail_once_with_gaps_between_cells() -> None:
    size, side = 5, 3
    thumbnails = [np.full((size, size, 3), 100 + index, np.uint8) for index in range(4)]
    cells = [8, 0, 4, 2]
    canvas = grid(thumbnails, cells, side)
    pitch = size + GRID_GAP
    assert canvas.shape == (side * pitch + GRID_GAP, side * pitch + GRID_GAP, 3)
    for thumbnail, cell in zip(thumbnails, cells):
        row, column = divmod(cell, side)
        top, left = GRID_GAP + row * pitch, GRID_GAP + column * pitch
        np.testing.assert_array_equal(canvas[top : top + size, left : left + size], thumbnail)
        assert (canvas[top - GRID_GAP : top, left : left + size] == BACKGROUND).all()  # the gap above
    assert sorted(np.unique(canvas[..., 0])) == [BACKGROUND, 100, 101, 102, 103]
