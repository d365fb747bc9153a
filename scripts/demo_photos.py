"""The demo's dataset: a few hundred square crops, at several scales, of the photographs that
scikit-image (``skimage.data``) and scikit-learn (``load_sample_images``) ship in their
packages, so nothing is downloaded. Their licences and sources are listed in those packages
(skimage/data/README.txt; sklearn/datasets/images/README.txt): public-domain or CC-licensed
photos of an astronaut, a cat, coffee, a rocket, the Hubble deep field, tissue, a retina, a
cameraman, the moon, coins, bricks, grass, gravel, a clock, cells, a Chinese temple and a
flower.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
from PIL import Image

SKIMAGE_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "camera",
    "moon",
    "coins",
    "brick",
    "grass",
    "gravel",
    "clock",
    "cell",
)
SCALES = (1.0, 0.5, 0.25)  # crop side as a share of the photo's shorter side
CROP_PIXELS = 160  # each crop is sent at this size; the server preprocesses it for the model


def photos() -> Iterator[tuple[str, np.ndarray]]:
    """(name, H×W×3 uint8) for every packaged photo; grey ones as RGB."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    for name in SKIMAGE_PHOTOS:
        picture = np.asarray(getattr(skimage.data, name)())
        yield name, np.repeat(picture[..., None], 3, axis=2) if picture.ndim == 2 else picture[..., :3]
    sample = load_sample_images()
    for name, picture in zip(sample.filenames, sample.images):
        yield name.rsplit("/", 1)[-1].split(".")[0], picture


def crops(picture: np.ndarray) -> Iterator[np.ndarray]:
    """Square crops of each scale, side by side on a grid."""
    height, width = picture.shape[:2]
    for scale in SCALES:
        side = int(min(height, width) * scale)
        for top in range(0, height - side + 1, side):
            for left in range(0, width - side + 1, side):
                yield picture[top : top + side, left : left + side]


def crop_dataset() -> tuple[list[bytes], list[str]]:
    """PNG bytes of every crop, and the name of the photo each comes from."""
    encoded, sources = [], []
    for name, picture in photos():
        for piece in crops(picture):
            buffer = io.BytesIO()
            Image.fromarray(piece).resize((CROP_PIXELS, CROP_PIXELS), Image.Resampling.BILINEAR).save(buffer, format="PNG")
            encoded.append(buffer.getvalue())
            sources.append(name)
    return encoded, sources
