"""The installed CLI as a user runs it: a subprocess against a live server, judged by its exit
code and its one-line messages (never a traceback)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from convscope.rpc.server import RunningServer
from convscope_client import Client
from convscope_client.choices import AttributionMethod
from convscope_client.cli import safe_name
from tests.conftest import BUNDLED_MODEL, CAT_PHOTO, REPO
from tests.test_client_cli import dead_channel_model

# A liveness bound for one CLI call (the server may build a backward graph), not a speed assertion.
CALL_SECONDS = 300
MISSING = "/no/such"


def convscope(*args: str, address: str | None = None, timeout: float = CALL_SECONDS) -> subprocess.CompletedProcess[str]:
    """``convscope [--address A] ARGS`` in a fresh interpreter; stderr never holds a traceback."""
    prefix = ["--address", address] if address else []
    done = subprocess.run(
        [sys.executable, "-m", "convscope", *prefix, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def address(server: RunningServer) -> str:
    return f"127.0.0.1:{server.port}"


@pytest.fixture(scope="module")
def small_model(client: Client, tmp_path_factory: pytest.TempPathFactory) -> str:
    model, _ = dead_channel_model()
    model.graph.name = "cli_subprocess"  # a model of its own in the shared store
    path = tmp_path_factory.mktemp("small") / "small.onnx"
    onnx.save(model, str(path))
    return str(path)


# -- 1. a used port


def test_second_server_on_a_used_port_exits_1(server: RunningServer, tmp_path: Path) -> None:
    done = convscope("serve", "--port", str(server.port), "--store", str(tmp_path / "store"))
    assert done.returncode == 1
    assert f"error: port {server.port} is already in use" in done.stderr
    assert "Traceback" not in done.stderr


# -- 2, 3. bad local input is caught before anything is sent


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("upload", f"{MISSING}.onnx"), id="upload"),
        pytest.param(("upload", str(BUNDLED_MODEL), "--labels", f"{MISSING}.txt"), id="upload-labels"),
        pytest.param(("embedding", "MODEL", f"{MISSING}/folder/"), id="embedding"),
        pytest.param(("top-activations", "MODEL", f"{MISSING}.png", "--layer", "relu"), id="top-activations"),
        pytest.param(("dead-filters", "MODEL", f"{MISSING}.png"), id="dead-filters"),
        pytest.param(("activations", "MODEL", f"{MISSING}.png"), id="activations"),
        pytest.param(("attribution", "MODEL", f"{MISSING}.png", "--method", "saliency"), id="attribution"),
        pytest.param(("occlusion", "MODEL", f"{MISSING}.png"), id="occlusion"),
        pytest.param(
            ("attribution", "MODEL", str(CAT_PHOTO), "--method", "integrated_gradients", "--baseline", f"{MISSING}.npy"),
            id="baseline",
        ),
    ],
)
def test_missing_local_path_exits_2_before_calling(
    address: str, bundled_model_id: str, args: tuple[str, ...], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    args = tuple(bundled_model_id if a == "MODEL" else a for a in args)
    done = convscope(*args, address=address)
    assert done.returncode == 2
    missing = next(a for a in args if a.startswith(MISSING))
    assert one_line_error(done) == f"error: no such file: {missing}"
    assert not caplog.records, "a client's bad path reached the server"


def test_unknown_preprocessing_key_is_one_line(address: str, small_model: str) -> None:
    done = convscope("upload", small_model, "--preprocessing", '{"sise": [8, 8]}', address=address)
    assert done.returncode == 2
    assert "unknown preprocessing field(s) ['sise']" in one_line_error(done)


def test_ctrl_c_cancels_occlusion_and_exits_130(address: str, bundled_model_id: str, tmp_path: Path) -> None:
    log = tmp_path / "stderr.txt"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "convscope",
                "--address",
                address,
                "occlusion",
                bundled_model_id,
                str(CAT_PHOTO),
                "--window",
                "8",
                "8",
                "--stride",
                "4",
                "4",
                "--batch-size",
                "2",
                "--engine",
                "batched",
                "--out",
                str(tmp_path),
            ],
            stderr=stderr,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        deadline = time.monotonic() + CALL_SECONDS
        # Interrupted once the bar shows a rate and the time left (item 12): the call is under way.
        while "ETA" not in log.read_text() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=CALL_SECONDS) == 130
    text = log.read_text()
    assert "Traceback" not in text
    assert text.rstrip().splitlines()[-1] == "cancelled: the server stops working on the call"
    assert "positions/s" in text and "ETA" in text
    assert not (tmp_path / "occlusion.png").exists()


# -- 4. what the commands print and accept


def test_models_counts_layers_and_model_prints_json(address: str, client: Client, bundled_model_id: str) -> None:
    listed = convscope("models", address=address)
    assert listed.returncode == 0
    info = client.get_model(bundled_model_id)
    entry = next(m for m in json.loads(listed.stdout) if m["id"] == bundled_model_id)
    assert entry["layers"] == len(info.layers) > 0

    shown = convscope("model", bundled_model_id[:12], address=address)
    assert shown.returncode == 0
    layers = json.loads(shown.stdout)["layers"]
    field = next(layer["receptive_field"] for layer in layers if layer["receptive_field"])
    assert set(field) == {"stride", "size", "offset", "global_context"}


def test_a_unique_prefix_names_a_model_and_a_short_one_does_not(address: str, bundled_model_id: str) -> None:
    for prefix in (bundled_model_id[:8], bundled_model_id[:12]):
        done = convscope("model", prefix, address=address)
        assert done.returncode == 0 and json.loads(done.stdout)["id"] == bundled_model_id
    done = convscope("model", bundled_model_id[:7], address=address)
    assert done.returncode == 1
    assert "NOT_FOUND" in one_line_error(done) and "`convscope models`" in done.stderr


def test_export_backward_writes_into_the_out_folder(address: str, client: Client, small_model: str, tmp_path: Path) -> None:
    model_id = client.upload_model(small_model).id
    done = convscope("export-backward", model_id, "--out", str(tmp_path), address=address)
    assert done.returncode == 0
    path = tmp_path / "backward.onnx"
    assert json.loads(done.stdout)["files"] == [str(path)]
    graph = onnx.load(str(path))
    assert "x__grad" in [o.name for o in graph.graph.output]


def test_layers_by_node_or_tensor_name_with_suggestions(
    address: str, client: Client, bundled_model_id: str, tmp_path: Path
) -> None:
    stem = next(layer for layer in client.get_model(bundled_model_id).layers if layer.op_type == "Conv")
    assert stem.name != stem.tensor
    by_node = convscope(
        "activations", bundled_model_id, str(CAT_PHOTO), "--layer", stem.name, "--out", str(tmp_path), address=address
    )
    assert by_node.returncode == 0
    assert list(json.loads(by_node.stdout)["tensors"]) == [stem.tensor]
    by_tensor = convscope("filters", bundled_model_id, stem.tensor, "--out", str(tmp_path), address=address)
    assert by_tensor.returncode == 0 and json.loads(by_tensor.stdout)["node"] == stem.name

    typo = stem.name.replace("Conv", "Conb")
    done = convscope("activations", bundled_model_id, str(CAT_PHOTO), "--layer", typo, address=address)
    assert done.returncode == 1
    line = one_line_error(done)
    assert "NOT_FOUND" in line and f"did you mean '{stem.name}'" in line and "convscope model" in line


# -- 5. help, defaults, every client option, a fast start


def test_help_lists_methods_and_defaults() -> None:
    attribution = convscope("attribution", "--help")
    assert attribution.returncode == 0
    text = " ".join(attribution.stdout.split())
    for method in AttributionMethod:
        assert method in text
    for option in ("--steps", "--samples", "--noise", "--rectifiers", "--baseline", "--seed", "--integration"):
        assert option in text
    assert "(default: 50)" in text and "(default: convscope-out)" in text
    assert "(default: localhost:50051)" in " ".join(convscope("--help").stdout.split())
    occlusion = " ".join(convscope("occlusion", "--help").stdout.split())
    assert "--batch-size" in occlusion and "(default: (32, 32))" in occlusion
    serve = " ".join(convscope("serve", "--help").stdout.split())
    for shown in ("--max-upload-mb MAX_UPLOAD_MB largest model upload", "(default: 50051)", "(default: convscope-store)"):
        assert shown in serve


def test_client_commands_do_not_import_the_server(address: str) -> None:
    """What keeps `convscope --help` and client commands fast: onnxruntime is never loaded."""
    probe = (
        "import sys\nfrom convscope.cli import main\ntry:\n    code = main(sys.argv[1:])\n"
        "except SystemExit as stop:\n    code = stop.code\n"
        "print(code, 'onnxruntime' in sys.modules, 'convscope.core' in sys.modules, file=sys.stderr)"
    )
    for args in (["--help"], ["--address", address, "models"]):
        done = subprocess.run(
            [sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=CALL_SECONDS, cwd=REPO
        )
        assert done.stderr.strip().splitlines()[-1] == "0 False False", done.stderr


def test_attribution_options_reach_the_client_and_name_the_layer(
    address: str, client: Client, bundled_model_id: str, tmp_path: Path
) -> None:
    done = convscope(
        "attribution", bundled_model_id, str(CAT_PHOTO), "--method", "grad_cam", "--out", str(tmp_path), address=address
    )
    assert done.returncode == 0
    printed = json.loads(done.stdout)
    expected = client.attribution(bundled_model_id, CAT_PHOTO, method="grad_cam")
    assert printed["layer"] == expected.layer != ""

    model_id = client.upload_model(dead_channel_model()[0].SerializeToString()).id
    x = np.random.default_rng(3).random((1, 3, 8, 8), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    done = convscope(
        "attribution",
        model_id,
        str(tmp_path / "x.npy"),
        "--method",
        "integrated_gradients",
        "--target",
        "5",
        "--baseline",
        "0.25",
        "--integration",
        "riemann_middle",
        "--steps",
        "4",
        "--out",
        str(tmp_path),
        address=address,
    )
    assert done.returncode == 0
    expected = client.attribution(
        model_id, x, method="integrated_gradients", target=5, baseline=0.25, integration="riemann_middle", steps=4
    )
    np.testing.assert_array_equal(np.load(tmp_path / "integrated_gradients.npy"), expected.map)
    assert os.path.getsize(tmp_path / "integrated_gradients.npy") > 0


# -- 8. which channels an activation grid draws


def test_activation_grid_says_which_channels_it_draws(
    address: str, client: Client, bundled_model_id: str, tmp_path: Path
) -> None:
    deep = "/_swish_1/Clip_output_0"  # 1280 channels of 7×7
    default = client.activation_details(bundled_model_id, CAT_PHOTO, layers=[deep], render=True)[0]
    assert default.shown_channels == tuple(range(256))

    done = convscope(
        "activations",
        bundled_model_id,
        str(CAT_PHOTO),
        "--layer",
        deep,
        "--top-channels",
        "16",
        "--out",
        str(tmp_path),
        address=address,
    )
    assert done.returncode == 0
    value = np.load(tmp_path / f"{safe_name(deep)}.npy")[0]
    means = value.reshape(value.shape[0], -1).mean(axis=1)
    drawn = json.loads(done.stdout)["drawn_channels"][deep]
    assert drawn == list(np.argsort(-means, kind="stable")[:16])

    done = convscope(
        "activations",
        bundled_model_id,
        str(CAT_PHOTO),
        "--layer",
        deep,
        "--channel",
        "5",
        "--channel",
        "900",
        "--out",
        str(tmp_path),
        address=address,
    )
    assert done.returncode == 0 and json.loads(done.stdout)["drawn_channels"][deep] == [5, 900]

    done = convscope("activations", bundled_model_id, str(CAT_PHOTO), "--layer", deep, "--channel", "1280", address=address)
    assert done.returncode == 1
    assert "INVALID_ARGUMENT" in one_line_error(done) and "1280 channels" in done.stderr


def test_the_python_client_checks_local_paths_before_calling(
    client: Client, bundled_model_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    for call, missing in (
        (lambda: client.upload_model(f"{MISSING}.onnx"), f"{MISSING}.onnx"),
        (lambda: client.embedding(bundled_model_id, f"{MISSING}/folder/"), f"{MISSING}/folder/"),
        (lambda: client.dead_filters(bundled_model_id, [str(CAT_PHOTO), f"{MISSING}.png"]), f"{MISSING}.png"),
    ):
        with pytest.raises(FileNotFoundError, match=f"no such file: {missing}"):
            call()
    assert not caplog.records, "a bad local path reached the server"
