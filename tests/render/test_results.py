"""render/results.py: the pictures the data plane adds to method results, decoded and checked
against the arrays they draw (not only their PNG signature)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from convscope.methods.activations import ActivationResult
from convscope.methods.filters import FiltersResult, smoothness
from convscope.methods.occlusion import OcclusionResult, OcclusionScore
from convscope.render.figures import occlusion_figure
from convscope.render.results import occlusion_png, with_channel_grid, with_filter_grid, with_occlusion_figure


def decoded(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_a_first_layer_filter_grid_is_grey_at_zero_and_draws_each_filter_in_its_colour() -> None:
    """Filter 0 is +1 in red at the centre, filter 1 is −1 there: grey 0.5 is zero, so the tiles
    hold grey, a red-leaning centre and a cyan-leaning one (red channel below grey)."""
    weights = np.zeros((2, 3, 3, 3), np.float32)
    weights[0, 0, 1, 1], weights[1, 0, 1, 1] = 1.0, -1.0
    result = with_filter_grid(FiltersResult("conv", weights, smoothness(weights)))
    picture = decoded(result.png)
    colours = {tuple(int(v) for v in c) for c in picture.reshape(-1, 3)}
    assert (128, 128, 128) in colours or (127, 127, 127) in colours  # zero weights
    assert any(r == 255 and g < 140 for r, g, _ in colours)  # +1 in red
    assert any(r == 0 and 120 <= g <= 135 for r, g, _ in colours)  # −1 in red
    assert result.weights is weights and result.node == "conv"


def test_a_filter_grid_is_only_drawn_for_two_dimensional_kernels() -> None:
    weights = np.ones((4, 2, 5), np.float32)
    assert with_filter_grid(FiltersResult("conv1d", weights, smoothness(weights))).png == b""


def test_channel_grid_draws_the_chosen_channels_each_scaled_on_its_own() -> None:
    value = np.zeros((1, 3, 8, 8), np.float32)
    value[0, 1, :, 4:] = 5.0  # channel 1: right half on
    value[0, 2] = np.arange(64, dtype=np.float32).reshape(8, 8)
    result = with_channel_grid(ActivationResult("relu", value, None), channels=[1], top_channels=0)
    assert result.shown_channels == (1,)
    picture = decoded(result.png)
    assert (picture == 255).all(axis=2).any() and (picture == 0).all(axis=2).any()  # on and off halves
    top = with_channel_grid(ActivationResult("relu", value, None), top_channels=2)
    assert top.shown_channels == (2, 1)  # highest mean first
    assert decoded(top.png).shape[1] > picture.shape[1]  # two tiles side by side


def test_an_activation_without_channels_gets_no_grid() -> None:
    result = ActivationResult("logits", np.ones(4, np.float32), None)
    assert with_channel_grid(result) is result


def _occlusion(targets: int, score: OcclusionScore) -> OcclusionResult:
    maps = np.random.default_rng(0).random((targets, 40, 50)).astype(np.float32)
    return OcclusionResult(
        positions=np.zeros((targets, 3, 4), np.float32),
        attribution=maps[:, None],
        targets=tuple(range(targets)),
        baseline_scores=np.ones(targets, np.float32),
        output="prob",
        labels=("cat",) + ("",) * (targets - 1),
        engine="full",
        window=(8, 8),
        stride=(8, 8),
        score=score,
        maps=maps,
        picture=None,
    )


@pytest.mark.parametrize("score", list(OcclusionScore))
def test_the_occlusion_png_is_the_occlusion_figure_of_the_result(score: OcclusionScore) -> None:
    result = _occlusion(2, score)
    quantity = "probability" if score is OcclusionScore.PROBABILITY else "score"
    want = occlusion_figure(result.maps, None, [f"drop in {quantity} of cat", f"drop in {quantity} of entry 1"])
    np.testing.assert_array_equal(decoded(occlusion_png(result)), want)


def test_occlusion_events_pass_through_and_the_result_gets_its_figure() -> None:
    result = _occlusion(1, OcclusionScore.PROBABILITY)
    events = list(with_occlusion_figure(["progress", result]))
    assert events[0] == "progress" and decoded(events[1].png).shape == occlusion_figure(result.maps, None, ["t"]).shape
