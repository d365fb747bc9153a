"""Occlusion of models with several inputs: the box slides over one input (the image by
default, or the one ``occluded`` names) while the others are fed as given; the scores equal a
loop of onnxruntime runs on the unmodified model, one occluded copy per run."""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Mapping

import grpc
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from convscope.core import Convscope
from convscope.errors import InvalidArgument
from convscope.methods.occlusion import OcclusionOptions, OcclusionResult
from convscope_client import Client, ConvscopeError
from tests.dynamic_nets import initialized
from tests.methods.test_several_inputs import ScaledClassifier, exported
from tests.oracles import random_input

WINDOW, STRIDE, FILL = (5, 6), (3, 4), 0.3


class TwoViews(nn.Module):
    """Two images of one scene (a photo and a guide map, as depth-guided nets take them): each
    through its own conv, summed, classified."""

    def __init__(self) -> None:
        super().__init__()
        self.photo = nn.Conv2d(3, 5, 3, 1, 1)
        self.guide = nn.Conv2d(1, 5, 3, 1, 1)
        self.classes = nn.Conv2d(5, 3, 1)

    def forward(self, photo: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        return self.classes(torch.relu(self.photo(photo) + self.guide(guide))).mean(dim=(2, 3))


def two_views_exported(module: nn.Module) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.zeros(1, 3, 16, 16), torch.zeros(1, 1, 16, 16)),
            buffer,
            dynamo=False,
            opset_version=17,
            input_names=["photo", "guide"],
            output_names=["logits"],
            dynamic_axes={name: {0: "N", 2: "H", 3: "W"} for name in ("photo", "guide")},
        )
    model = onnx.load_from_string(buffer.getvalue())
    model.ir_version = min(model.ir_version, 13)
    return model.SerializeToString()


def loop_oracle(data: bytes, feeds: Mapping[str, np.ndarray], occluded: str) -> tuple[np.ndarray, np.ndarray]:
    """(unoccluded logits [classes], logits per box position [Ho, Wo, classes]): one onnxruntime
    run of the unmodified model per occluded copy of ``feeds[occluded]``, boxes as Captum places
    them (the last clipped at the border)."""
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    height, width = feeds[occluded].shape[2:]
    rows = range(0, height - WINDOW[0] + STRIDE[0], STRIDE[0])
    cols = range(0, width - WINDOW[1] + STRIDE[1], STRIDE[1])
    out = np.empty((len(rows), len(cols), session.get_outputs()[0].shape[-1]), np.float64)
    for i, y in enumerate(rows):
        for j, x in enumerate(cols):
            copy = feeds[occluded].copy()
            copy[0, :, y : y + WINDOW[0], x : x + WINDOW[1]] = FILL
            out[i, j] = session.run(None, {**feeds, occluded: copy})[0][0]
    return session.run(None, dict(feeds))[0][0].astype(np.float64), out


def softmax(values: np.ndarray) -> np.ndarray:
    shifted = np.exp(values - values.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def occluded_in_core(core: Convscope, record_id: str, model_input, **options: object) -> OcclusionResult:
    events = list(
        core.occlusion(record_id, model_input, OcclusionOptions.parse(window=WINDOW, stride=STRIDE, fill=FILL, **options))
    )
    result = events[-1]
    assert isinstance(result, OcclusionResult)
    return result


def assert_matches_loop(
    positions: np.ndarray, baseline: np.ndarray, targets: list[int], reference: np.ndarray, loop: np.ndarray
) -> None:
    assert positions.shape == (len(targets), *loop.shape[:2])
    for row, target in enumerate(targets):
        np.testing.assert_allclose(positions[row], loop[..., target], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(baseline[row], reference[target], rtol=1e-5)


@pytest.mark.parametrize("engine", ["auto", "batched", "incremental"])
def test_occlusion_feeds_the_scale_factor_with_every_occluded_copy(
    core: Convscope, engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    data = exported(initialized(ScaledClassifier(), seed=11))
    record = core.upload([("", data)])
    x, scale = random_input((1, 3, 19, 22), seed=3), np.array([[1.7]], np.float32)  # not the probe's size
    model_input = core.prepare(record, tensor=x, others={"scale": scale})
    reference, loop = loop_oracle(data, {"image": x, "scale": scale}, "image")
    with caplog.at_level(logging.INFO, logger="convscope.methods.occlusion"):
        raw = occluded_in_core(core, record.id, model_input, targets=[0, 2], score="raw", engine=engine, batch_size=4)
    assert raw.engine == "batched"
    if engine != "batched":
        # Models with several inputs run one sample at a time, so without the incremental engine.
        assert "incremental inference not used: the model's batch dimension is fixed" in caplog.text
    assert_matches_loop(raw.positions, raw.baseline_scores, [0, 2], reference, loop)
    probability = occluded_in_core(core, record.id, model_input, engine=engine)
    top = int(np.argmax(reference))
    assert probability.targets == (top,)
    assert_matches_loop(probability.positions, probability.baseline_scores, [top], softmax(reference), softmax(loop))


def test_occluded_names_another_image_input(core: Convscope) -> None:
    data = two_views_exported(initialized(TwoViews(), seed=12))
    record = core.upload([("", data)])
    feeds = {"photo": random_input((1, 3, 16, 20), seed=5), "guide": random_input((1, 1, 16, 20), seed=6)}
    model_input = core.prepare(record, tensor=feeds["photo"], others={"guide": feeds["guide"]})
    for occluded in ("photo", "guide"):
        reference, loop = loop_oracle(data, feeds, occluded)
        result = occluded_in_core(core, record.id, model_input, targets=[1], score="raw", occluded=occluded)
        assert_matches_loop(result.positions, result.baseline_scores, [1], reference, loop)
        assert result.attribution.shape == (1, *feeds[occluded].shape[1:])
    with pytest.raises(InvalidArgument, match=r"'depth' is none of the model's inputs \['photo', 'guide'\]"):
        occluded_in_core(core, record.id, model_input, occluded="depth")


def test_client_occludes_a_two_input_model(client: Client) -> None:
    data = exported(initialized(ScaledClassifier(), seed=13))
    info = client.upload_model(data)
    x, scale = random_input((1, 3, 16, 16), seed=7), np.array([[0.8]], np.float32)
    reference, loop = loop_oracle(data, {"image": x, "scale": scale}, "image")
    result = client.occlusion(
        info.id, {"image": x, "scale": scale}, target=[1, 3], window=WINDOW, stride=STRIDE, fill=FILL, score="raw"
    )
    assert_matches_loop(result.positions, np.asarray(result.baseline_score), [1, 3], reference, loop)
    with pytest.raises(ConvscopeError) as raised:  # the scale is no image to slide a box over
        client.occlusion(info.id, {"image": x, "scale": scale}, occluded="scale")
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT and "'scale' has shape [1, 1]" in raised.value.message
    with pytest.raises(ConvscopeError) as raised:
        client.occlusion(info.id, x)
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT and "'scale'" in raised.value.message
