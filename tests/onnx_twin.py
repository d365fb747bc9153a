"""A float64 torch twin of an ONNX graph, op by op, for models too large for float64 central
differences through onnx's reference evaluator (a ResNet-50 at 224² takes it 3 s a run): torch
autograd on the twin gives the whole input gradient in one backward pass.  It plays the role
onnx2torch plays elsewhere (which needs torchvision, broken here), for the ops the corpus's
tf2onnx export uses; any other op is refused by name, never guessed."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper


def _attributes(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _spatial_pads(attrs: dict[str, object], rank: int) -> list[int]:
    """ONNX pads [begin..., end...] as F.pad's [last begin, last end, ...]."""
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise NotImplementedError(f"auto_pad={attrs['auto_pad']!r}")
    pads = list(attrs.get("pads", [0] * 2 * rank))  # type: ignore[call-overload]
    return [value for axis in reversed(range(rank)) for value in (pads[axis], pads[axis + rank])]


def _conv(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None, **attrs: object) -> torch.Tensor:
    padded = F.pad(x, _spatial_pads(attrs, w.dim() - 2))
    return F.conv2d(
        padded, w, b, stride=attrs.get("strides", 1), dilation=attrs.get("dilations", 1), groups=attrs.get("group", 1)
    )  # type: ignore[arg-type]


def _max_pool(x: torch.Tensor, **attrs: object) -> torch.Tensor:
    if attrs.get("ceil_mode", 0) or attrs.get("dilations", [1, 1]) != [1, 1]:
        raise NotImplementedError("MaxPool with ceil_mode or dilations")
    padded = F.pad(x, _spatial_pads(attrs, 2), value=-torch.inf)
    return F.max_pool2d(padded, attrs["kernel_shape"], attrs.get("strides", 1))  # type: ignore[arg-type]


def _average_pool(x: torch.Tensor, **attrs: object) -> torch.Tensor:
    if any(attrs.get("pads", [0])) or attrs.get("ceil_mode", 0):  # type: ignore[arg-type]
        raise NotImplementedError("AveragePool with pads or ceil_mode")
    return F.avg_pool2d(x, attrs["kernel_shape"], attrs.get("strides", 1))  # type: ignore[arg-type]


def _reshape(x: torch.Tensor, shape: torch.Tensor, **attrs: object) -> torch.Tensor:
    if attrs.get("allowzero", 0):
        raise NotImplementedError("Reshape with allowzero")
    dims = [x.shape[axis] if size == 0 else size for axis, size in enumerate(shape.long().tolist())]
    return x.reshape(dims)


def _softmax(x: torch.Tensor, axis: int = -1) -> torch.Tensor:
    # Before opset 13 Softmax flattened from ``axis`` on; over the last axis both agree.
    if axis % x.dim() != x.dim() - 1:
        raise NotImplementedError("Softmax over another axis than the last")
    return torch.softmax(x, dim=-1)


def _widened(array: np.ndarray) -> np.ndarray:
    return np.array(array, np.float64 if np.issubdtype(array.dtype, np.floating) else array.dtype)


OPS: dict[str, Callable[..., torch.Tensor]] = {
    "Conv": _conv,
    "Relu": lambda x: torch.relu(x),
    "Add": lambda a, b: a + b,
    "MatMul": lambda a, b: a @ b,
    "Transpose": lambda x, perm: x.permute(*perm),
    "Reshape": _reshape,
    "MaxPool": _max_pool,
    "AveragePool": _average_pool,
    "Softmax": _softmax,
}


def torch_twin(model: onnx.ModelProto) -> Callable[[torch.Tensor], dict[str, torch.Tensor]]:
    """``model``'s graph as a function of its one runtime input → every tensor by name, float64."""
    constants = {t.name: torch.from_numpy(_widened(numpy_helper.to_array(t))) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type not in OPS:
            raise NotImplementedError(f"the torch twin has no rule for {node.op_type} ({node.name})")
    (input_name,) = [value.name for value in model.graph.input if value.name not in constants]

    def run(x: torch.Tensor) -> dict[str, torch.Tensor]:
        values = {**constants, input_name: x}
        for node in model.graph.node:
            values[node.output[0]] = OPS[node.op_type](*(values[name] for name in node.input if name), **_attributes(node))
        return values

    return run
