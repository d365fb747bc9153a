"""Occlusion sensitivity against its oracles, run through the service's own method layer.

==========================================  ====================================================
ours                                        oracle
==========================================  ====================================================
``.attribution`` (score ``raw``)            Captum ``Occlusion`` on the torch twin, same window,
                                            strides (C, s, s), baseline and target;
                                            max |Δ| ≤ 1e-4 × the range of the scores
``.positions``                              a Python loop over the box positions, each copy
                                            occluded by slicing and run alone in onnxruntime
incremental engine                          the batched engine: relative L2 ≤ 1e-4, every model
``fill="mean"`` / ``"blur"``                numpy mean / scipy's normalized Gaussian filtering
==========================================  ====================================================

The models are the torch reference nets of tests/nets.py (random weights) exported to ONNX, and
inline ONNX graphs for geometry exporters do not write (auto_pad, dilation, ceil_mode, average
pooling with padding, branches with different halos).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from captum.attr import Occlusion
from onnx import TensorProto, helper, numpy_helper
from scipy import ndimage
from torch import nn

from convscope.core import Convscope
from convscope.errors import InvalidArgument
from convscope.methods.occlusion import (
    OcclusionFill,
    OcclusionOptions,
    OcclusionProgress,
    OcclusionResult,
    fill_values,
    window_grid,
)
from convscope.model.preprocessing import input_from_tensor
from convscope.model.types import ModelRecord, Preprocessing
from tests.nets import EXPORTERS, NETS, Exporter, export_onnx, exported, reference_net
from tests.oracles import random_input

pytestmark = pytest.mark.slow

PARITY_TOLERANCE = 1e-4  # max |Δ| over the range of the scores (the bound)
ENGINE_TOLERANCE = 1e-4  # relative L2, incremental vs batched
# A case whose scores barely move could not fail: require this much range.
MIN_SCORE_RANGE = 1e-3

PARITY_NETS: list[tuple[str, Exporter]] = [
    ("ResNetStyle", "torchscript"),
    ("ResNetStyle", "dynamo"),
    ("DepthwiseReLU6Net", "torchscript"),
]
# (window, stride, fill): divisible and not (Captum clips the last box), square and not, each fill.
PARITY_CASES = [
    ((4, 4), (2, 2), 0.0),
    ((6, 6), (4, 4), "mean"),
    ((8, 5), (3, 5), "blur"),
    ((7, 9), (7, 4), -1.5),
]


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Convscope]:
    convscope = Convscope(tmp_path_factory.mktemp("occlusion-store"))
    yield convscope
    convscope.close()


def _upload(core: Convscope, model: onnx.ModelProto) -> ModelRecord:
    return core.upload([("", model.SerializeToString())])


def _run(
    core: Convscope, record: ModelRecord, x: np.ndarray, **options: object
) -> tuple[OcclusionResult, list[OcclusionProgress]]:
    events = list(core.occlusion(record.id, input_from_tensor(record, x), OcclusionOptions.parse(**options)))  # type: ignore[arg-type]
    result = events[-1]
    assert isinstance(result, OcclusionResult)
    return result, [e for e in events[:-1] if isinstance(e, OcclusionProgress)]


def _captum_fill(x: np.ndarray, fill: float | str, window: tuple[int, int]) -> torch.Tensor:
    mode = OcclusionFill(fill) if isinstance(fill, str) else float(fill)
    return torch.from_numpy(fill_values(x[0], mode, window)[None].copy())


def _captum(
    name: str, x: np.ndarray, window: tuple[int, int], stride: tuple[int, int], fill: float | str, target: int
) -> np.ndarray:
    net = reference_net(name)
    channels = x.shape[1]
    with torch.no_grad():
        attribution = Occlusion(net).attribute(
            torch.from_numpy(x),
            sliding_window_shapes=(channels, *window),
            strides=(channels, *stride),
            baselines=_captum_fill(x, fill, window),
            target=target,
            perturbations_per_eval=16,
        )
    return attribution.numpy()[0]


@pytest.mark.parametrize("engine", ["batched", "incremental"])
@pytest.mark.parametrize(("window", "stride", "fill"), PARITY_CASES, ids=lambda v: str(v))
@pytest.mark.parametrize(("name", "exporter"), PARITY_NETS, ids=lambda v: str(v))
def test_attribution_matches_captum(core, name, exporter, window, stride, fill, engine):
    record = _upload(core, exported(name, exporter))
    x = random_input((1, *NETS[name].input_shape), seed=11)
    result, _ = _run(core, record, x, window=window, stride=stride, fill=fill, score="raw", engine=engine, targets=[3, 7])
    assert result.engine == engine
    assert result.attribution.shape == (2, *x.shape[1:])
    scores = np.concatenate([result.positions.ravel(), result.baseline_scores])
    score_range = float(np.ptp(scores))
    assert score_range > MIN_SCORE_RANGE
    for index, target in enumerate(result.targets):
        want = _captum(name, x, window, stride, fill, target)
        error = float(np.abs(result.attribution[index] - want).max())
        assert error <= PARITY_TOLERANCE * score_range, f"target {target}: max |Δ| {error:.2e}, range {score_range:.3f}"


def _loop_oracle(model: onnx.ModelProto, x: np.ndarray, window, stride, fill: np.ndarray) -> np.ndarray:
    """[Ho, Wo, outputs]: every box position occluded by slicing, one onnxruntime run each."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    height, width = x.shape[2:]
    rows = range(0, max(1, -(-(height - window[0]) // stride[0]) + 1))
    cols = range(0, max(1, -(-(width - window[1]) // stride[1]) + 1))
    out = np.empty((len(rows), len(cols), session.get_outputs()[0].shape[-1]), np.float64)
    for i in rows:
        for j in cols:
            y, z = i * stride[0], j * stride[1]
            occluded = x.copy()
            occluded[0, :, y : y + window[0], z : z + window[1]] = fill[:, y : y + window[0], z : z + window[1]]
            out[i, j] = session.run(None, {name: occluded})[0][0]
    return out


def _softmax(values: np.ndarray) -> np.ndarray:
    shifted = np.exp(values - values.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("score", ["probability", "raw"])
@pytest.mark.parametrize("engine", ["batched", "incremental"])
def test_positions_match_a_loop_over_positions(core, score, engine):
    model = exported("ResNetStyle", "torchscript")
    record = _upload(core, model)
    x = random_input((1, 3, 32, 32), seed=4)
    window, stride = (5, 7), (3, 4)
    result, progress = _run(core, record, x, window=window, stride=stride, fill=0.25, score=score, engine=engine, batch_size=5)
    loop = _loop_oracle(model, x, window, stride, np.full(x.shape[1:], 0.25, np.float32))
    reference = session_output(model, x)
    if score == "probability":
        loop, reference = _softmax(loop), _softmax(reference)
    top = int(np.argmax(reference))
    assert result.targets == (top,)
    assert result.positions.shape == (1, *loop.shape[:2])
    np.testing.assert_allclose(result.positions[0], loop[..., top], rtol=1e-5, atol=1e-5 * np.abs(loop).max())
    np.testing.assert_allclose(result.baseline_scores, [reference[top]], rtol=1e-5)
    total = loop.shape[0] * loop.shape[1]
    assert [(p.done, p.total) for p in progress] == [(0, total)] + [(min(k + 5, total), total) for k in range(0, total, 5)]


def session_output(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0][0].astype(np.float64)


def _relative_l2(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.linalg.norm(got.astype(np.float64) - want) / np.linalg.norm(want.astype(np.float64)))


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("name", list(NETS))
def test_incremental_equals_batched_on_every_net(core, name, exporter, caplog):
    record = _upload(core, exported(name, exporter))
    x = random_input((1, *NETS[name].input_shape), seed=8)
    for window, stride, fill in (((6, 6), (4, 4), 0.0), ((9, 5), (3, 5), "blur")):
        options = {"window": window, "stride": stride, "fill": fill, "score": "raw", "targets": [0, 5]}
        batched, _ = _run(core, record, x, engine="batched", **options)
        with caplog.at_level(logging.INFO, logger="convscope.methods.occlusion"):
            incremental, _ = _run(core, record, x, engine="incremental", **options)
        if record.dynamic_batch:
            assert incremental.engine == "incremental", caplog.text
        else:  # a fixed batch cannot take the stage batches: the fallback says so
            assert incremental.engine == "batched"
            assert "batch dimension is fixed" in caplog.text
        assert _relative_l2(incremental.positions, batched.positions) <= ENGINE_TOLERANCE
        assert _relative_l2(incremental.attribution, batched.attribution) <= ENGINE_TOLERANCE


# ----------------------------------------------------------------------- inline geometry models


def _conv(name: str, source: str, cin: int, cout: int, kernel: int, rng: np.random.Generator, **attrs: object):
    weight = numpy_helper.from_array(
        (rng.standard_normal((cout, cin // int(attrs.get("group", 1)), kernel, kernel)) * 0.3).astype(np.float32), f"{name}_w"
    )
    bias = numpy_helper.from_array(rng.standard_normal(cout).astype(np.float32) * 0.1, f"{name}_b")
    return helper.make_node("Conv", [source, weight.name, bias.name], [name], name=name, **attrs), [weight, bias]


def geometry_model() -> onnx.ModelProto:
    """What exporters do not write: Conv with auto_pad SAME_UPPER and stride 2 (pads 0/1), a
    dilated Conv with asymmetric pads, a grouped Conv, branches with different halos meeting in
    an Add and a Concat, a per-channel Mul, MaxPool with ceil_mode (a partial last window) and
    AveragePool counting its padding; then a global head."""
    rng = np.random.default_rng(3)
    nodes, inits = [], []

    def add(made):
        node, weights = made
        nodes.append(node)
        inits.extend(weights)

    add(_conv("c1", "x", 3, 8, 3, rng, auto_pad="SAME_UPPER", strides=[2, 2]))  # 30 → 15
    nodes.append(helper.make_node("Relu", ["c1"], ["r1"]))
    add(_conv("c2", "r1", 8, 8, 3, rng, dilations=[2, 2], pads=[2, 1, 2, 3]))  # 15 → 15
    nodes.append(helper.make_node("Sigmoid", ["c2"], ["s2"]))
    add(_conv("c3", "r1", 8, 8, 5, rng, pads=[2, 2, 2, 2], group=2))  # 15 → 15
    nodes.append(helper.make_node("Add", ["s2", "c3"], ["sum"]))
    inits.append(numpy_helper.from_array(rng.uniform(0.5, 1.5, (1, 8, 1, 1)).astype(np.float32), "scale"))
    nodes.append(helper.make_node("Mul", ["sum", "scale"], ["scaled"]))
    nodes.append(helper.make_node("Concat", ["scaled", "r1"], ["cat"], axis=1))
    nodes.append(helper.make_node("MaxPool", ["cat"], ["mp"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1))  # 15 → 8
    nodes.append(helper.make_node("AveragePool", ["mp"], ["ap"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1))
    add(_conv("c4", "ap", 16, 8, 3, rng, pads=[1, 1, 1, 1]))
    nodes.append(helper.make_node("GlobalAveragePool", ["c4"], ["gap"]))
    nodes.append(helper.make_node("Flatten", ["gap"], ["out"]))
    graph = helper.make_graph(
        nodes,
        "geometry",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 30, 30])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 8])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize(("window", "stride"), [((5, 5), (2, 2)), ((8, 3), (4, 3)), ((30, 4), (1, 4))])
def test_incremental_handles_padding_dilation_and_branches(core, window, stride, caplog):
    model = geometry_model()
    record = _upload(core, model)
    x = random_input((1, 3, 30, 30), seed=2)
    options = {"window": window, "stride": stride, "fill": 0.5, "score": "raw", "targets": [1, 6]}
    with caplog.at_level(logging.INFO, logger="convscope.methods.occlusion"):
        incremental, _ = _run(core, record, x, engine="incremental", **options)
    batched, _ = _run(core, record, x, engine="batched", **options)
    loop = _loop_oracle(model, x, window, stride, np.full(x.shape[1:], 0.5, np.float32))
    assert incremental.engine == "incremental", caplog.text
    assert _relative_l2(incremental.positions, batched.positions) <= ENGINE_TOLERANCE
    np.testing.assert_allclose(batched.positions[1], loop[..., 6], rtol=1e-5, atol=1e-6)


class _InstanceNormNet(nn.Module):
    """Starts with InstanceNorm: every output pixel depends on the whole image."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(3, affine=True)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.relu(self.conv(self.norm(x)))), 1))


@pytest.mark.filterwarnings("ignore:ONNX export mode is set to TrainingMode.EVAL:UserWarning")
def test_unsupported_graph_falls_back_and_answers(core, caplog):
    torch.manual_seed(0)
    net = _InstanceNormNet().eval()
    with torch.no_grad():
        net.norm.weight.uniform_(0.5, 2.0)
    model = export_onnx(net, torch.zeros(1, 3, 24, 24), exporter="torchscript")
    record = _upload(core, model)
    x = random_input((1, 3, 24, 24), seed=1)
    with caplog.at_level(logging.INFO, logger="convscope.methods.occlusion"):
        result, _ = _run(core, record, x, window=(6, 6), stride=(3, 3), fill=0.0, score="raw", engine="incremental")
    assert result.engine == "batched"
    assert "incremental inference not used" in caplog.text and "InstanceNormalization" in caplog.text
    loop = _loop_oracle(model, x, (6, 6), (3, 3), np.zeros(x.shape[1:], np.float32))
    np.testing.assert_allclose(result.positions[0], loop[..., result.targets[0]], rtol=1e-5, atol=1e-6)


def test_no_saving_falls_back(core, caplog):
    """A box as large as the image changes every activation: nothing to save."""
    record = _upload(core, exported("ResNetStyle", "torchscript"))
    x = random_input((1, 3, 32, 32), seed=1)
    with caplog.at_level(logging.INFO, logger="convscope.methods.occlusion"):
        result, _ = _run(core, record, x, window=(32, 32), stride=(1, 1), engine="auto")
    assert result.engine == "batched"
    assert result.positions.shape == (1, 1, 1)
    assert "would save nothing" in caplog.text


def test_nhwc_model_occludes_height_and_width(core, caplog):
    """An NHWC model (Transpose first): the box moves over axes 1 and 2, the attribution keeps
    the input's layout, and the incremental engine steps aside."""
    rng = np.random.default_rng(9)
    conv, weights = _conv("conv", "chw", 3, 4, 3, rng, pads=[1, 1, 1, 1])
    graph = helper.make_graph(
        [
            helper.make_node("Transpose", ["x"], ["chw"], perm=[0, 3, 1, 2]),
            conv,
            helper.make_node("Relu", ["conv"], ["relu"]),
            helper.make_node("GlobalAveragePool", ["relu"], ["gap"]),
            helper.make_node("Flatten", ["gap"], ["out"]),
        ],
        "nhwc",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16, 12, 3])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 4])],
        initializer=weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    record = core.upload([("", model.SerializeToString())], preprocessing=Preprocessing(layout="NHWC", size=(16, 12)))
    x = random_input((1, 16, 12, 3), seed=3)
    with caplog.at_level(logging.INFO, logger="convscope.methods.occlusion"):
        result, _ = _run(core, record, x, window=(4, 6), stride=(4, 3), fill=0.5, score="raw", targets=[2])
    assert result.engine == "batched" and "NHWC" in caplog.text
    assert result.attribution.shape == (1, 16, 12, 3)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = np.empty((4, 3))
    for i in range(4):
        for j in range(3):
            occluded = x.copy()
            occluded[0, i * 4 : i * 4 + 4, j * 3 : j * 3 + 6, :] = 0.5
            want[i, j] = session.run(None, {"x": occluded})[0][0, 2]
    np.testing.assert_allclose(result.positions[0], want, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- small pieces


@pytest.mark.parametrize(("size", "window", "stride"), [(32, 4, 2), (32, 6, 4), (30, 7, 7), (9, 9, 3), (224, 32, 16)])
def test_window_grid_counts_boxes_as_captum(size, window, stride):
    boxes = window_grid((size, size), (window, window), (stride, stride))
    captum_count = int(np.ceil((size - window) / stride)) + 1
    assert len(boxes.y0) == captum_count
    assert boxes.y1[-1] == size and (boxes.y1 - boxes.y0).max() == window
    if (size - window) % stride == 0:
        assert captum_count == (size - window) // stride + 1


def test_fill_mean_and_blur():
    image = random_input((3, 20, 26), seed=6)
    mean = fill_values(image, OcclusionFill.MEAN, (8, 8))
    np.testing.assert_allclose(mean, np.broadcast_to(image.mean(axis=(1, 2), keepdims=True), image.shape), rtol=1e-5, atol=1e-6)
    blur = fill_values(image, OcclusionFill.BLUR, (8, 12))
    sigma = 12 / 4
    ones = np.ones(image.shape[1:])
    for channel in range(3):
        # Normalized convolution: Gaussian filtering with zeros outside, divided by the weights inside.
        smooth = ndimage.gaussian_filter(image[channel].astype(np.float64), sigma, mode="constant", truncate=50)
        norm = ndimage.gaussian_filter(ones, sigma, mode="constant", truncate=50)
        np.testing.assert_allclose(blur[channel], smooth / norm, rtol=1e-4, atol=1e-5)


def test_invalid_requests_are_refused(core):
    record = _upload(core, exported("ResNetStyle", "torchscript"))
    x = random_input((1, 3, 32, 32), seed=1)
    bad = [
        {"window": (40, 4)},
        {"window": (4, 4), "stride": (5, 5)},
        {"targets": [10]},
        {"fill": "median"},
        {"score": "logit"},
        {"engine": "fast"},
        {"window": (0, 3)},
    ]
    for options in bad:
        with pytest.raises(InvalidArgument):
            _run(core, record, x, **options)
    with pytest.raises(InvalidArgument, match="one image at a time"):
        _run(core, record, np.concatenate([x, x]))
