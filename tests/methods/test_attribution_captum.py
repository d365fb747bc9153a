"""Captum parity of every gradient method, run through the service's own method layer.

The torch reference nets (tests/nets.py) and their ONNX exports go through
``convscope.core.Convscope`` (an in-process store, the model uploaded as bytes) and, for a
subset, through the real gRPC server with ``Client.attribution``; Captum 0.9 runs on the same
torch net, the same inputs and the same targets.  What is compared:

==============================  ==========================================================
ours                            Captum
==============================  ==========================================================
``gradient``                    ``Saliency(abs=False)``
``saliency``                    ``Saliency`` (``abs=True``), max over channels
``input_x_gradient``            ``InputXGradient``
``guided_backprop``             ``GuidedBackprop``   (ours with ``rectifiers="relu"``)
``deconvnet``                   ``Deconvolution``    (ours with ``rectifiers="relu"``)
``grad_cam`` ``.layer_map``     ``LayerGradCam(relu_attributions=True)``, same layer
``grad_cam`` ``.map``           the same, ``LayerAttribution.interpolate(..., "bilinear")``, then min–max scaled as pytorch-grad-cam does
``guided_grad_cam``             ``GuidedGradCam``    (ours with ``rectifiers="relu"``)
``integrated_gradients``        ``IntegratedGradients``, same rule, steps and baseline
``smoothgrad``                  ``NoiseTunnel(Saliency)``, ``nt_type="smoothgrad"``,
                                ``abs=False``, with *our* noise draw
==============================  ==========================================================

``rectifiers="relu"`` because Captum rectifies only ``nn.ReLU`` modules (ARCHITECTURE.md,
"Oracle semantics"): on DepthwiseReLU6Net the ReLU6 (``Clip``) units keep their plain gradient
on both sides.

SmoothGrad's noise: Captum's ``NoiseTunnel`` draws ``torch.normal(0, stdev_expanded)`` once,
shaped ``[N·samples, ...]`` with the samples of one input adjacent (``repeat_interleave``), and
takes one σ per input tensor, while ours is per sample (σ_n = noise·(max − min) of sample n).
The test patches ``torch.normal`` to return exactly ``smoothgrad_noise(batch, samples, noise,
seed)`` reordered that way, so both sides average gradients at the same noisy points.

Tolerance (ARCHITECTURE.md): per sample, relative L2 ≤ 1e-2 and cosine ≥ 0.999
(``tests.oracles.assert_gradients_close``); scores within 1e-4 of the largest logit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from captum.attr import (
    Deconvolution,
    GuidedBackprop,
    GuidedGradCam,
    InputXGradient,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    NoiseTunnel,
    Saliency,
)
from torch import nn

from convscope.core import Convscope
from convscope.methods.attribution import AttributionOptions, smoothgrad_noise
from convscope.model.types import ModelRecord
from tests.nets import NETS, Exporter, exported, reference_net
from tests.oracles import assert_forward_close, assert_gradients_close, random_input, torch_forward

pytestmark = [
    pytest.mark.slow,
    # Captum announces every hook it sets on a ReLU; that is its mechanism, not a problem.
    pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU activations:UserWarning"),
    pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients:UserWarning"),
]

BATCH = 2
STEPS = 16
SAMPLES = 6
NOISE = 0.15
NOISE_SEED = 5

# The torch module whose output is the model's last spatial feature map: the layer our
# ``grad_cam`` picks by default, and the one Captum's LayerGradCam/GuidedGradCam are given.
CAM_MODULES = {"ResNetStyle": "layer2", "DepthwiseReLU6Net": "features", "VGGLRNStyle": "features"}
NET_EXPORTS: list[tuple[str, Exporter]] = [
    ("ResNetStyle", "torchscript"),
    ("ResNetStyle", "dynamo"),
    ("DepthwiseReLU6Net", "torchscript"),
    ("VGGLRNStyle", "torchscript"),
]
# A baseline that is not zero and not constant: IG's (x − baseline) factor and the path both see it.
ARRAY_BASELINE = 0.5 * random_input((1, 3, 32, 32), seed=99)


Captum = Callable[[nn.Module, str, torch.Tensor, list[int]], np.ndarray]


@dataclass(frozen=True)
class Case:
    """One row of the method table: our method and options, and Captum's equivalent."""

    id: str
    method: str
    captum: Captum
    options: dict[str, Any] = field(default_factory=dict)
    compare: str = "map"  # or "layer_map" (Grad-CAM before upsampling)


