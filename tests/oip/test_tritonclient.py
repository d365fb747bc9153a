"""The Open Inference Protocol endpoint against the real ``tritonclient.grpc.InferenceServerClient``.

tritonclient pins protobuf < 7 and this project runs protobuf 7, so the client lives in its own
interpreter, ``.venv/oip/`` (``scripts/bootstrap.sh test`` builds it; ``scripts/test.sh`` runs
that): ``tritonclient_calls.py`` makes the calls there against the server this test started,
and the test compares what it received with convscope's own API on the same server —
bit-equal tensors, since both run the same onnxruntime graphs.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from convscope.rpc.server import RunningServer
from convscope_client import Client
from tests.conftest import BUNDLED_MODEL, CAT_PHOTO, REPO

OIP_PYTHON = REPO / ".venv" / "oip" / "bin" / "python"
LAYER = "/_blocks.3/_project_conv/Conv_output_0"
CAT = 282  # tiger cat


@pytest.fixture(scope="module")
def triton_calls(
    server: RunningServer, client: Client, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict, dict, np.ndarray, str]:
    if not OIP_PYTHON.exists():
        pytest.skip(".venv/oip is absent: `bash scripts/bootstrap.sh test` builds tritonclient's interpreter")
    model = client.upload_model(BUNDLED_MODEL)
    record = server.core.model(model.id)
    image = server.core.prepare(record, images=[CAT_PHOTO.read_bytes()]).batch
    out = tmp_path_factory.mktemp("tritonclient")
    np.save(out / "cat.npy", image)
    script = Path(__file__).with_name("tritonclient_calls.py")
    done = subprocess.run(
        [str(OIP_PYTHON), str(script), f"127.0.0.1:{server.port}", model.name, str(out / "cat.npy"), LAYER, str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    arrays = dict(np.load(out / "arrays.npz"))
    return json.loads((out / "calls.json").read_text()), arrays, image, model.id


def test_readiness_and_metadata(triton_calls: tuple, client: Client) -> None:
    calls, _, _, model_id = triton_calls
    assert calls["live"] and calls["ready"] and calls["model_ready"]
    assert calls["unknown_model_ready"] is False
    assert calls["server"]["name"] == "convscope" and "convscope.attribution" in calls["server"]["extensions"]
    metadata = calls["metadata"]
    assert metadata["versions"] == [model_id] and metadata["platform"] == "onnxruntime_onnx"
    info = client.get_model(model_id)
    assert [(t["name"], t["datatype"]) for t in metadata["inputs"]] == [(info.inputs[0].name, "FP32")]
    assert [int(d) for d in metadata["inputs"][0]["shape"]] == [-1, 3, 224, 224]
    assert [t["name"] for t in metadata["outputs"]] == [o.name for o in info.outputs]


def test_logits_and_intermediate_tensor_equal_the_activations_rpc(triton_calls: tuple, client: Client) -> None:
    calls, arrays, image, model_id = triton_calls
    output = calls["metadata"]["outputs"][0]["name"]
    ours = client.activations(model_id, image, layers=[output, LAYER])
    np.testing.assert_array_equal(arrays["logits"], ours[output])
    np.testing.assert_array_equal(arrays["layer"], ours[LAYER])
    assert arrays["layer"].shape == (1, 40, 28, 28)
    assert calls["default_outputs"] == [output]
    np.testing.assert_array_equal(arrays["default_logits"], client.activations(model_id, image, layers=[output])[output])


def test_attribution_output_equals_client_attribution(triton_calls: tuple, client: Client) -> None:
    calls, arrays, image, model_id = triton_calls
    cam = client.attribution(model_id, image, method="grad_cam", target=CAT)
    np.testing.assert_array_equal(arrays["attribution"], cam.map)
    assert calls["attribution_shape"] == [1, 224, 224]
    parameters = calls["attribution_parameters"]
    assert parameters["method"] == "grad_cam" and parameters["targets"] == str(CAT)
    assert parameters["layer"] == cam.layer


def test_errors_are_the_protocol_status_codes(triton_calls: tuple) -> None:
    errors = triton_calls[0]["errors"]
    assert errors["unknown_model"]["status"] == "StatusCode.NOT_FOUND"
    assert "no-such-model" in errors["unknown_model"]["message"]
    # convscope's own API answers an unknown tensor NOT_FOUND with the closest names (Triton: INVALID_ARGUMENT).
    assert errors["unknown_output"]["status"] == "StatusCode.NOT_FOUND"
    assert "no/such/tensor" in errors["unknown_output"]["message"]
    assert errors["wrong_datatype"]["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "float32" in errors["wrong_datatype"]["message"]
    assert errors["wrong_shape"]["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "shape" in errors["wrong_shape"]["message"]
    assert errors["unknown_method"]["status"] == "StatusCode.INVALID_ARGUMENT"
