"""The command-line client against the session server: every subcommand, and failures."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from convscope import cli as server_cli
from convscope.rpc.server import RunningServer
from convscope_client import Client
from convscope_client import cli as client_cli
from tests.conftest import BUNDLED_MODEL, CAT_PHOTO

DEAD_CHANNEL = 2
# (exit code, stdout parsed as JSON when the call succeeded, stderr)
Cli = Callable[..., tuple[int, Any, str]]


def dead_channel_model() -> tuple[onnx.ModelProto, np.ndarray]:
    """x[N,3,8,8] → Conv(4) → Relu, where channel 2 is dead on every image and the others never are.

    Pixels reach the model in [0, 1]: positive weights and bias keep channels 0, 1, 3 above
    zero everywhere; zero weights and a bias of -1 keep channel 2 at zero after the Relu.
    """
    weight = np.abs(np.random.default_rng(5).standard_normal((4, 3, 3, 3))).astype(np.float32) + 0.01
    weight[DEAD_CHANNEL] = 0
    bias = np.array([0.1, 0.1, -1.0, 0.1], np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w", "b"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
        ],
        "dead_channel",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("relu", TensorProto.FLOAT, ["N", 4, 8, 8])],
        initializer=[numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model, weight


@pytest.fixture
def cli(server: RunningServer, capsys: pytest.CaptureFixture[str]) -> Cli:
    """Runs ``convscope-client --address <session server> ARGS``; returns (exit code, parsed stdout, stderr)."""

    def run(*args: str, main: Callable[[list[str]], int] = client_cli.main) -> tuple[int, Any, str]:
        capsys.readouterr()
        code = main(["--address", f"127.0.0.1:{server.port}", "--timeout", "120", *args])
        out, err = capsys.readouterr()
        return code, json.loads(out) if code == 0 else out, err

    return run


@pytest.fixture(scope="module")
def conv_tensors(client: Client, bundled_model_id: str) -> list[str]:
    """The first two Conv output tensors of the bundled model (names with '/' in them)."""
    convs = [layer.tensor for layer in client.get_model(bundled_model_id).layers if layer.op_type == "Conv"]
    return convs[:2]


def test_upload_with_name_labels_and_preprocessing(cli: Cli, client: Client, tmp_path: Path) -> None:
    model, _ = dead_channel_model()
    path = tmp_path / "dead.onnx"
    onnx.save(model, str(path))
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\nd\n")
    code, out, _ = cli(
        "upload",
        str(path),
        "--name",
        "dead-net",
        "--labels",
        str(labels),
        "--preprocessing",
        '{"size": [8, 8], "scale": 0.5}',
    )
    assert code == 0
    info = client.get_model(out["id"])
    assert out == {
        "id": info.id,
        "name": "dead-net",
        "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 3, 8, 8]}],
        "outputs": [{"name": "relu", "dtype": "float32", "shape": [-1, 4, 8, 8]}],
        "layers": 2,
        "probe_shape": [1, 3, 8, 8],
    }
    assert info.name == "dead-net"
    assert info.labels == ("a", "b", "c", "d")
    assert info.preprocessing["size"] == [8, 8] and info.preprocessing["scale"] == 0.5
    client.delete_model(info.id)


def test_upload_bundled_is_content_addressed(cli: Cli, bundled_model_id: str) -> None:
    code, out, _ = cli("upload", str(BUNDLED_MODEL))
    assert code == 0 and out["id"] == bundled_model_id


def test_models_and_model(cli: Cli, client: Client, bundled_model_id: str) -> None:
    code, listed, _ = cli("models")
    assert code == 0
    assert [m["id"] for m in listed] == [m.id for m in client.list_models()]
    assert bundled_model_id in [m["id"] for m in listed]

    code, shown, _ = cli("model", bundled_model_id)
    assert code == 0
    info = client.get_model(bundled_model_id)
    assert shown["id"] == bundled_model_id
    assert shown["inputs"] == [{"name": "input", "dtype": "float32", "shape": [-1, 3, 224, 224]}]
    assert [layer["tensor"] for layer in shown["layers"]] == [layer.tensor for layer in info.layers]
    assert [tuple(layer["shape"]) for layer in shown["layers"]] == [layer.shape for layer in info.layers]


@pytest.mark.parametrize("source", ["image", "npy"])
def test_activations_write_npy_and_png(
    cli: Cli, client: Client, bundled_model_id: str, conv_tensors: list[str], tmp_path: Path, source: str
) -> None:
    if source == "image":
        given: Any = CAT_PHOTO
        argument = str(CAT_PHOTO)
    else:
        given = np.random.default_rng(1).random((1, 3, 224, 224), dtype=np.float32)
        argument = str(tmp_path / "input.npy")
        np.save(argument, given)
    out_dir = tmp_path / "out"
    layer_args = [arg for tensor in conv_tensors for arg in ("--layer", tensor)]
    code, out, _ = cli("activations", bundled_model_id, argument, *layer_args, "--out", str(out_dir))
    assert code == 0
    expected = client.activations(bundled_model_id, given, layers=conv_tensors)
    assert out == {"out": str(out_dir), "tensors": {t: list(expected[t].shape) for t in conv_tensors}}
    for tensor in conv_tensors:
        stem = client_cli.safe_name(tensor)
        assert "/" not in stem
        np.testing.assert_array_equal(np.load(out_dir / f"{stem}.npy"), expected[tensor])
        with Image.open(out_dir / f"{stem}.png") as picture:
            picture.load()
            assert picture.width > 0 and picture.height > 0
    assert len(list(out_dir.glob("*.npy"))) == len(conv_tensors)


def test_filters_write_npy_and_png(cli: Cli, client: Client, bundled_model_id: str, tmp_path: Path) -> None:
    node = next(layer.name for layer in client.get_model(bundled_model_id).layers if layer.op_type == "Conv")
    code, out, _ = cli("filters", bundled_model_id, node, "--out", str(tmp_path))
    assert code == 0
    expected = client.filters(bundled_model_id, node)
    stem = f"filters_{client_cli.safe_name(node)}"
    assert out["node"] == node
    assert out["shape"] == list(expected.weights.shape)
    assert out["files"] == [str(tmp_path / f"{stem}.npy"), str(tmp_path / f"{stem}.png")]
    np.testing.assert_array_equal(np.load(tmp_path / f"{stem}.npy"), expected.weights)
    with Image.open(tmp_path / f"{stem}.png") as picture:
        picture.load()
        assert picture.size[0] > 0


def test_dead_filters(cli: Cli, client: Client, tmp_path: Path) -> None:
    model, _ = dead_channel_model()
    model.graph.name = "dead_channel_cli"  # a model of its own in the shared store
    model_id = client.upload_model(model.SerializeToString()).id
    try:
        images = []
        for index, colour in enumerate([(0, 0, 0), (255, 255, 255)]):
            path = tmp_path / f"plain{index}.png"
            Image.new("RGB", (16, 16), colour).save(path)
            images.append(str(path))
        code, out, _ = cli("dead-filters", model_id, str(CAT_PHOTO), *images)
        assert code == 0
        assert out == {"relu": [DEAD_CHANNEL]}
        reports = client.dead_filters(model_id, [[CAT_PHOTO], *[[i] for i in images]])
        assert list(np.flatnonzero(reports["relu"] >= 1)) == [DEAD_CHANNEL]
        # The pre-activation Conv output is negative, not zero: no dead channels there.
        assert not (reports["conv"] >= 1).any()
    finally:
        client.delete_model(model_id)


@pytest.mark.parametrize(
    ("args", "status", "mentions"),
    [
        pytest.param(("model", "no-such-model"), grpc.StatusCode.NOT_FOUND, "no-such-model", id="unknown-model"),
        pytest.param(("delete", "no-such-model"), grpc.StatusCode.NOT_FOUND, "no-such-model", id="delete-unknown"),
    ],
)
def test_failing_call_exits_1_with_status_on_stderr(
    cli: Cli, args: tuple[str, ...], status: grpc.StatusCode, mentions: str
) -> None:
    code, out, err = cli(*args)
    assert code == 1
    assert out == ""
    assert err.startswith("error: ")
    assert status.name in err and mentions in err


def test_failing_filters_on_non_conv_layer(cli: Cli, client: Client, bundled_model_id: str, tmp_path: Path) -> None:
    node = next(layer.name for layer in client.get_model(bundled_model_id).layers if layer.op_type != "Conv")
    code, _, err = cli("filters", bundled_model_id, node, "--out", str(tmp_path / "out"))
    assert code == 1
    assert "INVALID_ARGUMENT" in err and node in err
    assert not (tmp_path / "out").exists()


def test_failing_upload_exits_1(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\xff" * 32)
    code, _, err = cli("upload", str(path))
    assert code == 1
    assert "INVALID_ARGUMENT" in err and "not an ONNX model" in err


def test_server_cli_passes_client_commands_through(cli: Cli, client: Client) -> None:
    code, listed, _ = cli("models", main=server_cli.main)
    assert code == 0
    assert [m["id"] for m in listed] == [m.id for m in client.list_models()]
