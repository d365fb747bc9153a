"""The demo's dataset: crops of the photographs the installed packages ship, at three scales."""

from __future__ import annotations

import io
import sys

import numpy as np
from PIL import Image

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import demo_photos  # noqa: E402  (a script's helper module, not a package)


def test_crops_tile_each_scale_without_overlap() -> None:
    picture = np.zeros((300, 512, 3), np.uint8)
    sides = [piece.shape[0] for piece in demo_photos.crops(picture)]
    assert all(piece.shape[0] == piece.shape[1] for piece in demo_photos.crops(picture))
    # 300-px side: one crop of 300 across 512, 2×3 of 150, 4×6 of 75.
    assert sides == [300] + [150] * 6 + [75] * 24


def test_crop_dataset_is_hundreds_of_photo_crops_from_every_photo() -> None:
    encoded, sources = demo_photos.crop_dataset()
    assert 300 <= len(encoded) == len(sources) <= 600
    assert len(set(sources)) == len(demo_photos.SKIMAGE_PHOTOS) + 2  # + scikit-learn's two
    with Image.open(io.BytesIO(encoded[0])) as first:
        assert first.size == (demo_photos.CROP_PIXELS, demo_photos.CROP_PIXELS) and first.mode == "RGB"
