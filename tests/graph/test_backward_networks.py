"""Whole-network oracle: the ONNX backward graph against ``torch.autograd`` on the same net.

Every reference net × both exporters: the forward output that rides along in the backward
graph, the input gradient (saliency), and on ResNetStyle the gradient at the last conv feature
map (what Grad-CAM averages).  Tolerances (ARCHITECTURE.md): per sample, relative L2 ≤ 1e-2 and
cosine ≥ 0.999 for gradients; forward outputs within 1e-4 of the largest logit.  Whole nets
are compared with those two numbers, not elementwise, because a float32 pre-activation sitting
on a ReLU/Clip kink may flip one mask entry between torch and onnxruntime.
"""

from __future__ import annotations

import pytest

from convscope.graph.backward import build_backward, grad_output_name
from tests.nets import EXPORTERS, INPUT_NAME, NETS, OUTPUT_NAME, Exporter, exported, reference_net
from tests.oracles import (
    assert_forward_close,
    assert_gradients_close,
    global_pool_input,
    random_input,
    run_backward,
    top_class_seed,
    torch_forward,
    torch_gradients,
)

pytestmark = pytest.mark.slow

GRAD_BATCH = 2  # > 1 so that a rule mixing samples (a wrong axis in a Reduce/Scatter) shows
NET_EXPORTS = [pytest.param(name, exporter, id=f"{name}-{exporter}") for name in NETS for exporter in EXPORTERS]


@pytest.mark.parametrize(("name", "exporter"), NET_EXPORTS)
def test_input_gradient_matches_torch(name: str, exporter: Exporter) -> None:
    """d(top-class score)/d(input) per sample, within ``REL_L2_TOL`` / ``COSINE_TOL``; the logits too."""
    spec, net = NETS[name], reference_net(name)
    (batch,) = spec.batch_sizes((GRAD_BATCH,))
    x = random_input((batch, *spec.input_shape), seed=7)
    seed = top_class_seed(torch_forward(net, x))
    want = torch_gradients(net, x, seed)

    backward = build_backward(exported(name, exporter), seeds=[OUTPUT_NAME], keep=[OUTPUT_NAME])
    got = run_backward(backward, {INPUT_NAME: x}, {OUTPUT_NAME: seed})

    what = f"{name}/{exporter}"
    assert_forward_close(got[OUTPUT_NAME], want.output, what=f"{what} forward")
    assert_gradients_close(got[grad_output_name(INPUT_NAME)], want.input_grad, what=f"{what} d/d input")


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_gradcam_layer_gradient_matches_torch(exporter: Exporter) -> None:
    """``wrt`` an intermediate tensor: the last feature map of ResNetStyle, the tensor Grad-CAM
    weights by its spatially averaged gradient.  The kept feature map is compared too, which
    proves the ONNX tensor is the output of the torch layer the hook watches."""
    name = "ResNetStyle"
    spec, net = NETS[name], reference_net(name)
    assert spec.gradcam_layer is not None
    x = random_input((GRAD_BATCH, *spec.input_shape), seed=11)
    seed = top_class_seed(torch_forward(net, x))
    want = torch_gradients(net, x, seed, layer=net.get_submodule(spec.gradcam_layer))
    assert want.layer_output is not None and want.layer_grad is not None

    model = exported(name, exporter)
    feature_map = global_pool_input(model)
    backward = build_backward(model, seeds=[OUTPUT_NAME], wrt=[feature_map], keep=[OUTPUT_NAME, feature_map])
    got = run_backward(backward, {INPUT_NAME: x}, {OUTPUT_NAME: seed})

    what = f"{name}/{exporter} {feature_map!r}"
    assert_forward_close(got[feature_map], want.layer_output, what=f"{what} activation")
    assert_gradients_close(got[grad_output_name(feature_map)], want.layer_grad, what=f"{what} gradient")
    assert_gradients_close(got[grad_output_name(INPUT_NAME)], want.input_grad, what=f"{what} d/d input")
