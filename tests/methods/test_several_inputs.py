"""A model with a second, non-image input (a per-sample scale, as detectors take one): every
call feeds it by name; gradients with respect to the image or to it equal torch autograd."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import grpc
import numpy as np
import onnx
import pytest
import torch
from torch import nn

from convscope.core import Convscope
from convscope.errors import InvalidArgument
from convscope.methods.attribution import AttributionOptions
from convscope_client import Client, ConvscopeError
from tests.dynamic_nets import initialized
from tests.oracles import assert_maps_agree, every_tensor_run, random_input


class ScaledClassifier(nn.Module):
    """Conv features multiplied by a per-sample ``scale`` [N, 1], pooled, classified; the scale
    is the graph's first input, the image the second."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 6, 3, 1, 1)
        self.classes = nn.Conv2d(6, 4, 1)

    def forward(self, scale: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        features = torch.relu(self.features(image)) * scale[:, :, None, None]
        return self.classes(features).mean(dim=(2, 3))


def exported(module: nn.Module) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.ones(1, 1), torch.zeros(1, 3, 16, 16)),
            buffer,
            dynamo=False,
            opset_version=17,
            input_names=["scale", "image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "N", 2: "H", 3: "W"}, "scale": {0: "N"}},
        )
    model = onnx.load_from_string(buffer.getvalue())
    model.ir_version = min(model.ir_version, 13)
    return model.SerializeToString()


@pytest.fixture
def service(tmp_path: Path) -> Convscope:
    return Convscope(tmp_path / "store", providers=["CPUExecutionProvider"])


def test_second_input_fed_by_name_and_differentiated_on_request(service: Convscope) -> None:
    module = initialized(ScaledClassifier())
    data = exported(module)
    record = service.upload([("", data)])
    assert [spec.name for spec in record.inputs] == ["image", "scale"]  # the image first, whatever the graph's order
    x = random_input((2, 3, 20, 24))  # another size than the probe's
    scale = np.array([[0.5], [2.0]], np.float32)
    model_input = service.prepare(record, tensor=x, others={"scale": scale})

    reference = every_tensor_run(data, {"image": x, "scale": scale})
    ours = {r.tensor: r.value for r in service.activations(record.id, model_input, None, statistics=False)}
    for name, value in ours.items():
        np.testing.assert_allclose(value, reference[name], rtol=1e-5, atol=1e-6)

    for wrt in (None, "scale"):
        result, _ = service.attribution(record.id, model_input, "gradient", AttributionOptions(target=2, wrt=wrt), render=False)
        image, factor = torch.from_numpy(x).requires_grad_(True), torch.from_numpy(scale).requires_grad_(True)
        module(factor, image)[:, 2].sum().backward()
        expected = (factor if wrt else image).grad
        assert expected is not None and result.map.shape == expected.shape
        for ours_map, theirs in zip(result.map, expected.numpy()):
            assert_maps_agree(ours_map, theirs)
    ig, _ = service.attribution(
        record.id, model_input, "integrated_gradients", AttributionOptions(target=2, steps=8), render=False
    )
    assert ig.map.shape == x.shape and np.isfinite(ig.map).all()

    with pytest.raises(InvalidArgument, match=r"send \['scale'\] too"):
        service.prepare(record, tensor=x)


def test_client_sends_a_dict_of_inputs_and_wrt(client: Client) -> None:
    module = initialized(ScaledClassifier(), seed=5)
    info = client.upload_model(exported(module))
    x, scale = random_input((1, 3, 16, 16)), np.array([[1.5]], np.float32)
    logits = client.activations(info.id, {"scale": scale, "image": x}, layers=["logits"])["logits"]
    with torch.no_grad():
        np.testing.assert_allclose(logits, module(torch.from_numpy(scale), torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-6)
    result = client.attribution(info.id, {"image": x, "scale": scale}, method="gradient", target=1, wrt="scale")
    factor = torch.from_numpy(scale).requires_grad_(True)
    module(factor, torch.from_numpy(x))[:, 1].sum().backward()
    assert factor.grad is not None
    assert_maps_agree(result.map, factor.grad.numpy())
    with pytest.raises(ConvscopeError) as raised:
        client.activations(info.id, x)
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT and "'scale'" in raised.value.message


def test_a_dataset_job_takes_the_other_inputs_once_as_constants(client: Client) -> None:
    info = client.upload_model(exported(initialized(ScaledClassifier(), seed=6)))
    scaled = next(layer.tensor for layer in info.layers if layer.op_type == "Mul")
    relu = next(layer.tensor for layer in info.layers if layer.op_type == "Relu")
    batches = [random_input((3, 3, 16, 16), seed=seed) for seed in range(2)]
    zeroed = client.dead_filters(info.id, batches, layers=[scaled], others={"scale": np.zeros(1, np.float32)})
    assert zeroed.samples == 6 and np.all(zeroed[scaled] == 1.0)  # × 0: every channel dead
    kept = client.dead_filters(info.id, batches, layers=[scaled, relu], others={"scale": np.ones((1, 1), np.float32)})
    np.testing.assert_array_equal(kept[scaled], kept[relu])
    assert kept[relu].min() < 1.0
    with pytest.raises(ConvscopeError) as raised:
        client.dead_filters(info.id, batches, layers=[scaled])
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT and "'scale'" in raised.value.message
