"""The figures of dataset jobs, drawn from the pictures their results carry: per ranked unit,
its top-activating patches beside the images they come from (Girshick et al. 2014, fig. 4);
for an embedding, the images snapped to a square grid and scattered at their coordinates
(Karpathy's "t-SNE visualization of CNN codes")."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Generator, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from convscope.methods.embedding import THUMBNAIL, EmbeddingResult
from convscope.methods.top_activations import Hit, KeptPicture, TopActivationsResult
from convscope.render.images import to_unit_square
from convscope.render.montage import crop, encode_png_fast, fit, grid, hits_figure, scatter
from convscope.runtime.context import available_cores

TILE = 96  # pixels per crop / thumbnail in a top-activations figure
FIGURE_THREADS = max(1, min(8, available_cores()))

Event = TypeVar("Event")
Thumbnails = dict[int, tuple[np.ndarray, float, tuple[int, int]]]


def with_dataset_figures(events: Generator[Event, None, None]) -> Iterator[Event]:
    """The events of a dataset job, its result with the figures its pictures allow.  Closing
    this closes the job at once (its decoding threads stop), as closing the job itself would."""
    with contextlib.closing(events):
        for event in events:
            if isinstance(event, TopActivationsResult):
                yield with_top_activation_figures(event)  # type: ignore[misc]
            elif isinstance(event, EmbeddingResult):
                yield with_embedding_figures(event)  # type: ignore[misc]
            else:
                yield event


def with_top_activation_figures(result: TopActivationsResult) -> TopActivationsResult:
    """One figure per ranked row, drawn on every core (Pillow releases the GIL while resizing
    and compressing); thumbnails are made once per image and shared by the rows."""
    if not result.pictures:
        return result
    thumbnails = {index: fit(kept.pixels, TILE) for index, kept in result.pictures.items()}
    with ThreadPoolExecutor(max_workers=FIGURE_THREADS, thread_name_prefix="convscope-figures") as pool:
        pngs = list(pool.map(lambda row: _hits_png(row.hits, result.pictures, thumbnails), result.rows))
    rows = tuple(dataclasses.replace(row, png=png) for row, png in zip(result.rows, pngs))
    return dataclasses.replace(result, rows=rows)


def _hits_png(hits: Iterable[Hit], pictures: Mapping[int, KeptPicture], thumbnails: Thumbnails) -> bytes:
    drawable = [hit for hit in hits if hit.index in thumbnails]
    if not drawable:
        return b""
    tiles, boxes, crops = [], [], []
    for hit in drawable:
        kept = pictures[hit.index]
        thumbnail, scale, (top, left) = thumbnails[hit.index]
        tiles.append(thumbnail)
        if hit.box is None:
            boxes.append(None)
            crops.append(thumbnail)
            continue
        y0, x0, y1, x1 = (round(v * kept.scale) for v in hit.box)
        crops.append(crop(kept.pixels, (y0, x0, max(y1, y0 + 1), max(x1, x0 + 1)), TILE))
        boxes.append((round(top + y0 * scale), round(left + x0 * scale), round(top + y1 * scale), round(left + x1 * scale)))
    return encode_png_fast(hits_figure(tiles, boxes, [hit.value for hit in drawable], crops))


def with_embedding_figures(result: EmbeddingResult) -> EmbeddingResult:
    """The grid (``png``) and the scatter (``scatter_png``) of the thumbnails the result carries."""
    if not result.thumbnails:
        return result
    tiles = [fit(picture, THUMBNAIL)[0] for picture in result.thumbnails]
    points = result.coords[result.thumbnail_rows]
    side = math.ceil(math.sqrt(len(tiles)))
    canvas = int(np.clip(math.sqrt(len(tiles)) * THUMBNAIL * 1.6, 400, 2400))
    return dataclasses.replace(
        result,
        png=encode_png_fast(grid(tiles, snap_to_grid(points, side), side)),
        scatter_png=encode_png_fast(scatter(tiles, points, canvas_size=canvas)),
    )


def snap_to_grid(coords: np.ndarray, side: int) -> np.ndarray:
    """Grid cell (row-major index into side × side) of each point: the assignment with least total
    squared distance between the points (scaled to the unit square) and the cell centres
    (``scipy.optimize.linear_sum_assignment``), which keeps neighbours together."""
    unit = to_unit_square(coords)
    ticks = (np.arange(side) + 0.5) / side
    rows, columns = np.meshgrid(ticks, ticks, indexing="ij")
    # Cell (r, c) is drawn at row r (top to bottom) and column c: x → column, y → row, y up.
    centres = np.stack([columns.ravel(), 1 - rows.ravel()], axis=1)
    cost = cdist(unit, centres, "sqeuclidean")
    points, cells = linear_sum_assignment(cost)
    placed = np.empty(len(coords), np.int64)
    placed[points] = cells
    return placed
