"""Attribution and ExportBackward end to end: the real server on port 0, the real client.

Every method once on a small net (ResNetStyle, TorchScript export): the map's shape, the target
defaulting to each sample's top class, the score equal to the model's output there, a PNG.
Then a neuron-level map (``output`` = an intermediate tensor, ``target`` = a flat index) against
a torch hook, an image input with labels, the error statuses (an op without a gradient rule on
the path, bad targets, unknown method, unknown Grad-CAM layer), and the exported backward model
run by plain onnxruntime.  Gradients are compared per sample with relative L2 ≤ 1e-2 and
cosine ≥ 0.999 (ARCHITECTURE.md); scores and forward values within 1e-4 of the largest one.
"""

from __future__ import annotations

import json

import grpc
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from convscope_client import ConvscopeError
from tests.conftest import CAT_PHOTO
from tests.nets import NETS, exported, reference_net
from tests.oracles import assert_forward_close, assert_gradients_close, one_hot, random_input, torch_gradients

NAME = "ResNetStyle"
INPUT_SHAPE = NETS[NAME].input_shape  # (3, 32, 32)
BATCH = 2
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Neuron-level target: a unit of the first residual stage's output (nn.Module ``layer1``).
LAYER1_NODE = "/layer1/relu2/Relu"

# method → (map shape per sample, extra request options); options kept small for speed.
METHODS: dict[str, tuple[tuple[int, ...], dict[str, object]]] = {
    "gradient": (INPUT_SHAPE, {}),
    "saliency": (INPUT_SHAPE[1:], {}),
    "input_x_gradient": (INPUT_SHAPE, {}),
    "deconvnet": (INPUT_SHAPE, {}),
    "guided_backprop": (INPUT_SHAPE, {}),
    "grad_cam": (INPUT_SHAPE[1:], {}),
    "guided_grad_cam": (INPUT_SHAPE, {}),
    "integrated_gradients": (INPUT_SHAPE, {"steps": 8}),
    "smoothgrad": (INPUT_SHAPE, {"samples": 4}),
}


@pytest.fixture(scope="module")
def model_id(client) -> str:  # type: ignore[no-untyped-def]
    return client.upload_model(exported(NAME, "torchscript").SerializeToString(), name=NAME).id


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    return random_input((BATCH, *INPUT_SHAPE), seed=31)


