"""Oracles for gradient tests: run ONNX graphs in onnxruntime, the same computation in torch,
and compare them with the tolerances of ARCHITECTURE.md.

Kept apart from the nets so that every gradient test (whole networks here, Captum parity for
Saliency / Integrated Gradients / Grad-CAM through the service methods later) measures
agreement the same way: per sample, relative L2 error and cosine similarity.  Whole networks
are compared by these two numbers rather than elementwise because a float32 pre-activation that
lands on the other side of a ReLU kink flips one mask entry, which shows up as a few large
elementwise errors while the map as a whole is unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

# Whole-network gradient tolerances (ARCHITECTURE.md, "Oracle semantics").
REL_L2_TOL = 1e-2
COSINE_TOL = 0.999
# Forward outputs: absolute error allowed, as a fraction of the largest reference magnitude.
FORWARD_REL_ATOL = 1e-4

Rule = Literal["guided", "deconvnet"]

ort.set_default_logger_severity(3)  # no CUDA-provider noise on CPU-only machines


def ort_session(model: onnx.ModelProto) -> ort.InferenceSession:
    """A CPU session: the oracle tests must give the same answer on every machine."""
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def ort_run(
    model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """Run ``model`` once; returns the requested outputs (all graph outputs by default) by name."""
    session = ort_session(model)
    names = list(outputs) if outputs is not None else [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, dict(feeds)), strict=True))


def run_backward(
    model: onnx.ModelProto,
    inputs: Mapping[str, np.ndarray],
    seeds: Mapping[str, np.ndarray],
    outputs: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Run a ``build_backward`` graph: forward ``inputs`` plus one seed gradient per seeded tensor
    (keyed by the tensor's name, fed as ``seed_input_name(tensor)``)."""
    from convscope.graph.backward import seed_input_name  # imported late: nets tests need no backward

    feeds = dict(inputs)
    feeds.update({seed_input_name(tensor): value for tensor, value in seeds.items()})
    return ort_run(model, feeds, outputs)


def backward_input_gradient(model: onnx.ModelProto, x: np.ndarray, seed: np.ndarray, **build_options: Any) -> np.ndarray:
    """Gradient of ``seed · output`` w.r.t. the single input, through ``build_backward``.

    ``build_options`` go to ``build_backward`` (``rectifier``, ``rectifiers``, ...).
    """
    from convscope.graph.backward import build_backward, grad_output_name

    (graph_input,) = runtime_input_names(model)
    (graph_output,) = (o.name for o in model.graph.output)
    backward = build_backward(model, seeds=[graph_output], **build_options)
    grad = grad_output_name(graph_input)
    return run_backward(backward, {graph_input: x}, {graph_output: seed}, [grad])[grad]


def runtime_input_names(model: onnx.ModelProto) -> list[str]:
    """Graph inputs a caller feeds (old exporters also list initializers as inputs)."""
    constants = {t.name for t in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in constants]


def global_pool_input(model: onnx.ModelProto) -> str:
    """The last conv feature map (Grad-CAM's layer): the input of the single global average pool,
    whichever way the exporter wrote it (``GlobalAveragePool`` or ``ReduceMean`` over H, W)."""
    (name,) = (n.input[0] for n in model.graph.node if n.op_type in {"GlobalAveragePool", "ReduceMean"})
    return name


def top_class_seed(logits: np.ndarray) -> np.ndarray:
    """One-hot seed on each sample's top class: never a dead class (a ReLU'd score of 0 would
    give an all-zero gradient and a test that cannot fail)."""
    return one_hot(logits.argmax(axis=1), logits.shape[1])


def one_hot(classes: Sequence[int] | np.ndarray, num_classes: int) -> np.ndarray:
    """The seed that selects one class score per sample: d(score_c)/d(logits) = e_c."""
    seed = np.zeros((len(classes), num_classes), dtype=np.float32)
    seed[np.arange(len(classes)), np.asarray(classes)] = 1.0
    return seed


