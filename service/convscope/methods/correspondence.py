"""Spatial correspondence (Long, Zhang & Darrell, *Do convnets learn correspondence?*, 2014).

For points of image A, the best match in image B is the unit of B whose feature vector at
``layers`` is the cosine nearest neighbour of the feature vector under the point in A; with
several layers (hypercolumns), each layer's vectors are unit-normalized, sampled on the finest
layer's grid and concatenated.  Points and matches are (y, x) pixels of the images as sent —
the model's resize and crop undone — and units sit at their receptive-field centres (the layer
table's stride and offset; an even grid where the field is unknown).

Convnet channels are not mirror-invariant (a left edge becomes a right edge), so a mirrored copy's
features under the mirrored point differ.  With ``reflections``, B mirrored left-right runs in the
same batch; each point takes the better of its best match in B and in mirror(B), the latter
mapped back to B's pixels by mirroring x, and records which one won.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from convscope.errors import InvalidArgument
from convscope.methods.optimize import float_layer
from convscope.model.preprocessing import ModelInput
from convscope.model.types import ModelRecord
from convscope.runtime.context import MethodContext

GRID_POINTS = 12  # default points per side of image A
MAX_POINTS = 100_000


@dataclass(frozen=True)
class Geometry:
    """How an image as sent became the picture the model saw: scale per axis, then a crop."""

    scale: tuple[float, float]  # (y, x) picture pixels per original pixel
    crop: tuple[int, int]  # (top, left) of the picture in the resized image
    picture: tuple[int, int]  # (H, W) the model sees
    original: tuple[int, int]  # (H, W) as sent

    @classmethod
    def of(cls, data: bytes | None, record: ModelRecord, picture: tuple[int, int]) -> Geometry:
        if data is None:  # an array: its own pixels
            return cls((1.0, 1.0), (0, 0), picture, picture)
        width, height = Image.open(io.BytesIO(data)).size
        spec = record.preprocessing
        rows, cols = picture
        if spec.resize:
            factor = spec.resize / min(width, height)
            resized = (max(rows, round(height * factor)), max(cols, round(width * factor)))
            crop = ((resized[0] - rows) // 2, (resized[1] - cols) // 2)
        else:
            resized, crop = (rows, cols), (0, 0)
        return cls((resized[0] / height, resized[1] / width), crop, picture, (height, width))

    def to_picture(self, points: np.ndarray) -> np.ndarray:
        """Pixel centres as sent → the picture's (pixel centres map to pixel centres)."""
        return (points + 0.5) * np.asarray(self.scale) - 0.5 - np.asarray(self.crop)

    def to_original(self, points: np.ndarray) -> np.ndarray:
        return (points + np.asarray(self.crop) + 0.5) / np.asarray(self.scale) - 0.5


@dataclass(frozen=True)
class CorrespondenceResult:
    points: np.ndarray  # [N, 2] (y, x) in image A as sent
    matches: np.ndarray  # [N, 2] (y, x) in image B as sent
    similarity: np.ndarray  # [N] cosine similarity of the match
    mirrored: np.ndarray  # [N] bool: the match was found in B mirrored left-right
    layers: tuple[str, ...]
    pictures: tuple[np.ndarray, ...]  # what the model saw of A and B (for drawing)
    geometries: tuple[Geometry, Geometry]


