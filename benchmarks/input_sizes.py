"""What a new input size costs on a model with symbolic height and width, and what warm
requests cost at each size.

A request at a size other than the upload probe's gets the layer table at its own shape (one
run of the model with every tensor exposed, runtime/shaped.py); the graphs keep the model's
symbolic sizes, so no session is built per size.  Measured per model and size:

- ``cold_s``: the first gradient map at that size (for the probe's size this includes building
  the backward session; for the next size, the layer-table run only);
- ``warm_s`` and its peer ``forward_s``: median gradient map (explicit target, no PNG) and the
  bare onnxruntime forward of the unmodified model at the same size, interleaved repeat by
  repeat because the machine is shared; ``gradient_over_forward`` is their ratio;
- ``table_bytes``: memory the cached layer table of that size holds (tracemalloc, after gc),
  and ``session_cache_bytes``: the runtime's session cache after the requests at that size
  (its own estimate, what the memory budget counts): it does not grow with a new size.

Models: the bundled EfficientNet-Lite0 with its input's height and width made symbolic, at 224
(the probe's size) and 320; a detector (six stride-2 convs and a YOLO-style head whose anchor
grid comes from the feature map's Shape) at 320 and 480.  Writes
benchmarks/results/input_sizes.json.

    .venv/bin/python -m benchmarks.input_sizes
"""

from __future__ import annotations

import gc
import io
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks._common import interleaved_medians, write_results
from convscope.core import Convscope
from convscope.methods.attribution import AttributionOptions
from convscope.model.preprocessing import input_from_tensor
from convscope.model.types import ModelRecord
from convscope.runtime.providers import new_session
from convscope.runtime.shaped import ShapedRecords

REPO = Path(__file__).resolve().parents[1]
EFFICIENTNET = REPO / "models" / "efficientnet_lite0" / "efficientnet_lite0.onnx"
REPEATS = 9


def efficientnet_any_size() -> bytes:
    """The bundled model with symbolic height and width (its graph has no size baked in past
    the global pool, so onnxruntime runs it at any size)."""
    model = onnx.load(str(EFFICIENTNET))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for axis, name in ((2, "H"), (3, "W")):
        dims[axis].Clear()
        dims[axis].dim_param = name
    del model.graph.value_info[:]
    return model.SerializeToString()


class GridDetector(nn.Module):
    """Six stride-2 convs (32-128 channels), then per-anchor boxes decoded against a grid built
    from the feature map's run-time size, as YOLO heads are: output [N, 6, h·w]."""

    def __init__(self) -> None:
        super().__init__()
        widths = [3, 32, 48, 64, 96, 128, 128]
        self.stages = nn.ModuleList(nn.Conv2d(a, b, 3, 2, 1) for a, b in zip(widths, widths[1:]))
        self.head = nn.Conv2d(128, 6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = F.silu(stage(x))
        features = self.head(x)
        n, c, h, w = features.shape
        grid_y, grid_x = torch.meshgrid(torch.arange(h, dtype=x.dtype), torch.arange(w, dtype=x.dtype), indexing="ij")
        anchors = torch.stack([grid_x, grid_y]).reshape(1, 2, h * w) + 0.5
        flat = features.reshape(n, c, h * w)
        centres = (torch.sigmoid(flat[:, :2]) * 2 - 0.5 + anchors) * 64
        return torch.cat([centres, torch.exp(flat[:, 2:4].clamp(max=4)), torch.sigmoid(flat[:, 4:])], 1)


def detector() -> bytes:
    torch.manual_seed(0)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            GridDetector().eval(),
            (torch.zeros(1, 3, 320, 320),),
            buffer,
            dynamo=False,
            opset_version=17,
            input_names=["image"],
            output_names=["boxes"],
            dynamic_axes={"image": {0: "N", 2: "H", 3: "W"}},
        )
    model = onnx.load_from_string(buffer.getvalue())
    model.ir_version = min(model.ir_version, 13)
    return model.SerializeToString()


def measure(service: Convscope, name: str, data: bytes, sizes: list[int], input_shape: list[int] | None) -> dict[str, object]:
    record = service.upload([("", data)], input_shape=input_shape)
    plain = new_session(data)
    results: dict[str, object] = {"probe_shape": list(record.probe_shape)}
    for size in sizes:
        x = np.random.default_rng(size).random((1, 3, size, size), dtype=np.float32)
        model_input = input_from_tensor(record, x)
        options = AttributionOptions(target=1)

        def gradient() -> object:
            return service.attribution(record.id, model_input, "gradient", options, render=False)

        start = time.perf_counter()
        gradient()
        cold = time.perf_counter() - start
        medians = interleaved_medians(
            {"warm": gradient, "forward": lambda: plain.run(None, {record.input.name: x})}, repeats=REPEATS
        )
        results[str(size)] = {
            "cold_s": round(cold, 4),
            "warm_s": round(medians["warm"], 4),
            "forward_s": round(medians["forward"], 4),
            "gradient_over_forward": round(medians["warm"] / medians["forward"], 2),
            "table_bytes": table_bytes(service, record, x.shape),
            "session_cache_bytes": service.runtime.cache_bytes(),
        }
        print(name, size, results[str(size)])
    return results


def table_bytes(service: Convscope, record: ModelRecord, shape: tuple[int, ...]) -> int:
    """Memory a layer table at ``shape`` holds once cached (0 at the probe's shape: the record's own)."""
    tables = ShapedRecords(service.runtime)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    tables.at(record, shape)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return held


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        service = Convscope(Path(tmp) / "store")
        results = {
            "efficientnet_lite0": measure(service, "efficientnet_lite0", efficientnet_any_size(), [224, 320], None),
            "grid_detector": measure(service, "grid_detector", detector(), [320, 480], [1, 3, 320, 320]),
        }
        service.close()
    write_results("input_sizes", results)


if __name__ == "__main__":
    main()
