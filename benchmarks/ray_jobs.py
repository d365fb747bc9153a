"""Dataset-job throughput: the local engine against Ray Data with 1 and 2 workers, on this machine.

Two folder jobs run by ``Convscope.dataset_job`` with engine "local" and "ray" (a local Ray
started here with 2 CPUs; ``ray_workers`` 1 and 2, each worker an actor with one onnxruntime
session of one thread that reads, decodes and infers its batches):

* ``digits``: dead filters (every tensor with a channel axis) of the digits CNN
  (tests/digits.py) over 2,000 8×8 PNGs (scikit-learn's 1,797 digits and 203 transposed) — a
  tiny model, where a job is all overhead;
* ``efficientnet``: embedding codes (the 1280-d input of the classifier, PCA) of the bundled
  EfficientNet-Lite0 over 256 JPEG crops of scikit-learn's photos (benchmarks/dataset.py's
  images) — where inference dominates.

Each Ray job starts its actors (a process each, onnxruntime loaded, the job's graph built), as a
user's job does, so the times include that start-up; the time to the first finished batch is
reported beside them (a Ray job's first batch waits for its actors; Ray Data keeps working
ahead meanwhile, so the rate after it is no steady state and is not reported). The works are
interleaved repeat by repeat (the machine is shared): images/second (median, min, max over the
repeats) and ratios to local.
Writes benchmarks/results/ray_jobs.json.

    .venv/bin/python -m benchmarks.ray_jobs [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import ray

from benchmarks._common import interleaved, write_results
from benchmarks.dataset import MODEL, make_images
from convscope.core import Convscope
from convscope.methods.dataset_jobs import DatasetJob, DeadFiltersJob, EmbeddingJob, Progress
from convscope.model.types import Preprocessing
from tests import digits

DIGITS = 2000
PHOTOS = 256
CPUS = 2
ENGINES = {"local": ("local", 0), "ray_1_worker": ("ray", 1), "ray_2_workers": ("ray", 2)}


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _workload(core: Convscope, model_id: str, folder: str, job: DatasetJob, images: int, repeats: int) -> dict[str, object]:
    """Every engine over the folder, interleaved; seconds per job and to its first batch."""
    totals: dict[str, list[float]] = {name: [] for name in ENGINES}
    firsts: dict[str, list[float]] = {name: [] for name in ENGINES}

    def run(name: str) -> Callable[[], None]:
        engine, workers = ENGINES[name]

        def job_once() -> None:
            core.ray_workers = workers
            start = time.perf_counter()
            first = None
            for event in core.dataset_job(model_id, job, folder=folder, engine=engine):
                if first is None and isinstance(event, Progress):
                    first = time.perf_counter() - start
            totals[name].append(time.perf_counter() - start)
            assert first is not None, f"{name} reported no progress"
            firsts[name].append(first)
            done = event.samples if isinstance(job, DeadFiltersJob) else len(event.indices)  # type: ignore[union-attr]
            assert done == images, f"{name} ran {done} of {images} images"

        return job_once

    interleaved({name: run(name) for name in ENGINES}, repeats=repeats, warmup=1)
    seconds = {name: _spread(values[-repeats:]) for name, values in totals.items()}
    rates = {name: _spread([images / s for s in values[-repeats:]]) for name, values in totals.items()}
    ratios = {
        f"{name}_over_local": _spread(
            [local / ray_s for local, ray_s in zip(totals["local"][-repeats:], totals[name][-repeats:])]
        )
        for name in ENGINES
        if name != "local"
    }
    return {
        "images": images,
        "seconds": seconds,
        "images_per_second": rates,
        "ratios": ratios,
        "seconds_to_first_batch": {name: _spread(values[-repeats:]) for name, values in firsts.items()},
    }


def _print(name: str, result: dict[str, object]) -> None:
    rates: dict[str, dict[str, float]] = result["images_per_second"]  # type: ignore[assignment]
    firsts: dict[str, dict[str, float]] = result["seconds_to_first_batch"]  # type: ignore[assignment]
    ratios: dict[str, dict[str, float]] = result["ratios"]  # type: ignore[assignment]
    print(f"{name} ({result['images']} images)")
    for engine, rate in rates.items():
        ratio = ratios.get(f"{engine}_over_local")
        vs_local = f"  {ratio['median']:.2f}x local ({ratio['min']:.2f}-{ratio['max']:.2f})" if ratio else ""
        print(
            f"  {engine:>14}: {rate['median']:7.1f} images/s ({rate['min']:.1f}-{rate['max']:.1f}), "
            f"first batch after {firsts[engine]['median']:.2f} s{vs_local}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        train_x, _, test_x, _ = digits.digits()
        pixels = np.concatenate([train_x, test_x])
        digits.write_pngs(root / "data" / "digits", np.concatenate([pixels, pixels[: DIGITS - len(pixels)].transpose(0, 2, 1)]))
        make_images(root / "data" / "photos", PHOTOS)
        os.environ["RAY_memory_monitor_refresh_ms"] = "0"  # the node is shared: its memory use is not ours
        ray.init(num_cpus=CPUS, include_dashboard=False, object_store_memory=256 << 20, log_to_driver=False)
        core = Convscope(root / "store", data_roots=[root / "data"])
        small = core.upload(
            [("", digits.trained_model()[0])], name="digits", preprocessing=Preprocessing.from_dict(digits.PREPROCESSING)
        )
        large = core.upload([("", MODEL.read_bytes())], name="efficientnet_lite0")
        results = {
            "digits": _workload(core, small.id, "digits", DeadFiltersJob(), DIGITS, args.repeats),
            "efficientnet": _workload(core, large.id, "photos", EmbeddingJob(method="pca", render=False), PHOTOS, args.repeats),
        }
        core.close()
        ray.shutdown()
    for name, result in results.items():
        _print(name, result)
    write_results(
        "ray_jobs",
        {"cpus": CPUS, "repeats": args.repeats, "load_average": {"before": load_before, "after": os.getloadavg()}, **results},
    )


if __name__ == "__main__":
    main()
