"""Rectifier rules (guided backprop, deconvnet) against Captum and a hook oracle.

Captum's ``GuidedBackprop`` (Springenberg et al. 2015) returns ``relu(dY)·(X>0)`` and
``Deconvolution`` (Zeiler & Fergus 2014) returns ``relu(dY)``, both applied only to
``nn.ReLU`` modules: that is our ``rectifiers="relu"``.  Our ``rectifiers="all"`` also
rectifies ``Clip`` (ReLU6), which Captum leaves alone, so its oracle is the same hook mechanism
extended to ``nn.ReLU6`` (``tests.oracles.rectified``).  Tolerances: per sample, relative L2
≤ 1e-2 and cosine ≥ 0.999 (ARCHITECTURE.md).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import Deconvolution, GuidedBackprop
from torch import nn

from tests.nets import EXPORTERS, NETS, Exporter, exported, reference_net
from tests.oracles import (
    Rule,
    assert_gradients_close,
    backward_input_gradient,
    gradient_agreement,
    random_input,
    rectified,
    top_class_seed,
    torch_forward,
    torch_gradients,
)

pytestmark = [
    pytest.mark.slow,
    # Captum announces every hook it sets on a ReLU; that is its mechanism, not a problem.
    pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU activations:UserWarning"),
]

BATCH = 2
# A rule that changes the map by less than this would make a parity test unable to fail.
MIN_RULE_EFFECT = 0.05

CAPTUM_NETS = ("ResNetStyle", "DepthwiseReLU6Net", "VGGLRNStyle")
CAPTUM_METHODS: list[tuple[type[GuidedBackprop | Deconvolution], Rule]] = [
    (GuidedBackprop, "guided"),
    (Deconvolution, "deconvnet"),
]
CAPTUM_CASES = [
    pytest.param(name, exporter, method, rule, id=f"{name}-{exporter}-{rule}")
    for name in CAPTUM_NETS
    for exporter in EXPORTERS
    for method, rule in CAPTUM_METHODS
]
RULES: tuple[Rule, ...] = ("guided", "deconvnet")


def _inputs(name: str) -> tuple[np.ndarray, np.ndarray]:
    """A random batch and a one-hot seed on each sample's top class."""
    spec = NETS[name]
    x = random_input((BATCH, *spec.input_shape), seed=3)
    return x, top_class_seed(torch_forward(reference_net(name), x))


def _assert_rule_matters(rectified_grad: np.ndarray, plain_grad: np.ndarray, what: str) -> None:
    errors, _ = gradient_agreement(rectified_grad, plain_grad)
    assert np.all(errors > MIN_RULE_EFFECT), f"{what}: rule changes the map by only {errors}"


@pytest.mark.parametrize(("name", "exporter", "method", "rule"), CAPTUM_CASES)
def test_rectifier_matches_captum(
    name: str, exporter: Exporter, method: type[GuidedBackprop | Deconvolution], rule: Rule
) -> None:
    net = reference_net(name)
    x, seed = _inputs(name)
    targets = seed.argmax(axis=1).tolist()
    inputs = torch.from_numpy(x).requires_grad_(True)
    want = method(net).attribute(inputs, target=targets).detach().numpy()
    _assert_rule_matters(want, torch_gradients(net, x, seed).input_grad, f"{name} {method.__name__}")

    got = backward_input_gradient(exported(name, exporter), x, seed, rectifier=rule, rectifiers="relu")
    assert_gradients_close(got, want, what=f"{name}/{exporter} {rule} vs Captum {method.__name__}")


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("exporter", EXPORTERS)
def test_rectifiers_all_also_rectifies_clip(exporter: Exporter, rule: Rule) -> None:
    """On the ReLU6 net, ``rectifiers="all"`` applies the rule to every ``Clip`` as well: it
    matches the hook oracle on (ReLU, ReLU6), and differs from both the plain gradient and the
    ReLU-only rule (so Clip really was rectified)."""
    name = "DepthwiseReLU6Net"
    net = reference_net(name)
    x, seed = _inputs(name)
    with rectified(net, (nn.ReLU, nn.ReLU6), rule):
        want = torch_gradients(net, x, seed).input_grad
    with rectified(net, (nn.ReLU,), rule):
        relu_only = torch_gradients(net, x, seed).input_grad
    _assert_rule_matters(want, relu_only, f"{name} {rule} on Clip")

    got = backward_input_gradient(exported(name, exporter), x, seed, rectifier=rule, rectifiers="all")
    assert_gradients_close(got, want, what=f"{name}/{exporter} {rule} rectifiers=all")
    plain = backward_input_gradient(exported(name, exporter), x, seed)
    _assert_rule_matters(got, plain, f"{name}/{exporter} {rule} rectifiers=all vs plain")
