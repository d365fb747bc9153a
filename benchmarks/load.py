"""Load held: concurrent clients against ``convscope serve`` (sandboxed workers, loopback only).

Each client loops until the time is up, picking by weight: one-layer activations of the cat
photo on EfficientNet-Lite0, a gradient map (saliency), an occlusion map (64-pixel window and
stride: 9 positions) and the upload of a small model (new bytes each time, so each is
validated and probed in a worker). Bounded in clients, time and store size; the server runs
with ``--max-concurrent-rpcs`` below the client count, so RESOURCE_EXHAUSTED answers are
intended: the client backs off and tries again. Any other error counts as one.

Reported: p50/p99 latency per method, throughput, errors by status, and the resident memory
of the server plus its workers sampled through the run (at the end of minute 1, or a fifth of
a shorter run, against the end: goal ≤ 10 % growth after warm-up). Writes
benchmarks/results/load.json.

    .venv/bin/python -m benchmarks.load --clients 50 --minutes 5      # the issue's run
    .venv/bin/python -m benchmarks.load --clients 8 --minutes 1       # a short one
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np
from onnx import TensorProto, helper, numpy_helper

from benchmarks._common import write_results
from convscope_client import Client, ConvscopeError

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "efficientnet_lite0" / "efficientnet_lite0.onnx"
PHOTO = (REPO / "models" / "chelsea.png").read_bytes()
MIX = {"activations": 6, "gradient_map": 3, "occlusion": 1, "upload": 1}
BACKOFF_S = 0.05
MAX_UPLOADS = 2000  # bounds the store: later uploads repeat earlier bytes


def resident_bytes(pid: int) -> int:
    """RSS of ``pid`` and its children (the workers), from /proc."""
    total = 0
    for each in [pid, *_children(pid)]:
        try:
            with open(f"/proc/{each}/status") as status:
                total += next(int(line.split()[1]) << 10 for line in status if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            continue
    return total


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(child) for child in task.read_text().split()]
    return found + [grandchild for child in found for grandchild in _children(child)]


def start_server(store: Path, workers: int, max_rpcs: int) -> tuple[subprocess.Popen[bytes], int]:
    port_file = store / "port"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "convscope",
            "serve",
            "--store",
            str(store / "models"),
            "--port",
            "0",
            "--port-file",
            str(port_file),
            "--workers",
            str(workers),
            "--max-concurrent-rpcs",
            str(max_rpcs),
            "--log-level",
            "WARNING",
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not port_file.exists() or not port_file.read_text().strip():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.1)
    return process, int(port_file.read_text())


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = collections.defaultdict(list)
        self.codes: collections.Counter[tuple[str, str]] = collections.Counter()

    def record(self, method: str, seconds: float, code: str) -> None:
        with self.lock:
            self.codes[(method, code)] += 1
            if code == "OK":
                self.latency[method].append(seconds)


def client_loop(address: str, model_id: str, layer: str, until: float, recorder: Recorder, seed: int, uploads: list[int]) -> None:
    rng = random.Random(seed)
    calls = {
        "activations": lambda client: client.activations(model_id, PHOTO, layers=[layer]),
        "gradient_map": lambda client: client.attribution(model_id, PHOTO, method="saliency"),
        "occlusion": lambda client: client.occlusion(model_id, PHOTO, window=(64, 64), stride=(64, 64)),
        "upload": lambda client: client.upload_model(_next_upload(uploads), preprocessing={"size": [8, 8]}),
    }
    methods, weights = list(MIX), list(MIX.values())
    with Client(address, timeout=300) as client:
        while time.monotonic() < until:
            method = rng.choices(methods, weights)[0]
            started = time.perf_counter()
            try:
                calls[method](client)
                code = "OK"
            except ConvscopeError as error:
                code = error.code.name
            recorder.record(method, time.perf_counter() - started, code)
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED.name:
                time.sleep(BACKOFF_S * (1 + rng.random()))


def _next_upload(uploads: list[int]) -> bytes:
    """x[N,3,8,8] → Conv(4, 3×3) → Relu, its weights seeded by the upload's index (new bytes)."""
    with _upload_lock:
        uploads[0] += 1
        index = uploads[0] % MAX_UPLOADS
    weight = np.random.default_rng(index).standard_normal((4, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])],
        f"load_{index}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])],
        initializer=[numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model.SerializeToString()


_upload_lock = threading.Lock()


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=2, help="the server's --workers")
    parser.add_argument("--max-concurrent-rpcs", type=int, help="default: three quarters of --clients")
    args = parser.parse_args()
    max_rpcs = args.max_concurrent_rpcs or max(1, args.clients * 3 // 4)
    seconds = args.minutes * 60
    warm_mark = min(60.0, seconds / 5)  # "minute 1" of a 5-minute run

    with tempfile.TemporaryDirectory() as tmp:
        server, port = start_server(Path(tmp), args.workers, max_rpcs)
        address = f"127.0.0.1:{port}"
        try:
            with Client(address, timeout=300) as setup:
                info = setup.upload_model(MODEL)
                layer = next(layer.tensor for layer in info.layers if layer.op_type == "Clip")
                setup.activations(info.id, PHOTO, layers=[layer])  # the sessions are built before the clock starts
                setup.attribution(info.id, PHOTO, method="saliency")
            recorder, uploads = Recorder(), [0]
            started = time.monotonic()
            until = started + seconds
            threads = [
                threading.Thread(target=client_loop, args=(address, info.id, layer, until, recorder, seed, uploads), daemon=True)
                for seed in range(args.clients)
            ]
            for thread in threads:
                thread.start()
            memory: list[tuple[float, int]] = []
            while time.monotonic() < until:
                time.sleep(min(5.0, max(0.0, until - time.monotonic())))
                memory.append((time.monotonic() - started, resident_bytes(server.pid)))
            for thread in threads:
                thread.join(timeout=600)
            elapsed = time.monotonic() - started
        finally:
            server.terminate()
            server.wait(timeout=60)

    at_warm = min(memory, key=lambda sample: abs(sample[0] - warm_mark))
    at_end = memory[-1]
    methods = {}
    for method in MIX:
        done = recorder.latency.get(method, [])
        methods[method] = {
            "ok": len(done),
            "p50_s": percentile(done, 50),
            "p99_s": percentile(done, 99),
            "per_second": len(done) / elapsed,
            "codes": {code: count for (m, code), count in recorder.codes.items() if m == method},
        }
    errors = {f"{m}:{code}": n for (m, code), n in recorder.codes.items() if code not in ("OK", "RESOURCE_EXHAUSTED")}
    refused = sum(n for (m, code), n in recorder.codes.items() if code == "RESOURCE_EXHAUSTED")
    growth = at_end[1] / at_warm[1] - 1
    print(
        f"{args.clients} clients, {elapsed:.0f} s, server --workers {args.workers} --max-concurrent-rpcs {max_rpcs}, load average {os.getloadavg()[0]:.1f}"
    )
    for method, row in methods.items():
        print(
            f"  {method:13s} {row['ok']:6d} ok  {row['per_second']:6.2f}/s  p50 {row['p50_s'] * 1e3:8.1f} ms  p99 {row['p99_s'] * 1e3:8.1f} ms  {row['codes']}"
        )
    print(
        f"  throughput {sum(r['ok'] for r in methods.values()) / elapsed:.2f} calls/s; RESOURCE_EXHAUSTED (intended) {refused}; other errors {errors or 'none'}"
    )
    print(
        f"  server + workers RSS: {at_warm[1] / 2**20:.0f} MiB at {at_warm[0]:.0f} s, {at_end[1] / 2**20:.0f} MiB at {at_end[0]:.0f} s: {growth * 100:+.1f} % (goal <= +10 %)"
    )
    write_results(
        "load",
        {
            "clients": args.clients,
            "seconds": elapsed,
            "workers": args.workers,
            "max_concurrent_rpcs": max_rpcs,
            "mix": MIX,
            "methods": methods,
            "errors": errors,
            "resource_exhausted": refused,
            "rss_bytes": memory,
            "rss_growth_after_warmup": growth,
            "load_average": os.getloadavg(),
        },
    )


if __name__ == "__main__":
    main()
