"""What the interceptors (metrics and request id, tokens, deadlines with RunOptions.terminate)
cost per call: the full server against a bare gRPC server over the same core, interleaved.

Times a ListModels call (the fixed cost shows alone) and a one-layer Activations call of the
bundled EfficientNet-Lite0 (a typical call). Prints the ratios and writes
benchmarks/results/interceptors.json.
"""

from __future__ import annotations

import tempfile
from concurrent import futures
from pathlib import Path

import grpc

from benchmarks._common import interleaved, write_results
from convscope.rpc.server import ServerConfig, add_servicer, create_server
from convscope.rpc.servicer import ConvscopeServicer
from convscope_client import Client

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "efficientnet_lite0" / "efficientnet_lite0.onnx"
PHOTO = REPO / "models" / "chelsea.png"
TOKEN = "benchmark-token-0123456789abcdef"


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        tokens = Path(folder) / "tokens"
        tokens.write_text(f"bench write {TOKEN}\n")
        full = create_server(ServerConfig(store=Path(folder) / "store", token_file=tokens, metrics_port=0))
        bare = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=[("grpc.max_send_message_length", -1)])
        add_servicer(ConvscopeServicer(full.core), bare)
        bare_port = bare.add_insecure_port("127.0.0.1:0")
        bare.start()
        try:
            with (
                Client(f"127.0.0.1:{full.port}", timeout=600, token=TOKEN) as guarded,
                Client(f"127.0.0.1:{bare_port}", timeout=600) as plain,
            ):
                info = guarded.upload_model(MODEL)
                record = full.core.model(info.id)
                batch = full.core.prepare(record, images=[PHOTO.read_bytes()]).batch
                layer = [next(entry.tensor for entry in record.layers if entry.op_type == "Clip")]
                # One round per call kind, so a cheap call never follows an expensive one; each
                # round twice, the peers in both orders, so neither always runs first.
                calls = {
                    "list_models": (plain.list_models, guarded.list_models),
                    "activations": (
                        lambda: plain.activations(info.id, batch, layers=layer),
                        lambda: guarded.activations(info.id, batch, layers=layer),
                    ),
                }
                timings = {}
                for call, (on_bare, on_full) in calls.items():
                    for order in ((("bare", on_bare), ("full", on_full)), (("full", on_full), ("bare", on_bare))):
                        for peer, t in interleaved({peer: work for peer, work in order}, repeats=75).items():
                            kept = timings.setdefault(f"{call}_{peer}", {"min": t["min"], "median": 0.0})
                            kept["min"] = min(kept["min"], t["min"])
                            kept["median"] += t["median"] / 2  # the mean of the two orders' medians
        finally:
            bare.stop(0)
            full.stop(grace=1)
    median = {name: t["median"] for name, t in timings.items()}
    ratios = {f"{call}_full_vs_bare": median[f"{call}_full"] / median[f"{call}_bare"] for call in ("list_models", "activations")}
    ratios |= {
        f"{call}_full_vs_bare_minima": timings[f"{call}_full"]["min"] / timings[f"{call}_bare"]["min"]
        for call in ("list_models", "activations")
    }
    added_ms = {
        f"{call}_added_ms": (median[f"{call}_full"] - median[f"{call}_bare"]) * 1e3 for call in ("list_models", "activations")
    }
    for name, t in timings.items():
        print(f"{name:24s} median {t['median'] * 1e3:8.3f} ms   min {t['min'] * 1e3:8.3f} ms")
    for name, value in {**ratios, **added_ms}.items():
        print(f"{name:36s} {value:7.3f}")
    write_results("interceptors", {"model": "efficientnet_lite0", "seconds": timings, "ratios": ratios, **added_ms})


if __name__ == "__main__":
    main()
