"""Learned Conv weights as image grids, with a smoothness score (Zeiler & Fergus 2013 §4:
noisy, high-frequency first-layer filters are the mark of a badly trained or unstable net)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from convscope.errors import InvalidArgument, NotFound
from convscope.graph.analysis import node_label, producers
from convscope.graph.common import constant_value

CONV_OPS = ("Conv", "ConvTranspose")
# Frequencies above half the Nyquist limit (0.25 cycles/pixel) count as high.
HIGH_FREQUENCY = 0.25
# Kernels are zero-padded to this size before the FFT so 3×3 and 7×7 share one frequency grid.
SPECTRUM_SIZE = 16


@dataclass(frozen=True)
class FiltersResult:
    node: str
    weights: np.ndarray
    smoothness: np.ndarray  # per output filter, 1 = all energy at low frequencies; NaN for 1×1
    png: bytes = b""  # added by render/results.py when asked for

    @property
    def mean_smoothness(self) -> float:
        finite = self.smoothness[np.isfinite(self.smoothness)]
        return float(finite.mean()) if finite.size else float("nan")


def conv_weights(model: onnx.ModelProto, layer: str) -> tuple[str, np.ndarray]:
    """The weight array of the Conv node named ``layer`` (node name or output tensor name).

    Follows the ways exporters hold weights: initializers, ``Constant`` nodes (Paddle) and
    ``Identity`` over an initializer (shared weights in TorchScript exports).
    """
    graph = model.graph
    for index, node in enumerate(graph.node):
        if node_label(node, index) == layer or layer in node.output:
            if node.op_type not in CONV_OPS:
                raise InvalidArgument(f"layer {layer!r} is a {node.op_type} node; filters exist for Conv layers only")
            weights = constant_value(node.input[1], {init.name: init for init in graph.initializer}, producers(graph))
            if weights is None:
                raise InvalidArgument(f"the weights of {layer!r} are computed at run time, not stored in the model")
            return node_label(node, index), weights
    convs = [node_label(n, i) for i, n in enumerate(graph.node) if n.op_type in CONV_OPS]
    raise NotFound(f"no Conv layer {layer!r}; the model's Conv layers include {convs[:8]}")


def smoothness(weights: np.ndarray) -> np.ndarray:
    """Per output filter: 1 − (spectral energy above half Nyquist) / (total energy).

    Summed over input channels. White-noise 7×7 filters score about 0.2, smooth Gabor-like
    ones about 0.9; 1×1 kernels have no spatial spectrum (NaN).
    """
    out_channels = weights.shape[0]
    if weights.ndim != 4 or weights.shape[2] * weights.shape[3] <= 1:
        return np.full(out_channels, np.nan, np.float32)
    size = max(SPECTRUM_SIZE, weights.shape[2], weights.shape[3])
    power = np.abs(np.fft.fft2(weights.astype(np.float64), s=(size, size))) ** 2
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.fftfreq(size)[None, :]
    high = np.sqrt(fy**2 + fx**2) > HIGH_FREQUENCY
    total = power.sum(axis=(1, 2, 3))
    high_energy = (power * high).sum(axis=(1, 2, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 1 - high_energy / total, np.nan).astype(np.float32)


def filters(model: onnx.ModelProto, layer: str) -> FiltersResult:
    node, weights = conv_weights(model, layer)
    return FiltersResult(node, weights, smoothness(weights))
