"""Activations RPC vs plain onnxruntime inference of the bundled EfficientNet-Lite0.

Measures, for one preprocessed image: plain inference (the peer), the Activations path for one
layer and for all layers in-process (core.Convscope) and end-to-end through gRPC. Prints the
ratios and writes benchmarks/results/activations.json.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
from convscope_client import Client

from benchmarks._common import median_seconds, write_results
from convscope.rpc.server import ServerConfig, create_server
from convscope.runtime.providers import session_options, usable_providers

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "efficientnet_lite0" / "efficientnet_lite0.onnx"
PHOTO = REPO / "models" / "chelsea.png"


def main() -> None:
    with tempfile.TemporaryDirectory() as store:
        running = create_server(ServerConfig(store=Path(store)))
        core = running.core
        try:
            with Client(f"127.0.0.1:{running.port}", timeout=600) as client:
                info = client.upload_model(MODEL)
                record = core.model(info.id)
                batch = core.prepare(record, images=[PHOTO.read_bytes()]).batch
                plain = ort.InferenceSession(str(MODEL), session_options(), providers=list(usable_providers()))
                feeds = {record.input.name: batch}
                one_layer = [next(layer.tensor for layer in record.layers if layer.op_type == "Clip")]
                all_layers = None
                timings = {
                    "plain_onnxruntime": median_seconds(lambda: plain.run(None, feeds)),
                    "one_layer_in_process": median_seconds(lambda: core.activations(info.id, core.prepare(record, tensor=batch), one_layer)),
                    "all_layers_in_process": median_seconds(lambda: core.activations(info.id, core.prepare(record, tensor=batch), all_layers)),
                    "one_layer_grpc": median_seconds(lambda: client.activations(info.id, batch, layers=one_layer)),
                    "all_layers_grpc": median_seconds(lambda: client.activations(info.id, batch)),
                }
                all_bytes = sum(v.nbytes for v in client.activations(info.id, batch).values())
        finally:
            running.stop(grace=1)
    base = timings["plain_onnxruntime"]
    ratios = {
        "one_layer_vs_plain": timings["one_layer_in_process"] / base,
        "all_layers_vs_plain": timings["all_layers_in_process"] / base,
        "grpc_vs_in_process_one_layer": timings["one_layer_grpc"] / timings["one_layer_in_process"],
        "grpc_vs_in_process_all_layers": timings["all_layers_grpc"] / timings["all_layers_in_process"],
    }
    for name, seconds in timings.items():
        print(f"{name:28s} {seconds * 1e3:8.2f} ms")
    for name, ratio in ratios.items():
        print(f"{name:32s} {ratio:6.2f}x")
    print(f"all layers on the wire: {all_bytes / 2**20:.1f} MiB")
    write_results("activations", {"model": "efficientnet_lite0", "seconds": timings, "ratios": ratios, "all_layers_bytes": all_bytes, "providers": list(usable_providers())})


if __name__ == "__main__":
    main()