def random_input(shape: Sequence[int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def torch_forward(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@dataclass(frozen=True)
class TorchPass:
    """One forward + backward pass of a torch net: the oracle's side of a comparison."""

    output: np.ndarray
    input_grad: np.ndarray
    layer_output: np.ndarray | None = None
    layer_grad: np.ndarray | None = None


def torch_gradients(model: nn.Module, x: np.ndarray, seed: np.ndarray, layer: nn.Module | None = None) -> TorchPass:
    """VJP of ``model`` at ``x`` with output cotangent ``seed`` (plus ``layer``'s output and its
    gradient, which Grad-CAM averages, caught with a tensor hook on the module's output)."""
    captured: list[torch.Tensor] = []

    def keep(_module: nn.Module, _args: object, output: torch.Tensor) -> None:
        captured.append(output.detach().clone())
        output.register_hook(captured.append)

    handle = layer.register_forward_hook(keep) if layer is not None else None
    try:
        inp = torch.from_numpy(x).requires_grad_(True)
        out = model(inp)
        out.backward(torch.from_numpy(seed))
    finally:
        if handle is not None:
            handle.remove()
    assert inp.grad is not None
    layer_output, layer_grad = (captured[0].numpy(), captured[1].numpy()) if layer is not None else (None, None)
    return TorchPass(out.detach().numpy(), inp.grad.numpy(), layer_output, layer_grad)


@contextlib.contextmanager
def rectified(model: nn.Module, module_types: tuple[type[nn.Module], ...], rule: Rule) -> Iterator[None]:
    """Apply a rectifier rule to the backward pass of every module of ``module_types``.

    This is Captum's mechanism (``ModifiedReluGradientAttribution``), generalised to any module
    type so that ``rectifiers="all"`` (ReLU6/Clip too) has an oracle: guided backprop returns
    ``relu(grad_input)`` = ``relu(dY)·mask``; deconvnet returns ``relu(grad_output)`` = ``relu(dY)``.
    """

    def hook(
        _module: nn.Module, grad_input: tuple[torch.Tensor, ...], grad_output: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, ...]:
        source = grad_input if rule == "guided" else grad_output
        return tuple(torch.relu(g) for g in source)

    handles = [m.register_full_backward_hook(hook) for m in model.modules() if isinstance(m, module_types)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def gradient_agreement(got: np.ndarray, want: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample (relative L2 error, cosine similarity) of ``got`` against ``want``."""
    got = got.reshape(len(got), -1).astype(np.float64)
    want = want.reshape(len(want), -1).astype(np.float64)
    want_norm = np.linalg.norm(want, axis=1)
    got_norm = np.linalg.norm(got, axis=1)
    rel_l2 = np.linalg.norm(got - want, axis=1) / np.maximum(want_norm, 1e-30)
    cosine = np.sum(got * want, axis=1) / np.maximum(got_norm * want_norm, 1e-30)
    return rel_l2, cosine


def assert_gradients_close(
    got: np.ndarray,
    want: np.ndarray,
    *,
    what: str,
    rel_l2: float = REL_L2_TOL,
    cosine: float = COSINE_TOL,
) -> None:
    """Each sample's gradient within ``rel_l2`` relative L2 and ``cosine`` similarity of the oracle.

    Refuses an all-zero oracle: a test whose reference gradient vanishes cannot fail.
    """
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert np.all(np.isfinite(got)), f"{what}: non-finite gradient"
    flat_want = want.reshape(len(want), -1)
    assert np.all(np.abs(flat_want).max(axis=1) > 0), f"{what}: oracle gradient is zero for some sample"
    errors, cosines = gradient_agreement(got, want)
    assert np.all(errors <= rel_l2) and np.all(cosines >= cosine), (
        f"{what}: relative L2 {np.array2string(errors, precision=4)} (≤ {rel_l2}), "
        f"cosine {np.array2string(cosines, precision=6)} (≥ {cosine})"
    )


def assert_forward_close(got: np.ndarray, want: np.ndarray, *, what: str, rel_atol: float = FORWARD_REL_ATOL) -> None:
    """Forward outputs agree to ``rel_atol`` of the largest reference magnitude."""
    atol = rel_atol * max(float(np.abs(want).max()), 1e-6)
    np.testing.assert_allclose(got, want, rtol=0, atol=atol, err_msg=what)


def every_tensor_run(model_bytes: bytes, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """onnxruntime on the unmodified model, every node output listed as a graph output."""
    model = onnx.load_from_string(model_bytes)
    declared = {o.name for o in model.graph.output}
    model.graph.output.extend(
        onnx.ValueInfoProto(name=name) for node in model.graph.node for name in node.output if name and name not in declared
    )
    return ort_run(model, feeds)


def assert_maps_agree(ours: np.ndarray, reference: np.ndarray) -> None:
    """The whole-network gradient tolerance: rel. L2 ≤ REL_L2_TOL and cosine ≥ COSINE_TOL."""
    ours, reference = ours.ravel().astype(np.float64), reference.ravel().astype(np.float64)
    assert np.linalg.norm(reference) > 0, "the reference gradient is all zero: the comparison would prove nothing"
    rel_l2 = np.linalg.norm(ours - reference) / np.linalg.norm(reference)
    cosine = ours @ reference / (np.linalg.norm(ours) * np.linalg.norm(reference))
    assert rel_l2 <= REL_L2_TOL and cosine >= COSINE_TOL, f"rel. L2 {rel_l2:.2e}, cosine {cosine:.6f}"


def as_float64(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` computing in float64: float weights, constants, casts and I/O widened (Resize
    scales stay float32, as the op requires).  For onnx's reference evaluator: onnxruntime has
    no float64 Conv."""
    from onnx import TensorProto, numpy_helper

    wide = onnx.ModelProto()
    wide.CopyFrom(model)
    graph = wide.graph
    scales = {n.input[2] for n in graph.node if n.op_type == "Resize" and len(n.input) > 2 and n.input[2]}

    def widened(tensor: onnx.TensorProto) -> onnx.TensorProto:
        return numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float64), tensor.name)

    for tensor in graph.initializer:
        if tensor.data_type == TensorProto.FLOAT and tensor.name not in scales:
            tensor.CopyFrom(widened(tensor))
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == TensorProto.FLOAT and node.output[0] not in scales:
                attr.t.CopyFrom(widened(attr.t))
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.DOUBLE
    for value in (*graph.input, *graph.output):
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            value.type.tensor_type.elem_type = TensorProto.DOUBLE
    del graph.value_info[:]
    _fold_batch_norms(graph)
    return wide


def _fold_batch_norms(graph: onnx.GraphProto) -> None:
    """Inference BatchNormalization as ``x·a + b`` per channel (of an N×C×H×W tensor).  onnx's
    reference evaluator computes opset < 14 BatchNormalization (what paddle2onnx writes) with
    the batch's own statistics, which is not what the model means nor what onnxruntime runs."""
    from onnx import numpy_helper

    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    weights |= {
        n.output[0]: numpy_helper.to_array(n.attribute[0].t)
        for n in graph.node
        if n.op_type == "Constant" and n.attribute[0].name == "value"
    }
    nodes = []
    for node in graph.node:
        if node.op_type != "BatchNormalization" or not all(name in weights for name in node.input[1:5]):
            nodes.append(node)
            continue
        scale, bias, mean, var = (weights[name] for name in node.input[1:5])
        epsilon = next((attr.f for attr in node.attribute if attr.name == "epsilon"), 1e-5)
        slope = scale / np.sqrt(var + np.float64(epsilon))
        a, b = f"{node.output[0]}__slope", f"{node.output[0]}__shift"
        graph.initializer.extend(
            [
                numpy_helper.from_array(slope.reshape(-1, 1, 1), a),
                numpy_helper.from_array((bias - mean * slope).reshape(-1, 1, 1), b),
            ]
        )
        scaled = f"{node.output[0]}__scaled"
        nodes += [
            onnx.helper.make_node("Mul", [node.input[0], a], [scaled]),
            onnx.helper.make_node("Add", [scaled, b], [node.output[0]]),
        ]
    del graph.node[:]
    graph.node.extend(nodes)


def central_differences(
    model: onnx.ModelProto, x: np.ndarray, output: str, target: int, elements: np.ndarray, step: float = 1e-5
) -> np.ndarray:
    """d output.flat[target] / d x.flat[e] for each of ``elements``, by float64 central
    differences through onnx's reference evaluator (independent of onnxruntime)."""
    from onnx.reference import ReferenceEvaluator

    wide = as_float64(model)
    if output not in {o.name for o in wide.graph.output}:
        wide.graph.output.append(onnx.ValueInfoProto(name=output))
    evaluator = ReferenceEvaluator(wide)
    name = runtime_input_names(wide)[0]
    base = x.astype(np.float64)

    def score(delta: float, element: int) -> float:
        moved = base.copy()
        moved.flat[element] += delta
        return float(evaluator.run([output], {name: moved})[0].flat[target])

    return np.array([(score(step, e) - score(-step, e)) / (2 * step) for e in elements])
