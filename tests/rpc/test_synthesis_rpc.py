"""Invert, Visualize and Adversarial through the real server: progress streams, results and
their PNGs, bad input as statuses (the server keeps serving), cancellation within a step."""

from __future__ import annotations

import io
import logging
import threading

import grpc
import numpy as np
import onnx
import pytest
from PIL import Image

from convscope.limits import RequestLimits
from convscope_client import Client, ConvscopeError
from tests.conftest import CAT_PHOTO, start_server
from tests.nets import MAX_IR_VERSION, exported
from tests.oracles import random_input

EARLY = "/_blocks.1/_swish_1/Clip_output_0"


@pytest.fixture(scope="module")
def resnet(client: Client) -> str:
    return client.upload_model(exported("ResNetStyle", "torchscript").SerializeToString(), name="ResNetStyle").id


def picture(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def test_adversarial_fools_the_bundled_model_on_the_cat(client: Client, bundled_model_id: str) -> None:
    steps: list[tuple[int, int]] = []
    result = client.adversarial(
        bundled_model_id, CAT_PHOTO, method="pgd", epsilon=2 / 255, steps=3, progress=lambda s, n, _loss: steps.append((s, n))
    )
    assert steps == [(1, 3), (2, 3), (3, 3)]
    assert result.success and result.adversarial_prediction.classes[0] != result.label
    assert result.prediction.classes[0] == result.label and "cat" in result.prediction.labels[0]
    assert result.linf <= 2 / 255 + 1e-6
    assert result.image.shape == (224, 224, 3) and result.image.dtype == np.uint8
    assert np.abs(result.image.astype(int) - np.asarray(Image.open(CAT_PHOTO).convert("RGB").resize((224, 224)), int)).max() > 0
    assert picture(result.png).shape[1] > 3 * 224


def test_targeted_attack_on_an_array_respects_bounds(client: Client, resnet: str) -> None:
    x = np.clip(random_input((1, 3, 32, 32), seed=2), -1, 1)
    result = client.adversarial(resnet, x, method="pgd", epsilon=0.3, steps=20, target=3, bounds=(-1.0, 1.0))
    assert result.image is None and result.png == b""
    assert result.array.min() >= -1 and result.array.max() <= 1
    assert result.label == 3 and result.success
    assert result.linf <= 0.3 + 1e-5


def test_inversion_and_visualization_stream_and_render(client: Client, bundled_model_id: str, resnet: str) -> None:
    inversion = client.invert(bundled_model_id, CAT_PHOTO, layer=EARLY, steps=20)
    assert inversion.image.shape == (224, 224, 3) and inversion.history.shape == (20, 2)
    assert inversion.code_error < inversion.history[0, 1]
    assert picture(inversion.png).shape[1] > 2 * 224

    synthesis = client.visualize(resnet, target=[1, 2], steps=30, batch=2)
    assert synthesis.images.shape == (4, 32, 32, 3) and synthesis.targets == [1, 1, 2, 2]
    assert synthesis.score_history.shape == (30, 4)
    assert np.all(synthesis.score_history[-1] > synthesis.score_history[0])
    assert len(synthesis.probabilities) == 4 and picture(synthesis.png).ndim == 3


@pytest.mark.parametrize(
    ("call", "code", "words"),
    [
        (lambda c, m: c.adversarial(m, CAT_PHOTO, epsilon=-0.1), grpc.StatusCode.INVALID_ARGUMENT, "epsilon"),
        (lambda c, m: c.adversarial(m, CAT_PHOTO, target=1000), grpc.StatusCode.INVALID_ARGUMENT, "out of range"),
        (lambda c, m: c.invert(m, CAT_PHOTO, layer="no/such/layer"), grpc.StatusCode.NOT_FOUND, "no/such/layer"),
        (lambda c, m: c.visualize(m, target=5000), grpc.StatusCode.INVALID_ARGUMENT, "out of range"),
        (lambda c, m: c.visualize(m, steps=10**6), grpc.StatusCode.INVALID_ARGUMENT, "--max-steps"),
    ],
    ids=["negative-epsilon", "target-out-of-range", "unknown-layer", "class-out-of-range", "too-many-steps"],
)
def test_bad_input_is_refused_and_the_server_keeps_serving(client: Client, bundled_model_id: str, call, code, words) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConvscopeError) as caught:
        call(client, bundled_model_id)
    assert caught.value.code == code and words in caught.value.message
    assert client.get_model(bundled_model_id).id == bundled_model_id


