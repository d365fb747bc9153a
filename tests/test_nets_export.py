"""The reference nets and their exports are what the gradient oracles stand on: check them first.

If an export were wrong (a folded BN with stale statistics, a dynamic batch that is not, a
decomposed LRN), every gradient test downstream would be comparing against the wrong graph.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from tests.nets import (
    EXPORTERS,
    INPUT_NAME,
    MAX_IR_VERSION,
    NETS,
    OUTPUT_NAME,
    TORCHSCRIPT_OPSET,
    Exporter,
    exported,
    reference_net,
)
from tests.oracles import assert_forward_close, ort_run, random_input, torch_forward

NET_EXPORTS = [pytest.param(name, exporter, id=f"{name}-{exporter}") for name in NETS for exporter in EXPORTERS]

# ONNX op that each rectifier module must become, one node per module.  Captum's rules hook
# modules, the backward graph's rules match ops: the two only agree if this holds.
RECTIFIER_OPS: list[tuple[type[nn.Module], str]] = [(nn.ReLU, "Relu"), (nn.ReLU6, "Clip"), (nn.Hardswish, "HardSwish")]


def _batch_dim(model: onnx.ModelProto) -> onnx.TensorShapeProto.Dimension:
    (graph_input,) = model.graph.input
    return graph_input.type.tensor_type.shape.dim[0]


@pytest.mark.parametrize(("name", "exporter"), NET_EXPORTS)
def test_forward_matches_torch(name: str, exporter: Exporter) -> None:
    """onnxruntime and torch agree on the logits, at batch 1 and 3 (batch 3 proves the dynamic batch)."""
    spec = NETS[name]
    model = exported(name, exporter)
    for batch in spec.batch_sizes((1, 3)):
        x = random_input((batch, *spec.input_shape), seed=batch)
        got = ort_run(model, {INPUT_NAME: x})[OUTPUT_NAME]
        assert_forward_close(got, torch_forward(reference_net(name), x), what=f"{name}/{exporter} batch {batch}")


@pytest.mark.parametrize(("name", "exporter"), NET_EXPORTS)
def test_export_contract(name: str, exporter: Exporter) -> None:
    """One input ``input``, one output ``output``, an IR onnxruntime loads, the opset we pinned,
    a symbolic batch exactly when the net allows one, and no external data left behind."""
    spec = NETS[name]
    model = exported(name, exporter)
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == [INPUT_NAME]
    assert [o.name for o in model.graph.output] == [OUTPUT_NAME]
    assert model.ir_version <= MAX_IR_VERSION
    if exporter == "torchscript":
        assert {(o.domain, o.version) for o in model.opset_import} == {("", TORCHSCRIPT_OPSET)}
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    batch = _batch_dim(model)
    if spec.dynamic_batch:
        assert batch.dim_param and not batch.HasField("dim_value")
    else:
        assert batch.dim_value == spec.fixed_batch


@pytest.mark.parametrize(("name", "exporter"), NET_EXPORTS)
def test_each_rectifier_module_is_one_onnx_node(name: str, exporter: Exporter) -> None:
    """Every ``nn.ReLU``/``nn.ReLU6``/``nn.Hardswish`` module is one ``Relu``/``Clip``/``HardSwish``
    node: no functional activation escapes Captum's module hooks, none is fused away."""
    net = reference_net(name)
    op_counts: dict[str, int] = {}
    for node in exported(name, exporter).graph.node:
        op_counts[node.op_type] = op_counts.get(node.op_type, 0) + 1
    for module_type, op_type in RECTIFIER_OPS:
        modules = sum(type(m) is module_type for m in net.modules())
        assert op_counts.get(op_type, 0) == modules, f"{module_type.__name__} modules vs {op_type} nodes"


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_hardcoded_reshape_bakes_batch_one(exporter: Exporter) -> None:
    """The export really carries ``Reshape(x, [1, …])`` with a constant shape: the case the
    ``dynamic_batch`` pass must rewrite, so this net must keep presenting it."""
    model = exported("HardcodedReshapeNet", exporter)
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    targets = [constants.get(node.input[1]) for node in model.graph.node if node.op_type == "Reshape"]
    assert any(t is not None and t.ndim == 1 and t[0] == 1 for t in targets), targets


def test_lrn_exports_as_the_lrn_op() -> None:
    """Both exporters write the single ``LRN`` op (not the Pad/AveragePool/Pow decomposition)."""
    for exporter in EXPORTERS:
        lrn = [n for n in exported("VGGLRNStyle", exporter).graph.node if n.op_type == "LRN"]
        assert len(lrn) == 2, exporter


@pytest.mark.parametrize("name", NETS)
def test_nets_are_deterministic_eval_and_bn_is_not_identity(name: str) -> None:
    """Same weights on every build; eval mode; no BatchNorm reduces to the identity."""
    first, second = NETS[name].build(), NETS[name].build()
    assert not first.training
    for (key, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), key
    for module in first.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert module.running_mean is not None and module.running_var is not None
            assert np.abs(module.running_mean.numpy()).max() > 0.05
            assert np.abs(module.running_var.numpy() - 1).max() > 0.05