def _logits(client, model_id: str, x: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    return client.activations(model_id, x, layers=["output"])["output"]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_each_method_end_to_end(client, model_id: str, batch: np.ndarray, method: str) -> None:  # type: ignore[no-untyped-def]
    shape, options = METHODS[method]
    logits = _logits(client, model_id, batch)
    got = client.attribution(model_id, batch, method=method, **options)

    assert got.method == method and got.output == "output"
    assert got.map.shape == (BATCH, *shape) and got.map.dtype == np.float32
    assert np.all(np.isfinite(got.map)) and np.any(got.map != 0), f"{method}: empty or non-finite map"
    top = logits.argmax(axis=1).tolist()
    assert got.target == top, "the target defaults to each sample's top-scoring entry"
    assert_forward_close(np.asarray(got.score), logits[np.arange(BATCH), top], what=f"{method} score")
    assert got.png.startswith(PNG_MAGIC)
    if method in ("grad_cam", "guided_grad_cam"):
        assert got.layer == "/layer2/relu2/Relu_output_0", "default Grad-CAM layer: the last spatial feature map"
        assert got.layer_map is not None and got.layer_map.shape == (BATCH, 8, 8)
        assert np.all(got.layer_map >= 0)
    else:
        assert got.layer_map is None


@pytest.mark.parametrize("method", ["gradient", "guided_grad_cam"])
def test_the_default_target_found_in_the_backward_run_is_the_explicit_top_target(
    client, model_id: str, batch: np.ndarray, method: str
) -> None:  # type: ignore[no-untyped-def]
    """Single-run methods pick the top entry inside the backward graph (ArgMax + OneHot, no
    forward pass of their own): the same target and the same map as asking for it by name."""
    for sample in batch:
        x = sample[None]
        default = client.attribution(model_id, x, method=method, render=False)
        top = int(_logits(client, model_id, x)[0].argmax())
        explicit = client.attribution(model_id, x, method=method, target=top, render=False)
        assert default.target == explicit.target == top  # one sample: a plain int
        assert np.array_equal(default.map, explicit.map) and default.score == explicit.score

    # A hidden layer's top unit too (neuron-level maps).
    layer = next(l.tensor for l in client.get_model(model_id).layers if l.name == LAYER1_NODE)
    values = client.activations(model_id, batch[:1], layers=[layer])[layer].reshape(-1)
    hidden = client.attribution(model_id, batch[:1], method=method, output=layer, render=False)
    assert hidden.target == int(values.argmax())
    assert_forward_close(np.asarray(hidden.score), values[[int(values.argmax())]], what="top hidden unit")


def test_explicit_target_and_layer(client, model_id: str, batch: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    """An explicit class and an explicit Grad-CAM layer are used as given; the gradient for
    that class equals torch's."""
    logits = _logits(client, model_id, batch)
    target = int(logits[0].argmin())
    got = client.attribution(model_id, batch, method="gradient", target=target, render=False)
    assert got.target == [target] * BATCH and got.png == b""
    want = torch_gradients(reference_net(NAME), batch, one_hot([target] * BATCH, logits.shape[1]))
    assert_gradients_close(got.map, want.input_grad, what="gradient for an explicit class")

    layer = next(l.tensor for l in client.get_model(model_id).layers if l.name == LAYER1_NODE)
    cam = client.attribution(model_id, batch, method="grad_cam", layer=layer)
    assert cam.layer == layer and cam.layer_map is not None and cam.layer_map.shape == (BATCH, 16, 16)
    assert cam.map.shape == (BATCH, *INPUT_SHAPE[1:])


def test_target_on_an_intermediate_tensor(client, model_id: str, batch: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    """``output`` = a layer's tensor and ``target`` = a flat index: the gradient of that unit."""
    layer = next(l for l in client.get_model(model_id).layers if l.name == LAYER1_NODE)
    values = client.activations(model_id, batch, layers=[layer.tensor])[layer.tensor].reshape(BATCH, -1)
    unit = int(values.min(axis=0).argmax())  # a unit active in both samples (else its gradient is 0)
    assert values[:, unit].min() > 0

    got = client.attribution(model_id, batch, method="gradient", output=layer.tensor, target=unit)
    assert got.output == layer.tensor and got.target == [unit, unit]
    assert_forward_close(np.asarray(got.score), values[:, unit], what="unit's activation")

    net = reference_net(NAME)
    captured: list[torch.Tensor] = []
    handle = net.layer1.register_forward_hook(lambda _m, _a, out: captured.append(out))
    try:
        x = torch.from_numpy(batch).requires_grad_(True)
        net(x)
        (want,) = torch.autograd.grad(captured[0].flatten(1)[:, unit].sum(), x)
    finally:
        handle.remove()
    assert_forward_close(captured[0].flatten(1)[:, unit].detach().numpy(), values[:, unit], what="torch unit")
    assert_gradients_close(got.map, want.numpy(), what=f"d {layer.tensor}[{unit}] / d input")


def test_image_input_with_labels(client) -> None:  # type: ignore[no-untyped-def]
    """An encoded image preprocessed by the model's metadata; labels name the target; the PNG
    is the map over the picture."""
    model = exported(NAME, "torchscript")
    labels = [f"class {i}" for i in range(NETS[NAME].num_classes)]
    preprocessing = {"size": [32, 32], "mean": [0.5] * 3, "std": [0.25] * 3}
    onnx.helper.set_model_props(
        model, {"convscope.preprocessing": json.dumps(preprocessing), "convscope.labels": json.dumps(labels)}
    )
    info = client.upload_model(model.SerializeToString(), name="resnet-with-metadata")

    got = client.attribution(info.id, CAT_PHOTO, method="guided_backprop")
    assert got.map.shape == (1, *INPUT_SHAPE)
    assert isinstance(got.target, int) and got.target_label == labels[got.target]
    assert got.png.startswith(PNG_MAGIC)


# -- errors ---------------------------------------------------------------------------------


def _crnn_with_lstm() -> onnx.ModelProto:
    """A tiny CRNN: Conv → Relu → Reshape to [N, 4, 64] → (time-major) LSTM → Gemm.

    onnxruntime runs LSTM only time-major (``layout=0``), hence the Transposes around it.

    The LSTM lies on the path from the input to the logits; the Conv/Relu do not depend on it.
    """
    rng = np.random.default_rng(0)

    def weight(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array((0.3 * rng.standard_normal(shape)).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["image", "conv_w", "conv_b"], ["conv"], name="stem/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["features"], name="stem/Relu"),
        helper.make_node("Reshape", ["features", "sequence_shape"], ["sequence"], name="rnn/Reshape"),
        helper.make_node("Transpose", ["sequence"], ["time_major"], name="rnn/Transpose", perm=[1, 0, 2]),
        helper.make_node("LSTM", ["time_major", "lstm_w", "lstm_r", "lstm_b"], ["hidden"], name="rnn/LSTM", hidden_size=6),
        helper.make_node("Transpose", ["hidden"], ["batch_major"], name="head/Transpose", perm=[2, 0, 1, 3]),
        helper.make_node("Flatten", ["batch_major"], ["flat"], name="head/Flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="head/Gemm", transB=1),
    ]
    initializers = [
        weight("conv_w", 4, 3, 3, 3),
        weight("conv_b", 4),
        numpy_helper.from_array(np.array([0, 4, 64], np.int64), "sequence_shape"),
        weight("lstm_w", 1, 24, 64),
        weight("lstm_r", 1, 24, 6),
        weight("lstm_b", 1, 48),
        weight("fc_w", 10, 24),
        weight("fc_b", 10),
    ]
    graph = helper.make_graph(
        nodes,
        "crnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def _status(call) -> ConvscopeError:  # type: ignore[no-untyped-def]
    with pytest.raises(ConvscopeError) as caught:
        call()
    return caught.value


def test_op_without_a_rule_is_unimplemented_and_names_it(client) -> None:  # type: ignore[no-untyped-def]
    model = _crnn_with_lstm()
    info = client.upload_model(model.SerializeToString(), name="crnn")  # uploading is fine
    x = random_input((1, 3, 8, 8), seed=2)
    logits = client.activations(info.id, x, layers=["logits"])["logits"]
    assert logits.shape == (1, 10)

    for method in ("gradient", "integrated_gradients"):
        error = _status(lambda: client.attribution(info.id, x, method=method, steps=4))
        assert error.code == grpc.StatusCode.UNIMPLEMENTED, error
        assert "LSTM" in error.message and "rnn/LSTM" in error.message, error.message

    error = _status(lambda: client.export_backward(info.id, seeds=["logits"]))
    assert error.code == grpc.StatusCode.UNIMPLEMENTED and "rnn/LSTM" in error.message, error

    # Below the LSTM every op has a rule: a unit of the Relu output still has its gradient.
    values = client.activations(info.id, x, layers=["features"])["features"].reshape(-1)
    unit = int(values.argmax())
    got = client.attribution(info.id, x, method="gradient", output="features", target=unit)
    assert got.map.shape == (1, 3, 8, 8) and np.any(got.map != 0)
    assert_forward_close(np.asarray([got.score]), values[[unit]], what="relu unit")


@pytest.mark.parametrize(
    ("request_options", "status", "words"),
    [
        ({"method": "gradient", "target": 10}, grpc.StatusCode.INVALID_ARGUMENT, ("target 10", "out of range")),
        ({"method": "gradient", "target": -1}, grpc.StatusCode.INVALID_ARGUMENT, ("target -1",)),
        ({"method": "gradient", "output": "output", "target": 1 << 40}, grpc.StatusCode.INVALID_ARGUMENT, ("out of range",)),
        ({"method": "shap"}, grpc.StatusCode.INVALID_ARGUMENT, ("unknown method", "'shap'")),
        ({"method": "grad_cam", "layer": "no/such/layer"}, grpc.StatusCode.NOT_FOUND, ("no/such/layer",)),
        ({"method": "gradient", "output": "no_such_tensor"}, grpc.StatusCode.NOT_FOUND, ("no_such_tensor",)),
        ({"method": "integrated_gradients", "steps": 100_000}, grpc.StatusCode.INVALID_ARGUMENT, ("steps",)),
        ({"method": "integrated_gradients", "integration": "simpson"}, grpc.StatusCode.INVALID_ARGUMENT, ("integration",)),
        (
            {"method": "integrated_gradients", "integration": "riemann_trapezoid", "steps": 1},
            grpc.StatusCode.INVALID_ARGUMENT,
            ("2 steps",),
        ),
        ({"method": "smoothgrad", "noise": -1.0}, grpc.StatusCode.INVALID_ARGUMENT, ("noise",)),
        (
            {"method": "integrated_gradients", "baseline": np.zeros((5, 5), np.float32)},
            grpc.StatusCode.INVALID_ARGUMENT,
            ("baseline",),
        ),
    ],
    ids=[
        "target-past-end",
        "target-negative",
        "target-huge",
        "unknown-method",
        "unknown-layer",
        "unknown-output",
        "too-many-steps",
        "unknown-rule",
        "riemann-one-step",
        "negative-noise",
        "baseline-shape",
    ],
)
def test_bad_requests_get_their_status(client, model_id: str, batch: np.ndarray, request_options, status, words) -> None:  # type: ignore[no-untyped-def]
    error = _status(lambda: client.attribution(model_id, batch, **request_options))
    assert error.code == status, error
    for word in words:
        assert word in error.message, error.message
    # The server keeps serving.
    assert client.attribution(model_id, batch[:1], method="saliency", render=False).map.shape == (1, 32, 32)


def test_export_backward_runs_in_plain_onnxruntime(client, model_id: str, batch: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    """The exported model, fed the input and a one-hot seed, gives the gradient the service gives."""
    data = client.export_backward(model_id, seeds=["output"])
    model = onnx.load_from_string(data)
    onnx.checker.check_model(model)
    assert {o.domain for o in model.opset_import} <= {"", "ai.onnx"}
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    assert {i.name for i in session.get_inputs()} == {"input", "output__seed"}

    logits = _logits(client, model_id, batch)
    target = logits.argmax(axis=1)
    grad, kept = session.run(["input__grad", "output"], {"input": batch, "output__seed": one_hot(target, logits.shape[1])})
    assert_forward_close(kept, logits, what="exported model's forward")
    want = client.attribution(model_id, batch, method="gradient", render=False)
    assert want.target == target.tolist()
    assert_gradients_close(grad, want.map, what="exported backward vs attribution(gradient)")
    np.testing.assert_allclose(grad, want.map, rtol=1e-4, atol=1e-5 * float(np.abs(want.map).max()))

    guided = ort.InferenceSession(
        client.export_backward(model_id, seeds=["output"], rectifier="guided"), providers=["CPUExecutionProvider"]
    )
    (guided_grad,) = guided.run(["input__grad"], {"input": batch, "output__seed": one_hot(target, logits.shape[1])})
    via_service = client.attribution(model_id, batch, method="guided_backprop", render=False).map
    assert_gradients_close(guided_grad, via_service, what="exported guided backward vs guided_backprop")


@pytest.mark.parametrize("call", ["attribution", "export_backward"])
def test_an_unknown_rectifiers_scope_is_refused_before_the_call(client, model_id: str, batch: np.ndarray, call: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="rectifiers must be 'all' or 'relu'"):
        if call == "attribution":
            client.attribution(model_id, batch, method="guided_backprop", rectifiers="everything")
        else:
            client.export_backward(model_id, rectifiers="everything")
