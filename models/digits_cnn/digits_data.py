"""The digits CNN's data: scikit-learn's bundled digits, split once for training and held-out
checks (the audit runs on the 600 held-out images), written as 8×8 PNGs in class folders."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

TEST_SIZE = 600


@functools.cache
def split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(8×8 uint8 images, labels) for training and held-out test, stratified, seeded."""
    data = load_digits()
    pixels = np.clip(data.images * 16, 0, 255).astype(np.uint8)
    train_x, test_x, train_y, test_y = train_test_split(
        pixels, data.target, test_size=TEST_SIZE, stratify=data.target, random_state=0
    )
    return train_x, train_y, test_x, test_y


def write_pngs(folder: Path, images: np.ndarray) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, image in enumerate(images):
        path = folder / f"{index:04d}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def write_class_folders(root: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """One sub-folder per digit, named by it: the layout `convscope audit --data` reads."""
    for label in range(10):
        write_pngs(root / str(label), images[labels == label])
    return root
