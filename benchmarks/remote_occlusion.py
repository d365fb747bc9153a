"""Occlusion of a remote model (black box, Open Inference Protocol) against the same method run
locally on the same weights.

A second process runs ``convscope serve`` with the bundled EfficientNet-Lite0 and answers
``ModelInfer`` (what Triton or KServe would do); ``convscope.oip.remote.remote_occlusion`` sends
it every occluded batch. The peer, in this process: ``Convscope.occlusion`` on the same model and
input with the batched engine (the same arithmetic; what remote adds is serialization and gRPC),
and the default engine ("auto": incremental where it saves work, which a black box cannot do).
The cat photo, window 32 stride 16 (169 positions), fill 0, the top-1 class, batches of 16. The
works are interleaved repeat by repeat (the machine is shared); the ratios are remote / local.
Writes benchmarks/results/remote_occlusion.json.

    .venv/bin/python -m benchmarks.remote_occlusion
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks._common import interleaved, write_results
from convscope.core import Convscope
from convscope.methods.occlusion import OcclusionOptions, OcclusionResult
from convscope.model.preprocessing import input_from_tensor
from convscope.oip.remote import RemoteModel, remote_occlusion
from convscope_client import Client
from tests.oip.server_process import serving_process

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "efficientnet_lite0" / "efficientnet_lite0.onnx"
CAT = REPO / "models" / "chelsea.png"
REPEATS = 5
SETTINGS = {"window": (32, 32), "stride": (16, 16), "batch_size": 16}


def _result(events: object) -> OcclusionResult:
    return [event for event in events if isinstance(event, OcclusionResult)][0]  # type: ignore[attr-defined]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, serving_process(Path(tmp)) as address:
        with Client(address, timeout=300) as client:
            client.upload_model(MODEL, name="lite0")
        core = Convscope(Path(tmp) / "local-store")
        record = core.upload([("", MODEL.read_bytes())], name="lite0")
        model_input = core.prepare(record, images=[CAT.read_bytes()])
        with RemoteModel(address, "lite0") as remote:
            remote_input = input_from_tensor(remote.record(), model_input.batch)
            works: dict[str, Callable[[], OcclusionResult]] = {
                "remote": lambda: _result(remote_occlusion(remote, remote_input, OcclusionOptions.parse(**SETTINGS))),
                "local_batched": lambda: _result(
                    core.occlusion(record.id, model_input, OcclusionOptions.parse(**SETTINGS, engine="batched"))
                ),
                "local_auto": lambda: _result(core.occlusion(record.id, model_input, OcclusionOptions.parse(**SETTINGS))),
            }
            answers = {name: work() for name, work in works.items()}
            error = float(
                np.linalg.norm(answers["remote"].positions - answers["local_batched"].positions)
                / np.linalg.norm(answers["local_batched"].positions)
            )
            times = interleaved(works, repeats=REPEATS, warmup=1)
        core.close()
    positions = int(answers["remote"].positions[0].size)
    ratios = {
        f"remote_over_{name}": times["remote"]["median"] / times[name]["median"] for name in ("local_batched", "local_auto")
    }
    for name, seconds in times.items():
        print(
            f"{name:>14}: {seconds['median']:.2f} s median ({positions / seconds['median']:.0f} positions/s), min {seconds['min']:.2f} s"
        )
    for name, ratio in ratios.items():
        print(f"{name}: {ratio:.2f}x")
    print(f"remote vs local batched positions, relative L2: {error:.1e}")
    write_results(
        "remote_occlusion",
        {
            "settings": {**SETTINGS, "positions": positions, "repeats": REPEATS},
            "seconds": times,
            "ratios": ratios,
            "relative_l2": error,
        },
    )


if __name__ == "__main__":
    main()
