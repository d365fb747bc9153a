"""Explanation checks against their oracles: the published sanity-check outcome on a ReLU net,
scikit-image's SSIM, torch's initialization bounds, and deletion/insertion AUC from a direct
loop of onnxruntime runs."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from scipy import ndimage
from skimage.metrics import structural_similarity

from convscope.audit import checks, config, sanity
from convscope.audit.dataset import read_dataset
from convscope.audit.randomize import layers_from_top, randomized
from convscope.core import Convscope
from convscope.methods.faithfulness import curves
from convscope_client import Client, ConvscopeError
from tests.audit.conftest import DIGITS_MODEL
from tests.digits import digits, tensors


@pytest.fixture(scope="module")
def digits_core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Convscope, str]]:
    core = Convscope(tmp_path_factory.mktemp("store"))
    yield core, core.upload([("", DIGITS_MODEL.read_bytes())]).id
    core.close()


def test_gradient_passes_and_guided_backprop_fails_on_a_relu_net(digits_core: tuple[Convscope, str], digits_folder: Path) -> None:
    core, model_id = digits_core
    record = core.model(model_id)
    items = read_dataset(digits_folder, record.labels, 10)
    predicted = np.array([item.label for item in items])  # the class each map explains; any fixed choice works
    settings = config.resolve()["explanation_sanity"]
    pictures = dict(enumerate(core.prepare(record, images=[item.path.read_bytes() for item in items]).pictures))
    outcome = checks.explanation_sanity(core, record, pictures, predicted, settings)
    means = outcome.figures["mean_rank_correlation"]
    assert means["gradient"] < 0.5 <= means["guided_backprop"], means  # Adebayo et al. 2018, Fig. 2
    assert outcome.status == "failed" and "guided_backprop" in outcome.message and "gradient:" not in outcome.message
    cascade = outcome.figures["cascade"]["guided_backprop"]
    assert [step["randomized_layers"] for step in cascade] == [1, 2, 3, 4, 5]
    assert cascade[0]["spearman"] > 0.8  # randomizing the classifier alone leaves guided backprop's maps almost as they were


def test_the_cascade_is_bounded_by_cascade_steps(digits_core: tuple[Convscope, str], digits_folder: Path) -> None:
    assert sanity.cascade_counts(5, 8) == [1, 2, 3, 4, 5]
    assert sanity.cascade_counts(66, 8) == [
        1,
        10,
        20,
        29,
        38,
        47,
        57,
        66,
    ]  # evenly spaced, the top layer and all of them included
    assert sanity.cascade_counts(66, 1) == [1]
    with pytest.raises(config.ConfigError, match="cascade_steps must be at least 1"):
        config.resolve({"explanation_sanity": {"cascade_steps": 0}})
    core, model_id = digits_core
    record = core.model(model_id)
    items = read_dataset(digits_folder, record.labels, 10)[:8]
    pictures = dict(enumerate(core.prepare(record, images=[item.path.read_bytes() for item in items]).pictures))
    settings = config.resolve({"explanation_sanity": {"methods": ["gradient"], "cascade_steps": 2}})["explanation_sanity"]
    outcome = checks.explanation_sanity(core, record, pictures, np.array([item.label for item in items]), settings)
    steps = outcome.figures["cascade"]["gradient"]
    assert [(step["randomized_layers"], step["top_layer"]) for step in steps] == [
        (1, "/classifier/Gemm"),
        (5, "/features/features.0/Conv"),
    ]


def test_ssim_matches_scikit_image() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((24, 20))
    b = np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1)
    expected = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
    assert sanity.ssim(a, b) == pytest.approx(expected, abs=1e-9)


def test_randomization_draws_like_torch_reset_parameters() -> None:
    model = onnx.load(str(DIGITS_MODEL))
    top = layers_from_top(model)
    assert top == [
        "/classifier/Gemm",
        "/code/code.0/Gemm",
        "/features/features.6/Conv",
        "/features/features.3/Conv",
        "/features/features.0/Conv",
    ]
    changed = randomized(model, 2, seed=1)
    before = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    after = {i.name: numpy_helper.to_array(i) for i in changed.graph.initializer}
    twins = {"classifier": torch.nn.Linear(64, 10), "code.0": torch.nn.Linear(32, 64)}
    for prefix, twin in twins.items():
        fan_in, _ = torch.nn.init._calculate_fan_in_and_fan_out(twin.weight)
        bound = 1 / math.sqrt(fan_in)
        assert torch.nn.init.calculate_gain("leaky_relu", math.sqrt(5)) * math.sqrt(3 / fan_in) == pytest.approx(bound)
        for name in (f"{prefix}.weight", f"{prefix}.bias"):
            assert np.abs(after[name]).max() <= bound and not np.array_equal(after[name], before[name])
            assert after[name].std() == pytest.approx(bound / math.sqrt(3), rel=0.35)
    for name in ("features.0.weight", "features.3.bias", "features.6.weight"):
        np.testing.assert_array_equal(after[name], before[name])


def test_batch_norm_is_reset_to_identity_with_its_statistics_kept() -> None:
    arrays = {
        "scale": np.full(3, 2.0, np.float32),
        "bias": np.full(3, 0.5, np.float32),
        "mean": np.arange(3, dtype=np.float32),
        "var": np.full(3, 4.0, np.float32),
    }
    node = helper.make_node("BatchNormalization", ["x", *arrays], ["y"], name="bn")
    graph = helper.make_graph(
        [node],
        "bn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 2, 2])],
        [numpy_helper.from_array(value, name) for name, value in arrays.items()],
    )
    after = {i.name: numpy_helper.to_array(i) for i in randomized(helper.make_model(graph), 1).graph.initializer}
    assert after["scale"].tolist() == [1, 1, 1] and after["bias"].tolist() == [0, 0, 0]
    assert after["mean"].tolist() == [0, 1, 2] and after["var"].tolist() == [4, 4, 4]


def direct_auc(
    session: ort.InferenceSession,
    image: np.ndarray,
    order: np.ndarray,
    target: int,
    start: np.ndarray,
    end: np.ndarray,
    step: int,
) -> float:
    """One onnxruntime run per step, the image rebuilt from scratch each time."""
    pixels = order.size
    scores = []
    for count in [*range(0, pixels, step), pixels]:
        current = start.copy()
        rows, cols = np.unravel_index(order[:count], image.shape[1:])
        current[:, rows, cols] = end[:, rows, cols]
        logits = session.run(None, {"input": current[None]})[0][0].astype(np.float64)
        probabilities = np.exp(logits - logits.max())
        scores.append(probabilities[target] / probabilities.sum())
    scores = np.array(scores)
    return float(np.trapezoid(scores, dx=1 / (len(scores) - 1)))


def test_deletion_and_insertion_auc_match_a_direct_loop(digits_core: tuple[Convscope, str]) -> None:
    core, model_id = digits_core
    record = core.model(model_id)
    _, _, test_x, test_y = digits()
    batch = tensors(test_x[:3])
    maps = np.random.default_rng(4).normal(size=(3, 1, 16, 16)).astype(np.float32)
    found = {
        c.metric: c for c in curves(core.context, record, batch, maps, test_y[:3].tolist(), pixels_per_step=10, blur_sigma=2.0)
    }
    session = ort.InferenceSession(DIGITS_MODEL.read_bytes(), providers=["CPUExecutionProvider"])
    for n in range(3):
        order = np.argsort(-np.abs(maps[n, 0]).ravel(), kind="stable")
        blurred = ndimage.gaussian_filter(batch[n], (0, 2.0, 2.0), mode="nearest")
        deletion = direct_auc(session, batch[n], order, int(test_y[n]), batch[n], np.zeros_like(batch[n]), 10)
        insertion = direct_auc(session, batch[n], order, int(test_y[n]), blurred, batch[n], 10)
        assert found["deletion"].auc[n] == pytest.approx(deletion, abs=1e-5)
        assert found["insertion"].auc[n] == pytest.approx(insertion, abs=1e-5)
    assert found["deletion"].scores.shape == (3, 27)  # 256 pixels, 10 per step, both ends included


def test_attribution_calls_return_deletion_and_insertion_curves(client: Client, digits_core: tuple[Convscope, str]) -> None:
    _, _, test_x, _ = digits()
    model_id = client.upload_model(DIGITS_MODEL).id
    batch = tensors(test_x[:2])
    result = client.attribution(model_id, batch, method="gradient", metrics=["deletion", "insertion"], pixels_per_step=16)
    assert set(result.metrics) == {"deletion", "insertion"}
    core, local_id = digits_core
    record = core.model(local_id)
    expected = curves(core.context, record, batch, result.map, result.target, pixels_per_step=16)
    for curve in expected:
        got = result.metrics[curve.metric]
        np.testing.assert_allclose(got.auc, curve.auc, rtol=1e-5)
        assert got.scores.shape == (2, 17) and got.fractions[-1] == 1.0
    with pytest.raises(ConvscopeError) as refused:
        client.attribution(model_id, batch, method="gradient", metrics=["deletion", "sufficiency"])
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT and "sufficiency" in refused.value.message
