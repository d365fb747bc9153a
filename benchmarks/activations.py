"""Activations RPC vs plain onnxruntime inference of the bundled EfficientNet-Lite0.

Measures, for one preprocessed image: plain inference (the peer), the Activations path for one
layer and for all layers in-process (core.Convscope) and end-to-end through gRPC. Prints the
ratios and writes benchmarks/results/activations.json.
"""

from __future__ import annotations

import tempfile
from concurrent import futures
from pathlib import Path

import grpc
import onnxruntime as ort
from convscope_client import Client

from benchmarks._common import median_seconds, write_results
from convscope.rpc.server import ServerConfig, create_server
from convscope.runtime.providers import session_options, usable_providers

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "efficientnet_lite0" / "efficientnet_lite0.onnx"
PHOTO = REPO / "models" / "chelsea.png"


def raw_transfer_seconds(size: int) -> float:
    """A bare gRPC server-to-client transfer of ``size`` bytes: the wire's own cost on this machine."""
    payload = bytes(size)
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Send": grpc.unary_unary_rpc_method_handler(lambda request, context: payload)}
    )
    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=options)
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
            send = channel.unary_unary("/bench.Echo/Send", request_serializer=None, response_deserializer=None)
            return median_seconds(lambda: send(b""))
    finally:
        server.stop(0)


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
                prepared = lambda: core.prepare(record, tensor=batch)  # noqa: E731
                timings = {
                    "plain_onnxruntime": median_seconds(lambda: plain.run(None, feeds)),
                    "one_layer_in_process": median_seconds(lambda: core.activations(info.id, prepared(), one_layer, statistics=False)),
                    "all_layers_in_process": median_seconds(lambda: core.activations(info.id, prepared(), None, statistics=False)),
                    "all_layers_with_statistics_in_process": median_seconds(lambda: core.activations(info.id, prepared(), None)),
                    "one_layer_grpc": median_seconds(lambda: client.activations(info.id, batch, layers=one_layer)),
                    "all_layers_grpc": median_seconds(lambda: client.activations(info.id, batch)),
                }
                all_bytes = sum(v.nbytes for v in client.activations(info.id, batch).values())
                timings["raw_grpc_transfer_of_all_layer_bytes"] = raw_transfer_seconds(all_bytes)
        finally:
            running.stop(grace=1)
    base = timings["plain_onnxruntime"]
    ratios = {
        "one_layer_vs_plain": timings["one_layer_in_process"] / base,
        "all_layers_vs_plain": timings["all_layers_in_process"] / base,
        "grpc_vs_in_process_one_layer": timings["one_layer_grpc"] / timings["one_layer_in_process"],
        "grpc_vs_in_process_all_layers": timings["all_layers_grpc"] / timings["all_layers_in_process"],
        "all_layers_with_statistics_vs_plain": timings["all_layers_with_statistics_in_process"] / base,
        # What gRPC adds beyond moving the bytes, which a bare echo of the same size measures.
        "grpc_minus_raw_transfer_vs_in_process_all_layers": (
            timings["all_layers_grpc"] - timings["raw_grpc_transfer_of_all_layer_bytes"]
        ) / timings["all_layers_in_process"],
    }
    for name, seconds in timings.items():
        print(f"{name:40s} {seconds * 1e3:8.2f} ms")
    for name, ratio in ratios.items():
        print(f"{name:48s} {ratio:6.2f}x")
    print(f"all layers on the wire: {all_bytes / 2**20:.1f} MiB")
    write_results("activations", {"model": "efficientnet_lite0", "seconds": timings, "ratios": ratios, "all_layers_bytes": all_bytes, "providers": list(usable_providers())})


if __name__ == "__main__":
    main()
