"""render/dataset_figures.py: the figures of dataset jobs, drawn from the pictures their results
carry, decoded and checked against what they must show."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from convscope.methods.embedding import THUMBNAIL, EmbeddingResult
from convscope.methods.top_activations import ChannelHits, Hit, KeptPicture, TopActivationsResult
from convscope.render.dataset_figures import TILE, with_dataset_figures, with_embedding_figures, with_top_activation_figures
from convscope_client.choices import EmbeddingMethod


def decoded(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def solid(colour: tuple[int, int, int], height: int = 40, width: int = 40) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.uint8), (height, width, 3)).copy()


def test_each_row_gets_a_figure_of_its_own_hits_with_the_patch_cut_from_the_kept_picture() -> None:
    """Row 0 hits the red image, row 1 the blue one: each figure shows its own colour only.
    The blue picture was kept at half size, so its box (in input pixels) is halved to cut it."""
    red, blue = solid((255, 0, 0)), solid((0, 0, 255), 20, 20)
    blue[:5, :5] = (0, 255, 0)  # the box below covers input pixels 0..10, i.e. kept pixels 0..5
    rows = (
        ChannelHits(0, (Hit("red", 0, 3.0, (0, 0), None),)),
        ChannelHits(1, (Hit("blue", 1, 2.0, (0, 0), (0, 0, 10, 10)),)),
    )
    result = TopActivationsResult("layer", rows, False, {0: KeptPicture(red, 1.0), 1: KeptPicture(blue, 0.5)})
    drawn = with_top_activation_figures(result)
    first, second = (decoded(row.png) for row in drawn.rows)
    assert first.shape[0] >= TILE and second.shape[0] >= TILE
    colours = [{tuple(int(v) for v in c) for c in figure.reshape(-1, 3)} for figure in (first, second)]
    assert (255, 0, 0) in colours[0] and (0, 0, 255) not in colours[0]
    assert (0, 0, 255) in colours[1] and (255, 0, 0) not in colours[1]
    # The left half is the crop: the green corner, enlarged to fill the tile.
    assert (second[: TILE // 2, : TILE // 2] == (0, 255, 0)).all(axis=-1).mean() > 0.9
    assert [row.hits for row in drawn.rows] == [row.hits for row in rows]


def test_a_result_without_pictures_gets_no_figures() -> None:
    result = TopActivationsResult("layer", (ChannelHits(0, (Hit(0, 0, 1.0, (0, 0), None),)),), False)
    assert with_top_activation_figures(result) is result


def embedding(thumbnails: tuple[np.ndarray, ...], coords: np.ndarray) -> EmbeddingResult:
    count = len(coords)
    return EmbeddingResult(
        "code",
        EmbeddingMethod.PCA,
        coords,
        tuple(range(count)),
        np.arange(count),
        0.0,
        thumbnail_rows=np.arange(len(thumbnails)),
        thumbnails=thumbnails,
    )


def test_the_embedding_grid_puts_each_thumbnail_in_the_cell_nearest_its_point() -> None:
    """Four points at the corners of a square: red top-left, green top-right, blue bottom-left,
    white bottom-right (y points up), so the 2×2 grid shows the same corners."""
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]
    coords = np.array([[0, 1], [1, 1], [0, 0], [1, 0]], np.float32)
    result = with_embedding_figures(embedding(tuple(solid(c, 30, 30) for c in colours), coords))
    picture = decoded(result.png)
    half = picture.shape[0] // 2
    quarters = [picture[:half, :half], picture[:half, half:], picture[half:, :half], picture[half:, half:]]
    for quarter, colour in zip(quarters, colours):
        assert (quarter == colour).all(axis=-1).sum() >= THUMBNAIL * THUMBNAIL * 0.9
    scatter = decoded(result.scatter_png)
    assert scatter.shape[0] == scatter.shape[1] >= 400
    assert (scatter[:THUMBNAIL, :THUMBNAIL] == colours[0]).all() and (scatter[-THUMBNAIL:, -THUMBNAIL:] == colours[3]).all()


def test_an_embedding_without_thumbnails_passes_through_and_other_events_too() -> None:
    plain = embedding((), np.zeros((3, 2), np.float32))
    events = list(with_dataset_figures(event for event in ("progress", plain)))
    assert events == ["progress", plain] and events[1].png == b""
