"""Models with symbolic height and width: one upload, requests at other sizes than the probe's.

Oracles: onnxruntime on the unmodified model for activations, torch autograd on the same
module for input gradients (rel. L2 ≤ 1e-2, cosine ≥ 0.999, as every whole-network test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from convscope.core import Convscope
from convscope.errors import InvalidArgument
from convscope.methods.attribution import AttributionOptions
from convscope.model.preprocessing import input_from_tensor
from tests.dynamic_nets import EXPORTERS, WidthSensitiveConcat, YoloStyleHead, export_dynamic, initialized
from tests.oracles import assert_maps_agree, every_tensor_run, random_input


def autograd_of_entry(module: torch.nn.Module, x: np.ndarray, target: int) -> np.ndarray:
    inp = torch.from_numpy(x).requires_grad_(True)
    module(inp).reshape(len(x), -1)[0, target].backward()
    assert inp.grad is not None
    return inp.grad.numpy()


@pytest.fixture
def service(tmp_path: Path) -> Convscope:
    return Convscope(tmp_path / "store", providers=["CPUExecutionProvider"])


def check_at_size(service: Convscope, model_id: str, model_bytes: bytes, module: torch.nn.Module, shape: tuple[int, ...]) -> None:
    x = random_input(shape, seed=sum(shape))
    model_input = input_from_tensor(service.model(model_id), x)
    reference = every_tensor_run(model_bytes, {"image": x})
    ours = {result.tensor: result.value for result in service.activations(model_id, model_input, None, statistics=False)}
    output_name = service.model(model_id).outputs[0].name
    assert output_name in ours and len(ours) >= 8  # every data tensor of the layer table
    for name, value in ours.items():
        np.testing.assert_allclose(
            value, reference[name], rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(reference[name]).max(initial=0)))
        )
    output = ours[output_name]
    target = int(np.abs(output[0]).reshape(-1).argmax()) // 2  # an entry in the middle, not always the top
    result, _ = service.attribution(model_id, model_input, "gradient", AttributionOptions(target=target), render=False)
    assert result.map.shape == x.shape
    assert_maps_agree(result.map, autograd_of_entry(module, x, target))
    for method in ("guided_backprop", "grad_cam"):
        answered, png = service.attribution(model_id, model_input, method, AttributionOptions(target=target))
        assert answered.map.shape[-2:] == shape[-2:] and np.isfinite(answered.map).all() and png


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_anchor_grid_from_shape_at_two_sizes_after_one_upload(service: Convscope, exporter: str) -> None:
    module = initialized(YoloStyleHead())
    model_bytes = export_dynamic(module, torch.zeros(1, 3, 64, 96), exporter)  # type: ignore[arg-type]
    record = service.upload([("", model_bytes)])
    assert record.input.shape[2:] == (-1, -1) and record.probe_shape == (1, 3, 224, 224)
    boxes = record.layer(record.outputs[0].name)
    assert boxes.shape == (1, 6, 56 * 56) and boxes.symbolic_shape == (1, 6, -1) and boxes.dim_names[2]
    convs = [layer for layer in record.layers if layer.op_type == "Conv"]
    assert [layer.symbolic_shape for layer in convs] == [(1, 8, -1, -1), (1, 6, -1, -1)]
    for shape in [(1, 3, 64, 96), (1, 3, 96, 160)]:
        check_at_size(service, record.id, model_bytes, module, shape)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_concat_that_fits_some_widths_uploads_at_a_width_it_takes(service: Convscope, exporter: str) -> None:
    module = initialized(WidthSensitiveConcat())
    model_bytes = export_dynamic(module, torch.zeros(1, 3, 48, 96), exporter, fixed_height=True)  # type: ignore[arg-type]
    record = service.upload([("", model_bytes)])
    assert record.probe_shape == (1, 3, 48, 96)  # 224 wide failed; twice the height is the next candidate
    # The height is fixed, the width follows the input's.
    assert {layer.symbolic_shape for layer in record.layers if layer.op_type == "Conv"} == {(1, 4, 48, -1), (1, 5, 48, -1)}
    for shape in [(1, 3, 48, 96), (1, 3, 48, 150)]:
        check_at_size(service, record.id, model_bytes, module, shape)
    x = random_input((1, 3, 48, 100))
    with pytest.raises(InvalidArgument, match=r"\[1, 3, 48, 100\].*onnxruntime"):
        service.attribution(record.id, input_from_tensor(record, x), "gradient", AttributionOptions(), render=False)


def test_incremental_occlusion_plans_follow_the_request_size(service: Convscope) -> None:
    from convscope.methods.occlusion import OcclusionEngine, OcclusionOptions, OcclusionResult

    record = service.upload([("", export_dynamic(initialized(YoloStyleHead()), torch.zeros(1, 3, 64, 96), "torchscript"))])
    for shape in [(1, 3, 64, 96), (1, 3, 96, 128)]:
        x = random_input(shape)
        maps = {}
        for engine in (OcclusionEngine.BATCHED, OcclusionEngine.INCREMENTAL):
            options = OcclusionOptions(targets=(7,), window=(16, 16), stride=(8, 8), engine=engine)
            (result,) = [
                e for e in service.occlusion(record.id, input_from_tensor(record, x), options) if isinstance(e, OcclusionResult)
            ]
            maps[engine] = result.attribution
        assert maps[OcclusionEngine.BATCHED].shape[-2:] == shape[-2:]
        np.testing.assert_allclose(maps[OcclusionEngine.INCREMENTAL], maps[OcclusionEngine.BATCHED], rtol=1e-4, atol=1e-5)