def _numpy(attribution: torch.Tensor) -> np.ndarray:
    return attribution.detach().numpy()


def _cam_module(net: nn.Module, name: str) -> nn.Module:
    return net.get_submodule(CAM_MODULES[name])


def _ig(method: str, baseline: float | np.ndarray) -> Captum:
    def run(net: nn.Module, _name: str, x: torch.Tensor, targets: list[int]) -> np.ndarray:
        base = torch.from_numpy(np.broadcast_to(np.asarray(baseline, np.float32), x.shape).copy())
        return _numpy(IntegratedGradients(net).attribute(x, baselines=base, target=targets, n_steps=STEPS, method=method))

    return run


def _min_max_scaled(maps: np.ndarray) -> np.ndarray:
    """pytorch-grad-cam's scale_cam_image on bilinearly upsampled maps: x − min, / (1e-7 + max)."""
    shifted = maps - maps.min(axis=(1, 2), keepdims=True)
    return shifted / (1e-7 + shifted.max(axis=(1, 2), keepdims=True))


def _smoothgrad(net: nn.Module, _name: str, x: torch.Tensor, targets: list[int]) -> np.ndarray:
    """Captum's NoiseTunnel(Saliency) with ``torch.normal`` returning our own draw."""
    ours = np.concatenate(list(smoothgrad_noise(x.numpy(), SAMPLES, NOISE, NOISE_SEED)))  # [samples, N, ...]
    # Captum's layout: [N·samples, ...], sample s of input n at row n·samples + s.
    draw = torch.from_numpy(np.ascontiguousarray(ours.swapaxes(0, 1)).reshape(-1, *x.shape[1:]))
    real_normal = torch.normal

    def fixed_normal(mean: object, std: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        assert tuple(std.shape) == tuple(draw.shape), f"Captum drew {tuple(std.shape)}, expected {tuple(draw.shape)}"
        return draw.clone()

    torch.normal = fixed_normal  # type: ignore[assignment]
    try:
        tunnel = NoiseTunnel(Saliency(net))
        result = tunnel.attribute(x, nt_type="smoothgrad", nt_samples=SAMPLES, stdevs=1.0, target=targets, abs=False)
    finally:
        torch.normal = real_normal
    return _numpy(result)


CASES = [
    Case("gradient", "gradient", lambda net, _n, x, t: _numpy(Saliency(net).attribute(x, target=t, abs=False))),
    Case("saliency", "saliency", lambda net, _n, x, t: _numpy(Saliency(net).attribute(x, target=t).amax(dim=1))),
    Case("input_x_gradient", "input_x_gradient", lambda net, _n, x, t: _numpy(InputXGradient(net).attribute(x, target=t))),
    Case(
        "guided_backprop",
        "guided_backprop",
        lambda net, _n, x, t: _numpy(GuidedBackprop(net).attribute(x, target=t)),
        {"rectifiers": "relu"},
    ),
    Case(
        "deconvnet",
        "deconvnet",
        lambda net, _n, x, t: _numpy(Deconvolution(net).attribute(x, target=t)),
        {"rectifiers": "relu"},
    ),
    Case(
        "grad_cam",
        "grad_cam",
        lambda net, n, x, t: _numpy(LayerGradCam(net, _cam_module(net, n)).attribute(x, target=t, relu_attributions=True))[:, 0],
        compare="layer_map",
    ),
    Case(
        "grad_cam-upsampled-scaled",
        "grad_cam",
        lambda net, n, x, t: _min_max_scaled(
            _numpy(
                LayerAttribution.interpolate(
                    LayerGradCam(net, _cam_module(net, n)).attribute(x, target=t, relu_attributions=True),
                    tuple(x.shape[2:]),
                    interpolate_mode="bilinear",
                )
            )[:, 0]
        ),
    ),
    Case(
        "guided_grad_cam",
        "guided_grad_cam",
        lambda net, n, x, t: _numpy(GuidedGradCam(net, _cam_module(net, n)).attribute(x, target=t)),
        {"rectifiers": "relu"},
    ),
    Case("ig-gausslegendre", "integrated_gradients", _ig("gausslegendre", 0.0), {"steps": STEPS}),
    Case(
        "ig-riemann_trapezoid-array_baseline",
        "integrated_gradients",
        _ig("riemann_trapezoid", ARRAY_BASELINE),
        {"steps": STEPS, "integration": "riemann_trapezoid", "baseline": ARRAY_BASELINE},
    ),
    Case(
        "ig-riemann_middle-scalar_baseline",
        "integrated_gradients",
        _ig("riemann_middle", 0.25),
        {"steps": STEPS, "integration": "riemann_middle", "baseline": 0.25},
    ),
    Case("smoothgrad", "smoothgrad", _smoothgrad, {"samples": SAMPLES, "noise": NOISE, "seed": NOISE_SEED}),
]


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Convscope]:
    service = Convscope(Path(tmp_path_factory.mktemp("captum-store")))
    yield service
    service.close()


