"""The loop's gradient engine: seeds made in the graph (graph/loss_seed.py) against
torch.autograd on the same weights, and the pixel space against the preprocessing it inverts."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from convscope.core import Convscope
from convscope.graph.loss_seed import rule_input_names
from convscope.methods.optimize import Objective, PixelSpace, loss_gradient
from convscope.model.preprocessing import normalize
from tests.conftest import BUNDLED_MODEL, CAT_PHOTO
from tests.nets import exported, reference_net
from tests.oracles import assert_gradients_close, random_input


def torch_input_gradient(loss_of_logits, x: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    inputs = torch.from_numpy(x).requires_grad_(True)
    loss_of_logits(reference_net("ResNetStyle")(inputs)).sum().backward()
    assert inputs.grad is not None
    return inputs.grad.numpy()


def test_cross_entropy_and_residual_seeds_match_torch_autograd(core: Convscope) -> None:
    record = core.upload([("", exported("ResNetStyle", "torchscript").SerializeToString())])
    x = random_input((3, 3, 32, 32), seed=7)
    logits = record.outputs[0].name
    labels = np.array([1, 4, 7])
    (onehot,) = rule_input_names(logits, "cross_entropy")
    _, got = loss_gradient(
        core.context, record, x, Objective(logits, "cross_entropy", {onehot: np.eye(10, dtype=np.float32)[labels]})
    )
    want = torch_input_gradient(lambda z: nn.functional.cross_entropy(z, torch.from_numpy(labels), reduction="none"), x)
    assert_gradients_close(got, want, what="cross-entropy seed")

    reference = random_input((3, 10), seed=8)
    weight = np.array([[0.5], [1.0], [2.0]], np.float32)
    names = rule_input_names(logits, "residual")
    value, got = loss_gradient(core.context, record, x, Objective(logits, "residual", dict(zip(names, (reference, weight)))))
    residual = lambda z: torch.from_numpy(weight[:, 0]) / 2 * ((z - torch.from_numpy(reference)) ** 2).sum(1)  # noqa: E731
    assert_gradients_close(got, torch_input_gradient(residual, x), what="residual seed")
    with torch.no_grad():
        np.testing.assert_allclose(value, reference_net("ResNetStyle")(torch.from_numpy(x)).numpy(), rtol=0, atol=1e-4)


def test_pixel_space_inverts_the_models_normalization(core: Convscope) -> None:
    record = core.upload([("", BUNDLED_MODEL.read_bytes())])
    model_input = core.prepare(record, images=[CAT_PHOTO.read_bytes()])
    space = PixelSpace.of(record)
    pixels = space.to_pixels(model_input.batch)
    assert 0 <= pixels.min() and pixels.max() <= 1
    np.testing.assert_array_equal(space.pictures(pixels)[0], model_input.pictures[0])
    np.testing.assert_allclose(space.to_input(pixels)[0], normalize(model_input.pictures[0], record.preprocessing), atol=1e-6)