def sine_net() -> bytes:
    """Conv → Sin → pooled logits: a valid model with an op that has no gradient rule."""
    weight = onnx.numpy_helper.from_array(random_input((3, 3, 3, 3), seed=4), "weight")
    graph = onnx.helper.make_graph(
        [
            onnx.helper.make_node("Conv", ["input", "weight"], ["conv"], pads=[1, 1, 1, 1]),
            onnx.helper.make_node("Sin", ["conv"], ["wave"], name="waves"),
            onnx.helper.make_node("GlobalAveragePool", ["wave"], ["pooled"]),
            onnx.helper.make_node("Flatten", ["pooled"], ["logits"]),
        ],
        "sine",
        [onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
        [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [1, 3])],
        [weight],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = MAX_IR_VERSION
    return model.SerializeToString()


def test_an_op_without_gradient_rule_is_unimplemented(client: Client) -> None:
    model = client.upload_model(sine_net(), name="sine")
    for call in (
        lambda: client.visualize(model.id, target=1, steps=2),
        lambda: client.adversarial(model.id, random_input((1, 3, 8, 8))),
    ):
        with pytest.raises(ConvscopeError) as caught:
            call()
        assert (
            caught.value.code == grpc.StatusCode.UNIMPLEMENTED
            and "'Sin'" in caught.value.message
            and "waves" in caught.value.message
        )
    assert client.get_model(model.id).id == model.id


def test_a_cancelled_call_stops_within_a_step(tmp_path, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="convscope.rpc.synthesis")
    running = start_server(tmp_path / "store", limits=RequestLimits(max_steps=100_000))
    try:
        with Client(f"127.0.0.1:{running.port}", timeout=60) as client:
            model = client.upload_model(exported("ResNetStyle", "torchscript").SerializeToString())
            seen: list[int] = []

            def stop_after_three(step: int, _steps: int, _loss: float) -> None:
                seen.append(step)
                if step == 3:
                    raise KeyboardInterrupt

            with pytest.raises(KeyboardInterrupt):
                client.visualize(model.id, steps=100_000, progress=stop_after_three)
            assert seen == [1, 2, 3]
            assert client.get_model(model.id).id == model.id
            for _ in range(100):  # the server notices at its next step
                if "visualization stopped after" in caplog.text:
                    break
                threading.Event().wait(0.05)
            assert "visualization stopped after" in caplog.text, "the server kept optimizing a cancelled call"
    finally:
        running.stop(grace=1)


def test_correspondence_finds_a_shifted_cat_and_draws_lines(client: Client, bundled_model_id: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    shifted = tmp_path / "shifted.png"
    photo = np.asarray(Image.open(CAT_PHOTO).convert("RGB"))
    Image.fromarray(np.roll(photo, 24, axis=1)).save(shifted)
    width = photo.shape[1]
    layers = ["/_blocks.5/_swish/Clip_output_0", "/_blocks.8/_swish_1/Clip_output_0"]
    points = np.array([[100.0, 120.0], [200.0, 300.0]])
    single = client.correspondence(bundled_model_id, CAT_PHOTO, shifted, layer=layers[1], points=points)
    both = client.correspondence(bundled_model_id, CAT_PHOTO, shifted, layer=layers, hypercolumn=True)
    assert single.matches.shape == (2, 2) and np.all((-1 <= single.similarity) & (single.similarity <= 1))
    np.testing.assert_allclose(single.points, points)
    assert both.points.shape == (144, 2) and both.layers == layers
    truth = both.points + [0, 24]
    assert np.median(np.linalg.norm(both.matches - truth, axis=1)) < 0.05 * width
    assert picture(both.png).shape[1] > 2 * 224
    with pytest.raises(ConvscopeError) as caught:
        client.correspondence(bundled_model_id, CAT_PHOTO, shifted, layer=layers)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT and "hypercolumn" in caught.value.message
    with pytest.raises(ConvscopeError) as caught:
        client.correspondence(bundled_model_id, CAT_PHOTO, shifted, layer="logits")
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT and "feature map" in caught.value.message


def test_low_norm_pixels_are_clipped_to_grey(client: Client, resnet: str) -> None:
    plain = client.visualize(resnet, target=1, steps=5)
    clipped = client.visualize(resnet, target=1, steps=5, norm_percentile=50)

    def grey_share(images: np.ndarray) -> float:
        return float(np.mean(np.all(images == 128, axis=-1)))

    assert grey_share(clipped.images) >= 0.45 and grey_share(plain.images) < 0.05
