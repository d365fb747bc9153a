"""Gradient-map and occlusion figures: each method as its paper draws it, the overlay beside it,
a colour bar with the map's values on every heat map; and Grad-CAM's numbers behind them."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from convscope.render.figures import BACKGROUND, BAR_WIDTH, GREYS, attribution_figure, colour_bar, occlusion_figure, rgb_gradient
from convscope.render.images import INFERNO
from convscope_client import Client
from tests.conftest import BUNDLED_MODEL, CAT_PHOTO

RNG = np.random.default_rng(4)
PHOTO = RNG.integers(0, 256, (40, 50, 3), dtype=np.uint8)


def test_rgb_gradient_is_grey_at_zero_and_keeps_the_sign_per_channel() -> None:
    gradient = np.zeros((4, 4, 3), np.float32)
    gradient[0, 0] = (1, -1, 0)
    picture = rgb_gradient(gradient, percentile=100)
    assert (picture[1:, 1:] == 128).all()
    assert tuple(picture[0, 0]) == (255, 0, 128)


def test_colour_bar_runs_from_the_high_value_at_the_top_to_the_low_one() -> None:
    bar = colour_bar(100, INFERNO, -1.0, 2.0)
    np.testing.assert_array_equal(bar[1:-1, 5], INFERNO[np.linspace(255, 0, 100).round().astype(int)][1:-1])
    assert (bar[:, BAR_WIDTH + 3 :] != BACKGROUND).any(), "the values are written beside the bar"


@pytest.mark.parametrize(
    ("method", "values"),
    [
        ("saliency", RNG.random((40, 50))),
        ("grad_cam", RNG.random((40, 50))),
        ("guided_backprop", RNG.standard_normal((40, 50, 3))),
        ("integrated_gradients", RNG.standard_normal((40, 50, 3))),
    ],
)
def test_attribution_figure_has_the_map_its_bar_and_the_overlay(method: str, values: np.ndarray) -> None:
    figure = attribution_figure(method, values, PHOTO)
    alone = attribution_figure(method, values, None)
    assert figure.shape[0] == alone.shape[0] and figure.shape[1] > 2 * alone.shape[1] - 100
    scale = (alone.shape[0] - 18) // 40  # enlarged to a readable size, by a whole factor
    assert scale >= 2 and alone.shape[0] == 18 + 40 * scale
    if method == "guided_backprop":  # an RGB image, no bar
        assert alone.shape[1] == 50 * scale
    else:
        assert alone.shape[1] > 50 * scale, "a colour bar beside the heat map"
    if method in ("saliency", "integrated_gradients"):  # grey, as the papers draw magnitudes
        panel = alone[18:, : 50 * scale]
        assert (panel[..., 0] == panel[..., 1]).all() and (panel[..., 1] == panel[..., 2]).all()
        assert {tuple(c) for c in panel.reshape(-1, 3)} <= {tuple(c) for c in GREYS}


def test_occlusion_figure_has_one_row_per_target() -> None:
    one = occlusion_figure(RNG.random((1, 40, 50)), PHOTO, ["drop in probability of a"])
    two = occlusion_figure(RNG.random((2, 40, 50)), PHOTO, ["a", "b"])
    assert two.shape[0] > 2 * one.shape[0] - 10 and two.shape[1] == one.shape[1]


def test_grad_cam_of_a_pooled_linear_head_is_the_class_activation_map(client: Client, bundled_model_id: str) -> None:
    """EfficientNet-Lite0 ends Clip → GlobalAveragePool → Gemm: Grad-CAM's channel weights are the
    classifier's row over the 7×7 positions, so the map is CAM (Zhou et al. 2016) computed from
    the weights and the activations directly; then bilinear upsampling and pytorch-grad-cam's
    min–max scaling, done here with torch."""
    torch = pytest.importorskip("torch")
    model = onnx.load(str(BUNDLED_MODEL))
    weights = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "_fc.weight"))
    result = client.attribution(bundled_model_id, CAT_PHOTO, method="grad_cam")
    features = client.activations(bundled_model_id, CAT_PHOTO, layers=[result.layer])[result.layer][0]
    cam = np.maximum(np.tensordot(weights[result.target], features, axes=1), 0) / (features.shape[1] * features.shape[2])
    np.testing.assert_allclose(result.layer_map[0], cam, rtol=1e-4, atol=1e-6)

    upsampled = torch.nn.functional.interpolate(
        torch.from_numpy(cam)[None, None], size=(224, 224), mode="bilinear", align_corners=False
    )[0, 0].numpy()
    upsampled = upsampled - upsampled.min()
    np.testing.assert_allclose(result.map[0], upsampled / (1e-7 + upsampled.max()), atol=1e-5)
    assert result.map.min() == 0 and result.map.max() == pytest.approx(1, abs=1e-6)
