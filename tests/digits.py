"""scikit-learn's bundled digits (1,797 8×8 images, 10 classes) and a small CNN trained on them.

The images are written as 8×8 PNGs (values 0..16 scaled to 0..255); the model's preprocessing
resizes them to 16×16 with nearest neighbours and scales by 1/255, which is exactly what
:func:`tensors` computes, so the torch training data, the server's decoded images and raw
tensors streamed to the server are the same numbers. Training takes a few seconds on CPU and is
deterministic (seeded, single-threaded order).
"""

from __future__ import annotations

import functools
import io
import sys

import numpy as np
import torch
from PIL import Image
from torch import nn

from tests.conftest import REPO
from tests.nets import export_onnx

sys.path.insert(0, str(REPO / "models" / "digits_cnn"))
import digits_data  # noqa: E402  (the shipped model's data module, beside its training script)

PREPROCESSING = {"size": [16, 16], "grayscale": True, "interpolation": "nearest"}
TEST_SIZE = digits_data.TEST_SIZE


digits = digits_data.split  # (8×8 uint8 images, labels) for training and held-out test


def tensors(pixels: np.ndarray) -> np.ndarray:
    """[N, 8, 8] uint8 → [N, 1, 16, 16] float32, as the server preprocesses the PNGs."""
    return (np.repeat(np.repeat(pixels, 2, axis=1), 2, axis=2).astype(np.float32) * np.float32(1 / 255))[:, None]


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


write_pngs = digits_data.write_pngs


class DigitsCNN(nn.Module):
    """conv-relu-pool ×2, conv-relu (the last conv layer), global average pool, fc-relu (the
    penultimate codes), fc."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.ReLU(),
        )
        self.code = nn.Sequential(nn.Linear(32, 64), nn.ReLU())
        self.classifier = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.code(self.features(x).mean((2, 3))))


@functools.cache
def trained_model() -> tuple[bytes, float]:
    """The trained CNN as ONNX bytes (dynamic batch), and its held-out accuracy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convs: one thread is as fast, and far faster on a loaded machine
    try:
        return _train()
    finally:
        torch.set_num_threads(threads)


def _train() -> tuple[bytes, float]:
    train_x, train_y, test_x, test_y = digits()
    torch.manual_seed(0)
    model = DigitsCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    inputs, labels = torch.from_numpy(tensors(train_x)), torch.from_numpy(train_y).long()
    order = np.random.default_rng(0)
    for _ in range(20):
        for batch in np.array_split(order.permutation(len(inputs)), len(inputs) // 64):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(inputs[batch]), labels[batch])
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(torch.from_numpy(tensors(test_x))).argmax(1).numpy() == test_y).mean())
    onnx_model = export_onnx(model, torch.zeros(1, 1, 16, 16), exporter="torchscript")
    return onnx_model.SerializeToString(), accuracy
