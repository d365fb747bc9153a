"""Receptive fields, checked two independent ways.

1. Gradients: for a unit (y, x) of an intermediate tensor, the input pixels with a non-zero
   gradient (torch autograd, float64, random weights, no rectifiers, so no unit is dead) must
   fill exactly the box the pass gives. A "unit" is a spatial position: the gradient of the sum
   over channels, since the pass gives one field per position (Concat of branches with different
   windows: their union).
2. Closed forms: the published stride / size / offset of AlexNet and VGG-16 (Araujo et al.,
   Distill 2019, table of effective stride, receptive field size and effective padding).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from convscope.graph.analysis import data_tensors
from convscope.graph.expose import expose
from convscope.graph.receptive_field import FieldMap, receptive_fields
from tests.nets import export_onnx


def _shapes(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    wanted = list(dict.fromkeys(data_tensors(model.graph) + [o.name for o in model.graph.output]))
    session = ort.InferenceSession(expose(model, wanted).SerializeToString(), providers=["CPUExecutionProvider"])
    shapes = {name: value.shape for name, value in zip(wanted, session.run(wanted, feeds))}
    shapes.update({name: value.shape for name, value in feeds.items()})
    return shapes


class Strided(nn.Module):
    """Plain conv/pool stack on an odd, non-square input (edges that strides drop)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, 1, 1)
        self.c2 = nn.Conv2d(4, 4, 3, 2, 0)
        self.c3 = nn.Conv2d(4, 4, 3, 1, 1)  # padding after an edge-dropping stride
        self.c4 = nn.Conv2d(4, 4, 5, 1, 2)
        self.c5 = nn.Conv2d(4, 4, 1, 2, 0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        a = self.c1(x)
        b = self.c2(a)
        c = self.c3(b)
        d = F.avg_pool2d(c, 2)
        e = self.c4(d)
        f = F.avg_pool2d(e, 3, 2, 1, ceil_mode=True, count_include_pad=False)
        g = self.c5(f)
        return a, b, c, d, e, f, g


class Decoder(nn.Module):
    """Transposed convs, nearest and bilinear Resize, reflect Pad, Concat and Add of branches."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv2d(3, 4, 3, 2, 0)
        self.same = nn.Conv2d(4, 4, 3, 1, 1)
        self.up4 = nn.ConvTranspose2d(4, 4, 4, 2, 1)
        self.up3 = nn.ConvTranspose2d(4, 4, 3, 2, 1, output_padding=1)
        self.flat = nn.ConvTranspose2d(4, 4, 3, 1, 1)
        self.narrow = nn.Conv2d(4, 4, 3, 1, 1)
        self.wide = nn.Conv2d(4, 4, 5, 1, 2)
        self.mix = nn.Conv2d(8, 4, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        a = self.down(x)
        b = self.same(a)
        c = self.up4(b)
        d = F.interpolate(c, scale_factor=2, mode="nearest")
        e = F.interpolate(a, scale_factor=2, mode="bilinear", align_corners=False)
        f = F.pad(b, (1, 2, 2, 1), mode="reflect")
        g = torch.cat([self.narrow(f), self.wide(f)], 1)
        h = self.mix(g) + self.flat(self.narrow(f))
        i = F.avg_pool2d(h, 3, 2, 1, ceil_mode=True, count_include_pad=False)
        j = self.up3(i)
        k = F.pad(j, (2, 0, 0, 3))  # constant: border units see no pixel
        return a, b, c, d, e, f, g, h, i, j, k


class Dilated(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 5, 1, 2)
        self.c2 = nn.Conv2d(4, 4, 3, 1, 2, dilation=2)
        self.c3 = nn.Conv2d(4, 4, 3, 2, 3, dilation=3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        a = self.c1(x)
        b = self.c2(a)
        return a, b, self.c3(b)


CASES = [(Strided, (3, 29, 31)), (Decoder, (3, 21, 19)), (Dilated, (3, 24, 20))]


@pytest.mark.parametrize(("net_class", "input_shape"), CASES, ids=[c[0].__name__ for c in CASES])
def test_boxes_equal_the_pixels_with_nonzero_gradient(net_class, input_shape):
    torch.manual_seed(0)
    net = net_class().eval()
    example = torch.randn(1, *input_shape)
    model = export_onnx(net, example, exporter="torchscript", dynamic_batch=False)
    fields = receptive_fields(model, _shapes(model, {"input": example.numpy()}))
    names = [output.name for output in model.graph.output]

    x = example.double().requires_grad_(True)
    outputs = net.double()(x)
    checked = 0
    for name, out in zip(names, outputs):
        field = fields[name]
        assert field is not None, f"{net_class.__name__}: no field for output {name}"
        assert not field.global_context
        height, width = out.shape[2:]
        for y in sorted({0, 1, height // 2, height - 1}):
            for col in sorted({0, 1, width // 2, width - 1}):
                (grad,) = torch.autograd.grad(out[0, :, y, col].sum(), x, retain_graph=True)
                seen = (grad.abs().sum(1)[0] != 0).numpy()
                box = field.box(y, col)
                if not seen.any():
                    assert box is None, f"{name} unit {(y, col)} sees nothing, pass says {box}"
                    continue
                rows, cols = np.flatnonzero(seen.any(1)), np.flatnonzero(seen.any(0))
                truth = (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
                assert box == truth, f"{name} unit {(y, col)}: pass {box}, gradient {truth}"
                if net_class is not Dilated:  # dilation leaves holes inside the bounding box
                    assert seen[box[0] : box[2], box[1] : box[3]].all()
                checked += 1
    assert checked >= 4 * len(names)


def test_affine_summary_where_the_map_is_affine_and_unknown_where_it_is_not():
    torch.manual_seed(0)
    net = Decoder().eval()
    example = torch.randn(1, 3, 21, 19)
    model = export_onnx(net, example, exporter="torchscript", dynamic_batch=False)
    fields = receptive_fields(model, _shapes(model, {"input": example.numpy()}))
    a, b, c, d, e, f, g, h, i, j, k = (fields[o.name] for o in model.graph.output)
    assert a.summary().stride == (2, 2) and a.summary().size == (3, 3) and a.summary().offset == (1.0, 1.0)
    assert b.summary().size == (7, 7) and b.summary().offset == (1.0, 1.0)
    # stride-2 transposed conv and 2× upsampling: the box depends on the unit's phase
    for upsampled in (c, d, e, j, k):
        assert upsampled.summary() is None
    # reflect pad (top 2, left 1) moves the window; the concat of a 3×3 and a 5×5 branch is their union
    assert f.summary().offset == (1.0 - 2 * 2, 1.0 - 2 * 1)
    assert g.summary().size == (7 + 4 * 2, 7 + 4 * 2)
    assert h.summary().size == (15 + 2 * 2, 15 + 2 * 2)  # 3×3 over g; the other branch (15) is inside


def _chain(layers, size=224):
    """A one-channel conv/pool chain built in ONNX directly: (op, kernel, stride, pad)."""
    nodes, initializers, previous = [], [], "x"
    for index, (op, kernel, stride, pad) in enumerate(layers):
        out = f"t{index}"
        if op == "Conv":
            weight = numpy_helper.from_array(np.ones((1, 1, kernel, kernel), np.float32), f"w{index}")
            initializers.append(weight)
            nodes.append(helper.make_node("Conv", [previous, weight.name], [out], strides=[stride] * 2, pads=[pad] * 4))
        else:
            nodes.append(
                helper.make_node("MaxPool", [previous], [out], kernel_shape=[kernel] * 2, strides=[stride] * 2, pads=[pad] * 4)
            )
        previous = out
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, size, size])],
        [helper.make_tensor_value_info(previous, TensorProto.FLOAT, None)],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model, previous


def _vgg16():
    layers = []
    for convs in (2, 2, 3, 3, 3):
        layers += [("Conv", 3, 1, 1)] * convs + [("MaxPool", 2, 2, 0)]
    return layers


ALEXNET = [
    ("Conv", 11, 4, 0),
    ("MaxPool", 3, 2, 0),
    ("Conv", 5, 1, 2),
    ("MaxPool", 3, 2, 0),
    ("Conv", 3, 1, 1),
    ("Conv", 3, 1, 1),
    ("Conv", 3, 1, 1),
    ("MaxPool", 3, 2, 0),
]


@pytest.mark.parametrize(
    ("layers", "stride", "size", "padding"),
    [(_vgg16(), 32, 212, 90), (_vgg16()[:-1], 16, 196, 90), (ALEXNET, 32, 195, 64)],
    ids=["vgg16_pool5", "vgg16_conv5_3", "alexnet_pool5"],
)
def test_closed_form_values_of_standard_networks(layers, stride, size, padding):
    model, last = _chain(layers)
    fields = receptive_fields(model, _shapes(model, {"x": np.zeros((1, 1, 224, 224), np.float32)}))
    summary = fields[last].summary()
    assert summary.stride == (stride, stride)
    assert summary.size == (size, size)
    # Araujo et al. report the effective padding: the start of unit 0 is −padding
    assert summary.offset == (-padding + (size - 1) / 2,) * 2


def test_same_auto_pad_and_nhwc_input():
    weight = numpy_helper.from_array(np.ones((2, 3, 3, 3), np.float32), "w")
    nodes = [
        helper.make_node("Transpose", ["x"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "w"], ["conv"], strides=[2, 2], auto_pad="SAME_UPPER"),
        helper.make_node("MaxPool", ["conv"], ["pool"], kernel_shape=[2, 2], strides=[2, 2], auto_pad="SAME_LOWER"),
    ]
    graph = helper.make_graph(
        nodes,
        "nhwc",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10, 10, 3])],
        [helper.make_tensor_value_info("pool", TensorProto.FLOAT, None)],
        initializer=[weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    fields = receptive_fields(model, _shapes(model, {"x": np.zeros((1, 10, 10, 3), np.float32)}), layout="NHWC")
    # SAME_UPPER, 10 → 5 with k3 s2: total pad 1, all of it at the end
    assert fields["conv"].summary().offset == (1.0, 1.0)
    assert fields["conv"].box(4, 4) == (8, 8, 10, 10)
    # SAME_LOWER, 5 → 3 with k2 s2: total pad 1, at the start
    assert fields["pool"].summary().offset == (1.0 - 2 + 1.0, 1.0 - 2 + 1.0)
    assert fields["pool"].box(0, 0) == (0, 0, 3, 3)


def test_reshape_and_dense_layers_are_unknown_squeeze_excitation_is_flagged():
    class SqueezeExcite(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, 1, 1)
            self.fc1 = nn.Linear(8, 4)
            self.fc2 = nn.Linear(4, 8)
            self.head = nn.Linear(8 * 8 * 8, 5)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            a = self.conv(x)
            gate = torch.sigmoid(self.fc2(self.fc1(a.mean((2, 3))))).reshape(-1, 8, 1, 1)
            b = a * gate
            return a, b, self.head(b.flatten(1))

    torch.manual_seed(0)
    example = torch.randn(1, 3, 8, 8)
    for exporter in ("torchscript", "dynamo"):
        model = export_onnx(SqueezeExcite().eval(), example, exporter=exporter, dynamic_batch=False)
        fields = receptive_fields(model, _shapes(model, {"input": example.numpy()}))
        a, b, logits = (fields.get(o.name) for o in model.graph.output)
        assert isinstance(a, FieldMap) and not a.global_context
        assert isinstance(b, FieldMap) and b.global_context, exporter
        assert b.summary().global_context and b.summary().size == (3, 3)
        assert logits is None
