"""Top activations: the dataset images that most excite a unit, with receptive-field boxes.

Girshick et al., "Rich feature hierarchies for accurate object detection and semantic
segmentation" (CVPR 2014), fig. 4: the top regions of pool5 units, each drawn as the unit's
receptive field in the image. The score of a channel on an image is its maximum over space; the
hit records where the maximum is and the input-pixel box of that unit.

Szegedy et al., "Intriguing properties of neural networks" (2013) found that the images that
maximize a random direction in activation space look as coherent as those of a single unit:
``directions`` ranks by the projection of the channel vector at each position onto unit-length
directions instead, so users can check that for their model.

Memory is bounded by the heaps: per ranked row, the k best (value, image, position), and — for
the figures — one picture of each image still in some heap, downscaled so that all of them
together stay within ``PICTURE_BUDGET_BYTES``; crops are cut when the figures are drawn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image

from convscope.data.streams import Ref, Sample
from convscope.errors import InvalidArgument
from convscope.graph.receptive_field import FieldMap
from convscope.methods.activations import channel_view
from convscope.model.types import ModelRecord
from convscope.render.montage import crop, encode_png_fast, fit, hits_figure
from convscope.runtime.context import available_cores

MAX_K = 100
TILE = 96  # pixels per crop / thumbnail in the figure
# Pictures kept for the figures: every heap slot may hold a different image, so each is stored
# with its longer side at most sqrt(budget / (3 · slots)) (full size for a few channels).
PICTURE_BUDGET_BYTES = 256 << 20
MIN_PICTURE_SIDE = 48
FIGURE_THREADS = max(1, min(8, available_cores()))
_EMPTY = np.iinfo(np.int64).max  # index of an unfilled heap slot: loses every tie


@dataclass(frozen=True)
class Hit:
    image: Ref  # index in the stream, path, or the name the client gave the item
    index: int  # position in the stream
    value: float
    location: tuple[int, int]  # (y, x) in the feature map
    box: tuple[int, int, int, int] | None  # (y0, x0, y1, x1) input pixels, half-open; None if unknown


@dataclass(frozen=True)
class ChannelHits:
    channel: int  # the channel, or the row of ``directions``
    hits: tuple[Hit, ...]
    png: bytes = b""


@dataclass(frozen=True)
class TopActivationsResult:
    layer: str
    rows: tuple[ChannelHits, ...]
    by_direction: bool


class TopActivations:
    """Accumulates the k best images per channel (or direction) over batches."""

    def __init__(
        self,
        record: ModelRecord,
        layer: str,
        *,
        channels: Sequence[int] = (),
        k: int = 9,
        directions: np.ndarray | None = None,
        field: FieldMap | None = None,
        render: bool = True,
    ) -> None:
        info = record.layer(layer)
        if len(info.shape) < 2:
            raise InvalidArgument(f"layer {layer!r} has shape {list(info.shape)}: no channel axis to rank")
        if not 1 <= k <= MAX_K:
            raise InvalidArgument(f"k must be between 1 and {MAX_K}, got {k}")
        width = info.shape[1]
        self.layer = layer
        self.k = k
        self.render = render
        self.directions: np.ndarray | None = None
        if directions is not None and np.size(directions):
            rows = np.atleast_2d(np.asarray(directions, np.float32))
            if rows.ndim != 2 or rows.shape[1] != width:
                raise InvalidArgument(
                    f"a direction for {layer!r} has {width} entries (one per channel), got shape {list(np.shape(directions))}"
                )
            norms = np.linalg.norm(rows, axis=1, keepdims=True)
            if not np.all(np.isfinite(rows)) or (norms == 0).any():
                raise InvalidArgument("directions must be finite and non-zero")
            self.directions = rows / norms
            self.labels = list(range(len(rows)))
        else:
            chosen = list(dict.fromkeys(int(c) for c in channels)) or list(range(width))
            bad = [c for c in chosen if not 0 <= c < width]
            if bad:
                raise InvalidArgument(f"layer {layer!r} has channels 0..{width - 1}; got {bad[:5]}")
            self.labels = chosen
        first = self.labels[0] if self.labels else 0
        contiguous = self.directions is None and self.labels == list(range(first, first + len(self.labels)))
        self._channel_slice = slice(first, first + len(self.labels)) if contiguous else None
        self.spatial = tuple(info.shape[2:])
        use_field = field is not None and (field.y_axis, field.x_axis) == (2, 3) and len(self.spatial) == 2
        self.field = field if use_field and self.spatial == (field.y.units, field.x.units) else None  # type: ignore[union-attr]
        rows_count = len(self.labels)
        self.values = np.full((rows_count, k), -np.inf, np.float32)
        self.indices = np.full((rows_count, k), _EMPTY, np.int64)
        self.positions = np.zeros((rows_count, k), np.int64)
        self.refs: dict[int, Ref] = {}
        # (picture, scale) of each image in some heap; at most rows·k images, each at most
        # side² pixels, so the worst case stays within the budget.
        self._pictures: dict[int, tuple[np.ndarray, float]] = {}
        self._picture_side = max(MIN_PICTURE_SIDE, int(math.sqrt(PICTURE_BUDGET_BYTES / (3 * rows_count * k))))

    @property
    def tensors(self) -> list[str]:
        return [self.layer]

    @property
    def needs_pictures(self) -> bool:
        return self.render

    def scores(self, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per sample and ranked row: the maximum over space and its flat position (NaN ranks last)."""
        view = channel_view(value)
        if self.directions is not None:
            view = np.einsum("bcp,dc->bdp", view.astype(np.float32, copy=False), self.directions)
        elif self._channel_slice is not None:
            view = view[:, self._channel_slice]  # a view: no copy of the whole map
        else:
            view = view[:, self.labels]
        positions = view.argmax(axis=2)
        maxima = np.take_along_axis(view, positions[..., None], axis=2)[..., 0].astype(np.float32)
        if np.isnan(maxima).any():  # argmax stops at a NaN: rank those maps without their NaNs
            view = np.where(np.isnan(view), -np.inf, view)
            positions = view.argmax(axis=2)
            maxima = np.take_along_axis(view, positions[..., None], axis=2)[..., 0].astype(np.float32)
        return maxima, positions

    def add(self, samples: Sequence[Sample], values: dict[str, np.ndarray]) -> None:
        self.add_reduced(samples, self.reduce(values))

    def reduce(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """What ``add`` keeps of a batch's tensors (computed where the batch ran, for Ray)."""
        value = values[self.layer]
        scores, positions = self.scores(value)
        return {"scores": scores, "positions": positions, "spatial": np.array(value.shape[2:], np.int64)}

    def add_reduced(self, samples: Sequence[Sample], reduced: dict[str, np.ndarray]) -> None:
        if tuple(reduced["spatial"].tolist()) != self.spatial:
            self.field = None  # another input size than the layer table's: boxes would be wrong
        scores, positions = reduced["scores"], reduced["positions"]
        batch_indices = np.array([s.index for s in samples], np.int64)
        rows = len(self.labels)
        values_all = np.concatenate([self.values, scores.T], axis=1)
        indices_all = np.concatenate([self.indices, np.broadcast_to(batch_indices, (rows, len(samples)))], axis=1)
        positions_all = np.concatenate([self.positions, positions.T], axis=1)
        order = np.lexsort((indices_all, -values_all), axis=-1)[:, : self.k]
        self.values = np.take_along_axis(values_all, order, axis=1)
        self.indices = np.take_along_axis(indices_all, order, axis=1)
        self.positions = np.take_along_axis(positions_all, order, axis=1)
        for sample in samples:
            self.refs[sample.index] = sample.ref
        alive = set(self.indices[self.indices != _EMPTY].tolist())
        if self.render:
            self._keep_pictures({s.index: s for s in samples}, alive)
        self.refs = {index: ref for index, ref in self.refs.items() if index in alive}

    def _keep_pictures(self, batch: dict[int, Sample], alive: set[int]) -> None:
        """Keep the picture of every image that just entered a heap (once per image, however many
        heaps), downscaled to the budget; drop the pictures of images that left every heap."""
        for index in alive.intersection(batch):
            picture = batch[index].picture
            if picture is not None and index not in self._pictures:
                self._pictures[index] = _shrink(picture, self._picture_side)
        self._pictures = {index: kept for index, kept in self._pictures.items() if index in alive}

    def location(self, position: int) -> tuple[int, int]:
        """(y, x) of a flat position: the last two spatial axes; (0, x) for 1-D maps, (0, 0) for vectors."""
        if not self.spatial:
            return (0, 0)
        if len(self.spatial) == 1:
            return (0, int(position))
        coordinates = np.unravel_index(position, self.spatial)
        return int(coordinates[-2]), int(coordinates[-1])

    def box(self, position: int) -> tuple[int, int, int, int] | None:
        if self.field is None:
            return None
        y, x = self.location(position)
        return self.field.box(y, x)

    def result(self) -> TopActivationsResult:
        rows = []
        for row in range(len(self.labels)):
            hits = []
            for slot in range(self.k):
                index = int(self.indices[row, slot])
                if index == _EMPTY:
                    break
                position = int(self.positions[row, slot])
                hits.append(
                    Hit(self.refs[index], index, float(self.values[row, slot]), self.location(position), self.box(position))
                )
            rows.append(hits)
        figures = self._figures(rows) if self.render else [b""] * len(rows)
        return TopActivationsResult(
            self.layer,
            tuple(ChannelHits(label, tuple(hits), png) for label, hits, png in zip(self.labels, rows, figures)),
            self.directions is not None,
        )

    def _figures(self, rows: list[list[Hit]]) -> list[bytes]:
        """One figure per row, drawn on every core (Pillow releases the GIL while resizing and
        compressing); thumbnails are made once per image and shared by the rows."""
        thumbnails = {index: fit(picture, TILE) for index, (picture, _) in self._pictures.items()}
        with ThreadPoolExecutor(max_workers=FIGURE_THREADS, thread_name_prefix="convscope-figures") as pool:
            return list(pool.map(lambda hits: self._figure(hits, thumbnails), rows))

    def _figure(self, hits: list[Hit], thumbnails: dict[int, tuple[np.ndarray, float, tuple[int, int]]]) -> bytes:
        drawable = [h for h in hits if h.index in self._pictures]
        if not drawable:
            return b""
        pictures, boxes, crops = [], [], []
        for hit in drawable:
            picture, shrunk = self._pictures[hit.index]
            thumbnail, scale, (top, left) = thumbnails[hit.index]
            pictures.append(thumbnail)
            if hit.box is None:
                boxes.append(None)
                crops.append(thumbnail)
                continue
            y0, x0, y1, x1 = (round(v * shrunk) for v in hit.box)
            crops.append(crop(picture, (y0, x0, max(y1, y0 + 1), max(x1, x0 + 1)), TILE))
            boxes.append((round(top + y0 * scale), round(left + x0 * scale), round(top + y1 * scale), round(left + x1 * scale)))
        figure = hits_figure(pictures, boxes, [h.value for h in drawable], crops)
        return encode_png_fast(figure)


def _shrink(picture: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """The picture with its longer side at most ``side`` (bilinear), and the scale applied."""
    longest = max(picture.shape[:2])
    if longest <= side:
        return picture, 1.0
    scale = side / longest
    size = (max(1, round(picture.shape[1] * scale)), max(1, round(picture.shape[0] * scale)))
    return np.asarray(Image.fromarray(picture).resize(size, Image.Resampling.BILINEAR)), scale
