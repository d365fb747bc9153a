"""The incremental-inference passes on their own: early_path, plan_stage, stage_model, tail_model.

Oracle: the full model's activations.  For every cut of a model, a stage from the input (and from
the previous cut) to that cut is planned for a small region, and the stage model, fed the crop of
the true source tensor the plan places (it pads as the graph's own ops do), must return exactly
the target's activations in the plan's exact window — at the top-left corner, inside, and at the
bottom-right corner, where the crop meets the tensor's edge.  The tail model from a cut must
give the model's output from the cut's activation.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from convscope.graph.analysis import data_tensors
from convscope.graph.dynamic_batch import make_batch_dynamic
from convscope.graph.expose import expose
from convscope.graph.incremental.paths import changed_interval, early_path
from convscope.graph.incremental.stages import StagePlan, plan_stage
from convscope.graph.incremental.submodels import stage_model, tail_model
from tests.methods.test_occlusion import geometry_model
from tests.nets import exported
from tests.oracles import random_input

MODELS = {
    "geometry": (geometry_model, (3, 30, 30)),
    "ResNetStyle": (lambda: exported("ResNetStyle", "torchscript"), (3, 32, 32)),
    "DepthwiseReLU6Net": (lambda: exported("DepthwiseReLU6Net", "dynamo"), (3, 32, 32)),
    "SqueezeNetStyle": (lambda: exported("SqueezeNetStyle", "torchscript"), (3, 32, 32)),
}


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _activations(model: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    names = data_tensors(model.graph)
    session = _session(expose(model, names))
    values = dict(zip(names, session.run(names, {session.get_inputs()[0].name: x})))
    values[session.get_inputs()[0].name] = x
    return values


def _run_stage(model: onnx.ModelProto, plan: StagePlan, source: np.ndarray, start: tuple[int, int]) -> np.ndarray:
    """The stage on the crop of the true ``source`` [1, C, H, W] at ``start``."""
    (h, w), (y, x) = plan.source_size, start
    crop = np.ascontiguousarray(source[:, :, y : y + h, x : x + w])
    return _session(stage_model(model, plan)).run(None, {plan.source: crop})[0]


@pytest.mark.parametrize("name", list(MODELS))
def test_every_cut_recomputes_its_region_exactly(name):
    """Changed regions of 3 × 2 at the top-left corner, inside, and the bottom-right corner of
    every cut: the planned crops must make each exact."""
    build, shape = MODELS[name]
    model = make_batch_dynamic(build())
    x = random_input((1, *shape), seed=5)
    values = _activations(model, x)
    input_name = model.graph.input[0].name
    output = model.graph.output[0].name
    path = early_path(model, input_name, output, {k: v.shape for k, v in values.items()})
    assert len(path.cuts) >= 2, path.stop
    previous = input_name
    for cut in path.cuts:
        height, width = path.sizes[cut]
        size = (min(3, height), min(2, width))
        lo_y = np.array([0, max(0, height // 2 - 1), height - size[0]])
        lo_x = np.array([0, width // 2, width - size[1]])
        changed = ((lo_y, lo_y + size[0]), (lo_x, lo_x + size[1]))
        for source in {input_name, previous}:
            plan, (rows, cols) = plan_stage(path, source, cut, changed)
            for k in range(3):
                got = _run_stage(model, plan, values[source], (int(rows.start[k]), int(cols.start[k])))
                assert got.shape[2:] == plan.target_size
                top, left = rows.start[k] // plan.stride[0], cols.start[k] // plan.stride[1]
                wy, wx = rows.window[k], cols.window[k]
                assert wy <= lo_y[k] and lo_y[k] + size[0] <= wy + plan.window[0]
                got = got[:, :, wy - top : wy - top + plan.window[0], wx - left : wx - left + plan.window[1]]
                want = values[cut][:, :, wy : wy + plan.window[0], wx : wx + plan.window[1]]
                np.testing.assert_allclose(
                    got, want, rtol=1e-5, atol=1e-5 * np.abs(values[cut]).max(), err_msg=f"{cut} from {source} at {k}"
                )
        channels = values[cut].shape[1]
        tail = _session(tail_model(model, cut, output, (channels, height, width)))
        np.testing.assert_allclose(tail.run(None, {cut: values[cut]})[0], values[output], rtol=1e-5, atol=1e-6)
        previous = cut


def test_changed_interval_follows_stride_and_padding():
    """Conv 3×3, stride 2, SAME_UPPER (pads 0 before, 1 after): input rows [lo, hi) change
    outputs ⌈(lo − 2)/2⌉ … ⌊(hi − 1)/2⌋."""
    model = make_batch_dynamic(geometry_model())
    values = _activations(model, random_input((1, 3, 30, 30), seed=1))
    path = early_path(model, "x", "out", {k: v.shape for k, v in values.items()})
    lo, hi = np.array([0, 5, 28]), np.array([4, 9, 30])
    c1_lo, c1_hi = changed_interval(path, 0, lo, hi)["c1"]  # SAME_UPPER: pads 0 before, 1 after
    np.testing.assert_array_equal(c1_lo, [0, 2, 13])
    np.testing.assert_array_equal(c1_hi, [2, 5, 15])