@pytest.fixture(scope="module")
def uploaded(core: Convscope) -> Callable[[str, Exporter], ModelRecord]:
    records: dict[tuple[str, Exporter], ModelRecord] = {}

    def get(name: str, exporter: Exporter) -> ModelRecord:
        if (name, exporter) not in records:
            data = exported(name, exporter).SerializeToString()
            records[name, exporter] = core.upload([("", data)], name=f"{name}-{exporter}")
        return records[name, exporter]

    return get


def _inputs(name: str) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """A random batch, its torch logits and each sample's top class."""
    x = random_input((BATCH, *NETS[name].input_shape), seed=21)
    logits = torch_forward(reference_net(name), x)
    return x, logits, logits.argmax(axis=1).tolist()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
@pytest.mark.parametrize(("name", "exporter"), NET_EXPORTS, ids=[f"{n}-{e}" for n, e in NET_EXPORTS])
def test_method_matches_captum(
    core: Convscope, uploaded: Callable[[str, Exporter], ModelRecord], name: str, exporter: Exporter, case: Case
) -> None:
    record = uploaded(name, exporter)
    x, logits, targets = _inputs(name)
    options = AttributionOptions(target=targets, **case.options)
    result, _ = core.attribution(record.id, core.prepare(record, tensor=x), case.method, options, render=False)

    want = case.captum(reference_net(name), name, torch.from_numpy(x), targets)
    got = result.map if case.compare == "map" else result.layer_map
    assert got is not None
    what = f"{name}/{exporter} {case.id} vs Captum"
    assert_gradients_close(got, want, what=what)
    assert list(result.score.targets) == targets
    assert_forward_close(result.scores, logits[np.arange(BATCH), targets], what=f"{what}: scores")


# Through the real server: the default target (top class of the ONNX forward), the options as
# the client sends them (an array baseline travels as a tensor), Captum on the targets returned.
SERVER_CASES = [c for c in CASES if c.id in {"gradient", "guided_grad_cam", "ig-riemann_trapezoid-array_baseline", "smoothgrad"}]


@pytest.fixture(scope="module")
def resnet_on_server(client) -> str:  # type: ignore[no-untyped-def]
    return client.upload_model(exported("ResNetStyle", "torchscript").SerializeToString(), name="ResNetStyle").id


@pytest.mark.parametrize("case", SERVER_CASES, ids=[c.id for c in SERVER_CASES])
def test_method_matches_captum_through_the_server(client, resnet_on_server: str, case: Case) -> None:  # type: ignore[no-untyped-def]
    name = "ResNetStyle"
    x, logits, top = _inputs(name)
    got = client.attribution(resnet_on_server, x, method=case.method, render=False, **case.options)
    assert got.target == top, "the default target is each sample's top class"
    want = case.captum(reference_net(name), name, torch.from_numpy(x), list(got.target))
    assert_gradients_close(got.map, want, what=f"{name} over gRPC: {case.id} vs Captum")
    assert_forward_close(np.asarray(got.score), logits[np.arange(BATCH), top], what=f"{case.id}: scores")
