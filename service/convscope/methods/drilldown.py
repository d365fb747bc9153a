"""Adaptive drill-down for approximate occlusion maps (Nakandala et al., "Incremental and
approximate inference for faster occlusion-based deep CNN explanations", SIGMOD 2019, §4.2).

Where the box covers background, moving it by one stride changes the score little.  Drill-down
evaluates the box exactly on a coarse grid (every other row and column of the requested grid,
plus the last ones), splits the grid into *cells* between neighbouring coarse positions, and
evaluates every position of a cell exactly where the cell may hide more than ``tolerance``; the
other positions are interpolated bilinearly from their cell's corners.

An interpolated value lies within its corners' range, so its error is at most the cell's
*spread* (max − min of its corners) plus how far the true score leaves that range between the
corners: the *overshoot*.  The overshoot of an interpolated cell is unknown; the one of every
evaluated cell is known, and the largest of those stands in for it.  A cell is refined while

* its spread plus that overshoot reaches ``tolerance`` (for some target; repeated until no
  cell does, since refining can reveal a larger overshoot), or
* a corner is one of the ``DRILL_TOP`` coarse positions with the lowest score of a target (the
  paper's drill-down into the regions of largest effect: the top positions come out exact).

The error bound reported is the largest spread of an interpolated cell plus the overshoot,
below ``tolerance``.  It rests on one assumption — no interpolated cell overshoots more than
every evaluated one, which an isolated feature smaller than the stride could break — and the
tests and ``benchmarks/occlusion.py`` measure the real error against the exact map.  At
tolerance 0 every cell is refined: the map is the exact one.

Pure numpy on score grids; the caller evaluates the positions (methods/occlusion.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

# Cells around this many lowest-scoring coarse positions per target are always refined.
DRILL_TOP = 5


def coarse_axis(count: int) -> np.ndarray:
    """Every other index of an axis of ``count`` positions, and the last one."""
    return np.unique(np.r_[np.arange(0, count, 2), count - 1]).astype(np.int64)


def coarse_positions(grid: tuple[int, int]) -> np.ndarray:
    """Flat indices of the coarse grid, in order."""
    rows, cols = coarse_axis(grid[0]), coarse_axis(grid[1])
    return (rows[:, None] * grid[1] + cols[None, :]).ravel()


def _spans(count: int) -> list[tuple[int, int]]:
    """Cells along an axis: consecutive coarse indices (one degenerate span for a single one)."""
    coarse = coarse_axis(count).tolist()
    return list(zip(coarse[:-1], coarse[1:])) or [(0, 0)]


@dataclass(frozen=True)
class Cell:
    top: int
    bottom: int  # inclusive: the cell's corners are rows top and bottom, columns left and right
    left: int
    right: int

    def corners(self, scores: np.ndarray) -> np.ndarray:
        """[4, targets]: the corner scores of ``scores`` [rows, cols, targets]."""
        return scores[[self.top, self.top, self.bottom, self.bottom], [self.left, self.right, self.left, self.right]]

    def spread(self, scores: np.ndarray) -> float:
        corners = self.corners(scores)
        return float(np.ptp(corners, axis=0).max())

    def positions(self, width: int) -> np.ndarray:
        rows = np.arange(self.top, self.bottom + 1)
        cols = np.arange(self.left, self.right + 1)
        return (rows[:, None] * width + cols[None, :]).ravel()


def cells(grid: tuple[int, int]) -> Iterator[Cell]:
    for top, bottom in _spans(grid[0]):
        for left, right in _spans(grid[1]):
            yield Cell(top, bottom, left, right)


def _block(cell: Cell, scores: np.ndarray) -> np.ndarray:
    return scores[cell.top : cell.bottom + 1, cell.left : cell.right + 1]


def _is_open(cell: Cell, scores: np.ndarray) -> bool:
    """Whether some position of the cell is not evaluated yet (NaN)."""
    return bool(np.isnan(_block(cell, scores)[:, :, 0]).any())


def overshoot(scores: np.ndarray) -> float:
    """The farthest an evaluated cell's scores leave the range of its corners (0 if none did)."""
    farthest = 0.0
    for cell in cells(scores.shape[:2]):
        if not _is_open(cell, scores):
            corners, block = cell.corners(scores), _block(cell, scores)
            farthest = max(farthest, float(np.maximum(block - corners.max(axis=0), corners.min(axis=0) - block).max()))
    return farthest


def _lowest_coarse(scores: np.ndarray) -> set[tuple[int, int]]:
    rows, cols = coarse_axis(scores.shape[0]), coarse_axis(scores.shape[1])
    coarse = scores[rows][:, cols]
    lowest: set[tuple[int, int]] = set()
    for target in range(scores.shape[2]):
        for index in np.argsort(coarse[:, :, target].ravel(), kind="stable")[:DRILL_TOP]:
            lowest.add((int(rows[index // len(cols)]), int(cols[index % len(cols)])))
    return lowest


def to_refine(scores: np.ndarray, tolerance: float) -> np.ndarray:
    """Flat positions to evaluate next, given the scores so far (``scores`` [rows, cols,
    targets], NaN where not evaluated, the coarse grid evaluated): every position of each open
    cell that may hide ``tolerance`` or more, or touches a lowest-scoring coarse position.
    Empty when the map may be interpolated as it is."""
    height, width = scores.shape[:2]
    lowest = _lowest_coarse(scores)
    margin = overshoot(scores)
    chosen = [
        cell.positions(width)
        for cell in cells((height, width))
        if _is_open(cell, scores)
        and (
            cell.spread(scores) + margin >= tolerance
            or any((y, x) in lowest for y in (cell.top, cell.bottom) for x in (cell.left, cell.right))
        )
    ]
    if not chosen:
        return np.zeros(0, np.int64)
    wanted = np.unique(np.concatenate(chosen))
    return wanted[np.isnan(scores.reshape(height * width, -1)[wanted, 0])]


def interpolate(scores: np.ndarray) -> float:
    """Fill the NaN positions of ``scores`` [rows, cols, targets] in place, bilinearly from their
    cell's corners; return the error bound (0 when nothing was interpolated)."""
    margin = overshoot(scores)
    bound = 0.0
    for cell in cells(scores.shape[:2]):
        if not _is_open(cell, scores):
            continue
        block = _block(cell, scores)
        missing = np.isnan(block[:, :, 0])
        corners = cell.corners(scores)
        ty = np.linspace(0.0, 1.0, block.shape[0])[:, None, None]
        tx = np.linspace(0.0, 1.0, block.shape[1])[None, :, None]
        above = corners[0] * (1 - tx) + corners[1] * tx
        below = corners[2] * (1 - tx) + corners[3] * tx
        block[missing] = (above * (1 - ty) + below * ty)[missing]
        bound = max(bound, cell.spread(scores) + margin)
    if not math.isfinite(bound):
        raise ValueError("interpolating from a position that was not evaluated")
    return bound
