"""Symbolic-size models through the real server, client and CLI: the probe's input shape,
the upload that runs at no candidate size, and requests at sizes other than the probe's."""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest
import torch

from convscope.rpc.server import RunningServer
from convscope_client import Client, ConvscopeError
from convscope_client import cli as client_cli
from tests.dynamic_nets import WidthSensitiveConcat, export_dynamic, initialized


def width_model(factor: int, seed: int) -> bytes:
    example = torch.zeros(1, 3, 48, 8 * factor)
    return export_dynamic(initialized(WidthSensitiveConcat(factor), seed=seed), example, "torchscript", fixed_height=True)


def test_input_shape_by_dim_name_and_requests_at_other_widths(client: Client) -> None:
    info = client.upload_model(width_model(3, seed=21), input_shape={"W": 144})
    assert info.probe_shape == (1, 3, 48, 144)
    output = next(layer for layer in info.layers if layer.tensor == info.outputs[0].name)
    assert output.shape == (1, 5, 144) and output.symbolic_shape == (1, 5, -1) and output.dim_names[:2] == ("", "")
    for width in (96, 210):
        x = np.random.default_rng(width).random((1, 3, 48, width), dtype=np.float32)
        result = client.attribution(info.id, x, method="gradient", target=width)
        assert result.map.shape == x.shape and np.abs(result.map).max() > 0
    with pytest.raises(ConvscopeError) as raised:
        client.attribution(info.id, np.zeros((1, 3, 48, 100), np.float32), method="gradient")
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT and "[1, 3, 48, 100]" in raised.value.message
    assert client.get_model(info.id).probe_shape == (1, 3, 48, 144)  # the record is unchanged


def test_upload_the_probe_cannot_run_fails_with_advice_then_cli_input_shape_succeeds(
    client: Client, server: RunningServer, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "line_recognizer.onnx"
    model.write_bytes(width_model(11, seed=22))
    before = {m.id for m in client.list_models()}
    with pytest.raises(ConvscopeError) as raised:
        client.upload_model(model)
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "pass input_shape" in raised.value.message and "[1, 3, 48, 480]" in raised.value.message
    assert {m.id for m in client.list_models()} == before
    capsys.readouterr()
    code = client_cli.main(
        ["--address", f"127.0.0.1:{server.port}", "upload", str(model), "--input-shape", "1", "3", "48", "176"]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out)["probe_shape"] == [1, 3, 48, 176]
