"""Reference nets whose ONNX exports keep height and width symbolic, as detectors and text
recognizers ship: one computes a YOLO-style anchor grid from the feature map's ``Shape``, one
concatenates branches whose sizes agree only for some widths."""

from __future__ import annotations

import io
import tempfile
import warnings
from pathlib import Path
from typing import Literal

import onnx
import torch
import torch.nn.functional as F
from torch import nn

Exporter = Literal["torchscript", "dynamo"]
EXPORTERS: tuple[Exporter, ...] = ("torchscript", "dynamo")
INPUT, OUTPUT = "image", "boxes"
MAX_IR_VERSION = 13


class YoloStyleHead(nn.Module):
    """Two strided convs, then per-anchor boxes decoded against a grid built from the feature
    map's run-time height and width (as Ultralytics' ``make_anchors``): output [N, 6, h·w]."""

    stride = 4

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 2, 1)
        self.head = nn.Conv2d(8, 6, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.head(F.silu(self.stem(x)))
        n, c, h, w = features.shape
        ys = torch.arange(h, dtype=x.dtype) + 0.5
        xs = torch.arange(w, dtype=x.dtype) + 0.5
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        anchors = torch.stack([grid_x, grid_y]).reshape(1, 2, h * w)
        flat = features.reshape(n, c, h * w)
        centres = (torch.sigmoid(flat[:, :2]) * 2 - 0.5 + anchors) * self.stride
        return torch.cat([centres, torch.exp(flat[:, 2:4].clamp(max=4)), torch.sigmoid(flat[:, 4:])], 1)


class WidthSensitiveConcat(nn.Module):
    """A fixed height of 48, a symbolic width: a branch strided by ``factor`` along the width
    and upsampled back is concatenated with the full-resolution one, which fits only widths divisible by
    ``factor`` (with 3, the probe's default 224 does not; a text line's 96 does)."""

    height = 48

    def __init__(self, factor: int = 3) -> None:
        super().__init__()
        self.factor = factor
        self.full = nn.Conv2d(3, 4, 3, 1, 1)
        self.coarse = nn.Conv2d(3, 4, (3, factor), (1, factor), (1, 0))
        self.mix = nn.Conv2d(8, 5, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coarse = F.interpolate(torch.relu(self.coarse(x)), scale_factor=(1.0, float(self.factor)), mode="nearest")
        mixed = self.mix(torch.cat([torch.relu(self.full(x)), coarse], 1))
        return mixed.mean(dim=2)  # [N, classes, W]: a recognizer's per-column scores


def initialized(model: nn.Module, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, std=0.3)
            nn.init.normal_(module.bias, std=0.1)
    return model.eval()


def export_dynamic(model: nn.Module, example: torch.Tensor, exporter: Exporter, *, fixed_height: bool = False) -> bytes:
    """``model`` as ONNX with batch, width and (unless ``fixed_height``) height symbolic:
    TorchScript at opset 17 with ``dynamic_axes``, dynamo at opset 18 with ``Dim``s."""
    with warnings.catch_warnings():
        for category in (DeprecationWarning, FutureWarning, UserWarning, torch.jit.TracerWarning):
            warnings.simplefilter("ignore", category)
        if exporter == "torchscript":
            axes = {0: "N", 3: "W"} if fixed_height else {0: "N", 2: "H", 3: "W"}
            buffer = io.BytesIO()
            torch.onnx.export(
                model,
                (example,),
                buffer,
                dynamo=False,
                opset_version=17,
                input_names=[INPUT],
                output_names=[OUTPUT],
                dynamic_axes={INPUT: axes},
            )
            proto = onnx.load_from_string(buffer.getvalue())
        else:
            dims = {0: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}
            if not fixed_height:
                dims[2] = torch.export.Dim.DYNAMIC
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                opset_version=18,
                input_names=[INPUT],
                output_names=[OUTPUT],
                dynamic_shapes=(dims,),
                verbose=False,
            )
            assert program is not None
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "model.onnx"
                program.save(path)
                proto = onnx.load(str(path), load_external_data=True)
    proto.ir_version = min(proto.ir_version, MAX_IR_VERSION)
    return proto.SerializeToString()
