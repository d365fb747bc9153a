"""Dataset-job throughput: the local engine against Ray with 1 and 2 workers, on this machine.

A dead-filters job (every tensor with a channel axis) of the digits CNN (tests/digits.py) over
2,000 PNGs in a server folder (scikit-learn's 1,797 digits and 203 of them transposed), run by
``Convscope.dataset_job`` with engine "local" and "ray" (a local Ray started here with 2 CPUs;
``ray_workers`` 1 and 2). Each Ray job starts its actors (a process each, onnxruntime loaded,
the job's graph built), so the times include that start-up, as a user's job would. The works
are interleaved repeat by repeat (the machine is shared); images/second and ratios to local.
Writes benchmarks/results/ray_jobs.json.

    .venv/bin/python -m benchmarks.ray_jobs
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import ray

from benchmarks._common import interleaved, write_results
from convscope.core import Convscope
from convscope.methods.dataset_jobs import DeadFiltersJob
from convscope.model.types import Preprocessing
from tests import digits

IMAGES = 2000
CPUS = 2
REPEATS = 3


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        train_x, _, test_x, _ = digits.digits()
        pixels = np.concatenate([train_x, test_x])
        digits.write_pngs(root / "data" / "digits", np.concatenate([pixels, pixels[: IMAGES - len(pixels)].transpose(0, 2, 1)]))
        os.environ["RAY_memory_monitor_refresh_ms"] = "0"  # the node is shared: its memory use is not ours
        ray.init(num_cpus=CPUS, include_dashboard=False, object_store_memory=256 << 20, log_to_driver=False)
        core = Convscope(root / "store", data_roots=[root / "data"])
        record = core.upload([("", digits.trained_model()[0])], name="digits", preprocessing=Preprocessing.from_dict(digits.PREPROCESSING))

        def job(engine: str, workers: int = 0) -> None:
            core.ray_workers = workers
            events = list(core.dataset_job(record.id, DeadFiltersJob(), folder="digits", engine=engine))
            assert events[-1].samples == IMAGES  # type: ignore[union-attr]

        works = {"local": lambda: job("local"), "ray_1_worker": lambda: job("ray", 1), "ray_2_workers": lambda: job("ray", 2)}
        times = interleaved(works, repeats=REPEATS, warmup=1)
        core.close()
        ray.shutdown()
    rates = {name: IMAGES / t["median"] for name, t in times.items()}
    ratios = {f"{name}_over_local": rates[name] / rates["local"] for name in ("ray_1_worker", "ray_2_workers")}
    for name, seconds in times.items():
        print(f"{name:>14}: {rates[name]:7.0f} images/s (median {seconds['median']:.2f} s, min {seconds['min']:.2f} s)")
    for name, ratio in ratios.items():
        print(f"{name}: {ratio:.2f}x the local engine's images/s")
    write_results("ray_jobs", {"images": IMAGES, "cpus": CPUS, "repeats": REPEATS, "seconds": times, "images_per_second": rates, "ratios": ratios})


if __name__ == "__main__":
    main()
