"""Weighted targets (the gradient of Σ w·y, as pytorch-grad-cam's segmentation target) and the
warnings that explain an all-zero map."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from convscope.core import Convscope
from convscope.errors import InvalidArgument
from convscope.methods.attribution import AttributionOptions
from convscope.model.preprocessing import input_from_tensor
from convscope.rpc.server import RunningServer
from convscope_client import Client
from convscope_client import cli as client_cli
from tests.dynamic_nets import export_dynamic, initialized
from tests.oracles import assert_maps_agree, random_input


class TinySegmenter(nn.Module):
    """Per-pixel scores for 3 classes at the input's resolution (an FCN in miniature)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv2d(3, 8, 3, 2, 1)
        self.classes = nn.Conv2d(8, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.classes(torch.relu(self.down(x)))
        return F.interpolate(scores, scale_factor=2.0, mode="bilinear", align_corners=False)


@pytest.fixture
def service(tmp_path: Path) -> Convscope:
    return Convscope(tmp_path / "store", providers=["CPUExecutionProvider"])


def class_mask(shape: tuple[int, ...], cls: int) -> np.ndarray:
    """Weights of one sample's [classes, H, W] output: class ``cls`` in the left half."""
    mask = np.zeros(shape, np.float32)
    mask[cls, :, : shape[2] // 2] = 1
    return mask


def test_weighted_target_on_a_segmentation_output_is_the_gradient_of_the_masked_sum(service: Convscope) -> None:
    module = initialized(TinySegmenter())
    record = service.upload([("", export_dynamic(module, torch.zeros(1, 3, 32, 32), "torchscript"))])
    x = random_input((2, 3, 48, 64))  # not the probe's size: the mask has the request's shape
    mask = class_mask((3, 48, 64), cls=1)
    for method in ("gradient", "input_x_gradient"):
        result, _ = service.attribution(
            record.id, input_from_tensor(record, x), method, AttributionOptions(target=mask), render=False
        )
        inp = torch.from_numpy(x).requires_grad_(True)
        out = module(inp)
        (out * torch.from_numpy(mask)).sum().backward()
        assert inp.grad is not None
        expected = inp.grad.numpy() * (x if method == "input_x_gradient" else 1)
        for ours, theirs in zip(result.map, expected):
            assert_maps_agree(ours, theirs)
        np.testing.assert_allclose(result.scores, (out.detach().numpy() * mask).sum(axis=(1, 2, 3)), rtol=1e-4)
        assert list(result.score.targets) == [-1, -1] and result.warnings == ()
    with pytest.raises(InvalidArgument, match=r"target weights of shape \[3, 32, 32\] do not fit"):
        service.attribution(
            record.id, input_from_tensor(record, x), "gradient", AttributionOptions(target=class_mask((3, 32, 32), 0))
        )


def rounding_model() -> onnx.ModelProto:
    """x → Conv → Round → Conv → y: y depends on x only through Round."""
    rng = np.random.default_rng(3)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w1"], ["c1"], name="first_conv", pads=[1, 1, 1, 1]),
            helper.make_node("Round", ["c1"], ["rounded"], name="quantize"),
            helper.make_node("Conv", ["rounded", "w2"], ["y"], name="second_conv", pads=[1, 1, 1, 1]),
        ],
        "rounding",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 8, 8])],
        initializer=[
            numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 3, "w1"),
            numpy_helper.from_array(rng.standard_normal((2, 4, 3, 3)).astype(np.float32), "w2"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


def test_round_on_every_path_is_named_in_a_warning(service: Convscope) -> None:
    record = service.upload([("", rounding_model().SerializeToString())])
    x = random_input((1, 3, 8, 8))
    result, _ = service.attribution(
        record.id, input_from_tensor(record, x), "gradient", AttributionOptions(target=5), render=False
    )
    assert not np.any(result.map)
    (warning,) = result.warnings
    assert "Round 'quantize'" in warning and "zero almost everywhere" in warning and "first_conv" not in warning
    # The tensor before Round has a differentiable path: no warning.
    fine, _ = service.attribution(
        record.id, input_from_tensor(record, x), "gradient", AttributionOptions(output="c1", target=5), render=False
    )
    assert np.any(fine.map) and fine.warnings == ()


def test_a_flat_map_for_another_reason_says_so(service: Convscope) -> None:
    record = service.upload([("", rounding_model().SerializeToString())])
    black = input_from_tensor(record, np.zeros((1, 3, 8, 8), np.float32))  # a bias-free conv of zeros: activations 0
    result, _ = service.attribution(record.id, black, "grad_cam", AttributionOptions(output="c1", layer="c1"), render=False)
    assert not np.any(result.map)
    (warning,) = result.warnings
    assert "all zero" in warning and "depends differentiably" in warning


def test_client_and_cli_carry_weights_and_warnings(
    client: Client, server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = rounding_model()
    model.graph.name = "rounding-cli"  # bytes unique to this test in the shared session store
    info = client.upload_model(model.SerializeToString())
    x = random_input((1, 3, 8, 8))
    weights = np.zeros((2, 8, 8), np.float32)
    weights[0, 2:4, 2:4] = 1
    result = client.attribution(info.id, x, method="gradient", target=weights)
    assert "Round 'quantize'" in result.warnings[0] and result.target == -1
    np.save(tmp_path / "x.npy", x)
    capsys.readouterr()
    code = client_cli.main(
        [
            "--address",
            f"127.0.0.1:{server.port}",
            "attribution",
            info.id,
            str(tmp_path / "x.npy"),
            "--method",
            "saliency",
            "--target",
            "3",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    assert "warning: " in capsys.readouterr().err
