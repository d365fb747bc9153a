"""Calls a live convscope server with the real tritonclient, as a Triton user would.

Runs in .venv/oip (tritonclient pins protobuf < 7, the project uses 7), started by
test_tritonclient.py: ``python tritonclient_calls.py ADDRESS MODEL INPUT.npy LAYER OUT_DIR``.
Writes OUT_DIR/calls.json (metadata, readiness, output parameters, error statuses) and
OUT_DIR/arrays.npz (the tensors received); the test compares them with convscope's own API.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException


def failure(call) -> dict[str, str]:  # type: ignore[no-untyped-def]
    try:
        call()
    except InferenceServerException as error:
        return {"status": str(error.status()), "message": str(error.message())}
    return {"status": "OK", "message": ""}


def main(address: str, model: str, input_path: str, layer: str, out_dir: str) -> None:
    image = np.load(input_path)
    client = triton.InferenceServerClient(address)
    metadata = client.get_model_metadata(model, as_json=True)
    server = client.get_server_metadata(as_json=True)
    input_name, output_name = metadata["inputs"][0]["name"], metadata["outputs"][0]["name"]

    def tensor(value: np.ndarray, datatype: str = "FP32") -> triton.InferInput:
        sent = triton.InferInput(input_name, list(value.shape), datatype)
        sent.set_data_from_numpy(value)
        return sent

    requested = [triton.InferRequestedOutput(name) for name in (output_name, layer, "convscope.attribution")]
    result = client.infer(
        model,
        [tensor(image)],
        outputs=requested,
        parameters={"convscope.attribution.method": "grad_cam", "convscope.attribution.target": 282},
    )
    by_default = client.infer(model, [tensor(image)])  # no outputs named: the model's outputs
    attribution = result.get_output("convscope.attribution")
    calls = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "server": server,
        "model_ready": client.is_model_ready(model),
        "unknown_model_ready": client.is_model_ready("no-such-model"),
        "metadata": metadata,
        "default_outputs": [output.name for output in by_default.get_response().outputs],
        "attribution_parameters": {key: value.string_param for key, value in attribution.parameters.items()},
        "attribution_shape": list(attribution.shape),
        "errors": {
            "unknown_model": failure(lambda: client.infer("no-such-model", [tensor(image)])),
            "unknown_output": failure(
                lambda: client.infer(model, [tensor(image)], outputs=[triton.InferRequestedOutput("no/such/tensor")])
            ),
            "wrong_datatype": failure(lambda: client.infer(model, [tensor(image.astype(np.float64), "FP64")])),
            "wrong_shape": failure(lambda: client.infer(model, [tensor(image[:, :, :100])])),
            "unknown_method": failure(
                lambda: client.infer(
                    model,
                    [tensor(image)],
                    outputs=[triton.InferRequestedOutput("convscope.attribution")],
                    parameters={"convscope.attribution.method": "no_such_method"},
                )
            ),
        },
    }
    out = Path(out_dir)
    (out / "calls.json").write_text(json.dumps(calls, indent=1))
    np.savez(
        out / "arrays.npz",
        logits=result.as_numpy(output_name),
        layer=result.as_numpy(layer),
        attribution=result.as_numpy("convscope.attribution"),
        default_logits=by_default.as_numpy(output_name),
    )
    client.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
