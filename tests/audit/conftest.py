"""The audit's real data: the shipped digits CNN and the held-out digits it was not trained on,
written as PNGs in one sub-folder per class."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.digits import digits, write_pngs

DIGITS_MODEL = REPO / "models" / "digits_cnn" / "digits_cnn.onnx"


@pytest.fixture(scope="session")
def digits_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("digits")
    _, _, test_x, test_y = digits()
    for label in range(10):
        write_pngs(root / str(label), test_x[test_y == label])
    return root