def unit_centres(
    record: ModelRecord, layer: str, grid: tuple[int, int], picture: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """(row centres, column centres) of a layer's units in picture pixels."""
    field = record.layer(layer).receptive_field
    if field is None:
        return ((np.arange(grid[0]) + 0.5) * picture[0] / grid[0] - 0.5, (np.arange(grid[1]) + 0.5) * picture[1] / grid[1] - 0.5)
    return (field.offset[0] + field.stride[0] * np.arange(grid[0]), field.offset[1] + field.stride[1] * np.arange(grid[1]))


def features(
    context: MethodContext, record: ModelRecord, batch: np.ndarray, layers: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per sample, unit-normalized (hyper)column vectors on the finest layer's grid [N, h, w, C],
    and that grid's row and column centres in picture pixels."""
    values = context.forward(record, batch, list(layers))
    channels_first = record.preprocessing.layout == "NCHW"
    maps = {name: values[name] if not channels_first else values[name].transpose(0, 2, 3, 1) for name in layers}
    finest = max(layers, key=lambda name: maps[name].shape[1] * maps[name].shape[2])
    picture = (batch.shape[2], batch.shape[3]) if channels_first else (batch.shape[1], batch.shape[2])
    rows, cols = unit_centres(record, finest, maps[finest].shape[1:3], picture)
    columns = []
    for name in layers:
        value = maps[name].astype(np.float32)
        value = value / np.maximum(np.linalg.norm(value, axis=-1, keepdims=True), 1e-12)
        own_rows, own_cols = unit_centres(record, name, value.shape[1:3], picture)
        nearest_rows = np.abs(rows[:, None] - own_rows[None]).argmin(axis=1)
        nearest_cols = np.abs(cols[:, None] - own_cols[None]).argmin(axis=1)
        columns.append(value[:, nearest_rows][:, :, nearest_cols])
    stacked = np.concatenate(columns, axis=-1)
    return stacked / np.maximum(np.linalg.norm(stacked, axis=-1, keepdims=True), 1e-12), rows, cols


def default_points(size: tuple[int, int], count: int = GRID_POINTS) -> np.ndarray:
    """A regular grid over a picture of ``size``, inset by half a cell."""
    ys = (np.arange(count) + 0.5) * size[0] / count - 0.5
    xs = (np.arange(count) + 0.5) * size[1] / count - 0.5
    return np.stack(np.meshgrid(ys, xs, indexing="ij"), axis=-1).reshape(-1, 2)


def correspondence(
    context: MethodContext,
    record: ModelRecord,
    model_input: ModelInput,
    images: Sequence[bytes | None],
    layers: Sequence[str],
    points: np.ndarray | None = None,
    reflections: bool = True,
) -> CorrespondenceResult:
    """``model_input``: A and B as a batch of two; ``images``: their bytes (None for arrays);
    ``reflections``: also search B mirrored left-right."""
    if len(model_input.batch) != 2:
        raise InvalidArgument(f"correspondence takes two images, A and B; got {len(model_input.batch)}")
    if not layers:
        raise InvalidArgument("name at least one layer")
    for name in layers:
        if len(float_layer(record, name)) != 3:
            raise InvalidArgument(f"{name!r} is not a feature map [C, H, W]; name a spatial layer")
    batch = model_input.batch
    picture = (batch.shape[2], batch.shape[3]) if record.preprocessing.layout == "NCHW" else (batch.shape[1], batch.shape[2])
    geometries = (Geometry.of(images[0], record, picture), Geometry.of(images[1], record, picture))
    if points is None:
        points = geometries[0].to_original(default_points(picture))  # over what the model sees
    points = np.asarray(points, np.float64).reshape(-1, 2)
    if not 1 <= len(points) <= MAX_POINTS:
        raise InvalidArgument(f"send between 1 and {MAX_POINTS} points (y, x), got {len(points)}")
    width_axis = 3 if record.preprocessing.layout == "NCHW" else 2
    if reflections:  # one run: A, B and mirror(B)
        batch = np.concatenate([batch, np.flip(batch[1:], axis=width_axis)])
    vectors, rows, cols = features(context, record, batch, layers)
    inside = geometries[0].to_picture(points)
    row_index = np.abs(inside[:, :1] - rows[None]).argmin(axis=1)
    col_index = np.abs(inside[:, 1:] - cols[None]).argmin(axis=1)
    queries = vectors[0][row_index, col_index]  # [N, C]
    copies = len(vectors) - 1
    scores = (queries @ vectors[1:].reshape(-1, vectors.shape[-1]).T).reshape(len(points), copies, -1)
    best = scores.argmax(axis=2)  # [N, copies]
    best_scores = np.take_along_axis(scores, best[:, :, None], axis=2)[:, :, 0]
    mirrored = best_scores[:, -1] > best_scores[:, 0]  # ties stay with B as sent; never without reflections
    chosen = best[np.arange(len(points)), mirrored.astype(int)]
    match_rows, match_cols = np.divmod(chosen, vectors.shape[2])
    match_x = np.where(mirrored, picture[1] - 1 - cols[match_cols], cols[match_cols])
    matches = geometries[1].to_original(np.stack([rows[match_rows], match_x], axis=1))
    return CorrespondenceResult(
        points=points,
        matches=matches,
        similarity=best_scores.max(axis=1),
        mirrored=mirrored,
        layers=tuple(layers),
        pictures=model_input.pictures,
        geometries=geometries,
    )
