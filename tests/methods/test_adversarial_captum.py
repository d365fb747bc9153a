"""FGSM and PGD against Captum's ``FGSM`` and ``PGD`` on the same weights.

Captum attacks a torch twin with the cross-entropy of the logits (``loss_func``), the same ε,
step size and steps, no random start; for the bundled EfficientNet-Lite0 the twin takes pixels
in [0, 1] and normalizes inside (as our loop does for image inputs), for ResNetStyle it takes
the array and both sides clip to the same ``bounds``.  Every pixel is a sign step, so one
gradient entry whose float32 sign differs between onnxruntime and torch moves that pixel by
2·step: we require the images to agree to 1e-5 on all but a tiny fraction of entries
(``MAX_DIFFERING``) and exactly the same predictions.  Such a flip changes the next gradient, so
on EfficientNet-Lite0 (33 ReLU6 kinks deep) the two trajectories drift apart step by step —
measured on the cat at ε = 2/255, step 1/255: 0 entries differ after one step, 0.003 % after
two, 0.4 % after three, 5 % after four — so its PGD check runs two steps.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.robust import FGSM, PGD
from torch import nn

from convscope.core import Convscope
from convscope.methods.adversarial import AdversarialOptions, AdversarialResult
from convscope.methods.optimize import PixelSpace, StepProgress
from tests.conftest import BUNDLED_MODEL, CAT_PHOTO
from tests.nets import exported, reference_net
from tests.oracles import random_input

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients:UserWarning"),
]

FLOAT_ERROR = 1e-5
MAX_DIFFERING = 2e-3  # fraction of entries where a near-zero gradient's sign may differ
BOUNDS = (-2.5, 2.5)


def attack(core: Convscope, model_id: str, model_input, options: AdversarialOptions) -> AdversarialResult:  # type: ignore[no-untyped-def]
    events = list(core.adversarial(model_id, model_input, options))
    assert [e.step for e in events[:-1] if isinstance(e, StepProgress)] == list(range(1, options.step_count + 1))
    assert isinstance(events[-1], AdversarialResult)
    return events[-1]


def captum_attack(
    net: nn.Module, x: np.ndarray, options: AdversarialOptions, bounds: tuple[float, float], classes: list[int]
) -> np.ndarray:
    loss = nn.CrossEntropyLoss(reduction="none")
    labels = torch.tensor(classes)
    inputs = torch.from_numpy(x)
    targeted = options.target is not None
    if options.method == "fgsm":
        result = FGSM(net, loss, *bounds).perturb(inputs, options.epsilon, labels, targeted=targeted)
    else:
        result = PGD(net, loss, *bounds).perturb(
            inputs, options.epsilon, options.step_length, options.steps, labels, targeted=targeted, norm="Linf"
        )
    return result.detach().numpy()


def assert_same_attack(ours: np.ndarray, theirs: np.ndarray, what: str) -> None:
    differing = float(np.mean(np.abs(ours - theirs) > FLOAT_ERROR))
    assert differing <= MAX_DIFFERING, f"{what}: {differing:.2%} of entries differ from Captum's by more than {FLOAT_ERROR}"


OPTIONS = [
    AdversarialOptions(method="fgsm", epsilon=0.05),
    AdversarialOptions(method="pgd", epsilon=0.05, step_size=0.02, steps=4),
    AdversarialOptions(method="pgd", epsilon=0.05, step_size=0.02, steps=4, target=3),
]


@pytest.mark.parametrize("options", OPTIONS, ids=["fgsm", "pgd", "pgd-targeted"])
def test_resnet_style_matches_captum(core: Convscope, options: AdversarialOptions) -> None:
    record = core.upload([("", exported("ResNetStyle", "torchscript").SerializeToString())], name="ResNetStyle")
    x = np.clip(random_input((4, 3, 32, 32), seed=3), *BOUNDS)
    net = reference_net("ResNetStyle")
    options = AdversarialOptions(**{**options.__dict__, "bounds": BOUNDS})
    ours = attack(core, record.id, core.prepare(record, tensor=x), options)
    labels = ours.label.tolist()
    with torch.no_grad():
        assert labels == (net(torch.from_numpy(x)).argmax(1).tolist() if options.target is None else [options.target] * 4)
    theirs = captum_attack(net, x, options, BOUNDS, labels)
    assert_same_attack(ours.array, theirs, f"ResNetStyle {options.method}")
    with torch.no_grad():
        assert ours.adversarial_logits.argmax(1).tolist() == net(torch.from_numpy(theirs)).argmax(1).tolist()
    assert np.all(ours.linf <= options.epsilon + FLOAT_ERROR)


class Normalized(nn.Module):
    """The twin behind the model's own normalization: it takes pixels in [0, 1]."""

    def __init__(self, net: nn.Module, space: PixelSpace) -> None:
        super().__init__()
        self.net = net
        self.gain = torch.from_numpy(space.gain)
        self.offset = torch.from_numpy(space.offset)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net(pixels * self.gain + self.offset)


@pytest.fixture(scope="module")
def twin() -> nn.Module:
    from benchmarks._twins import efficientnet_lite0

    return efficientnet_lite0()


@pytest.mark.parametrize("options", OPTIONS[:2], ids=["fgsm", "pgd"])
def test_efficientnet_lite0_matches_captum_on_the_cat(core: Convscope, twin: nn.Module, options: AdversarialOptions) -> None:
    record = core.upload([("", BUNDLED_MODEL.read_bytes())])
    model_input = core.prepare(record, images=[CAT_PHOTO.read_bytes()])
    options = AdversarialOptions(**{**options.__dict__, "epsilon": 2 / 255, "step_size": 1 / 255, "steps": 2})
    ours = attack(core, record.id, model_input, options)
    space = PixelSpace.of(record)
    pixels = space.to_pixels(model_input.batch)
    net = Normalized(twin, space)
    theirs = captum_attack(net, pixels, options, (0.0, 1.0), ours.label.tolist())
    assert_same_attack(space.to_pixels(ours.array), theirs, f"EfficientNet-Lite0 {options.method}")
    with torch.no_grad():
        assert ours.adversarial_logits.argmax(1).tolist() == net(torch.from_numpy(theirs)).argmax(1).tolist()
    assert ours.success.all(), "2/255 fools EfficientNet-Lite0 on the cat"
