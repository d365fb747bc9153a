"""The audit's shared work: one audit vs its checks run one by one, and the shared pass vs plain
batched inference.

Model: the digits CNN (models/digits_cnn); images: scikit-learn's 1,797 digits as 8×8 PNGs,
listed cyclically in a CSV up to ``--images`` rows (default 2,000). Run in-process on the data
plane (``convscope.core``), so server start-up is not in the figures.

* audit: every check of the default config in one ``run_audit``: one pass over the images
  feeds accuracy, attribute slices and dead filters; the other checks sample images.
* one by one: the same checks, each alone in its own ``run_audit`` (what running separate tools
  costs: a pass each); the sum of their wall times is the peer. Goal: audit ≤ 0.7× of it.
* shared pass: images / second of an audit of the pass's checks alone, at its last progress
  report (reading and decoding the files, top-5, attributes and rectifier zero counts
  included) vs plain batched inference given the same means, measured in the same round: the same file read, decode and preprocessing,
  on as many decode threads (each writing a batch of the pass's batch size, a few batches
  ahead), the same runs in flight on as many onnxruntime threads each, the model's outputs
  only. ``--pairs`` runs of each per round, in turn; a round's ratio is their median.
  Goal ≥ 0.85×.
* memory: the peak resident set size while each audit runs (sampled), and the process's peak;
  the audit keeps small per-image records only, so its peak should not grow with the images.

With ``--model efficientnet_lite0`` the pass is measured where inference, not PNG decoding,
dominates: the bundled EfficientNet-Lite0 over 256×256 JPEG crops of packaged photos (made as
benchmarks/dataset.py makes them), labelled with plain inference's top-1, the checks that share
the pass only (accuracy, attributes, dead filters).

Prints the figures and writes benchmarks/results/audit.json (audit_efficientnet_lite0.json).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks._common import write_results
from convscope.audit import config as audit_config
from convscope.audit.dataset import read_dataset
from convscope.audit.engine import AuditPass, AuditResult, run_audit
from convscope.core import Convscope
from convscope.data.prefetch import DEFAULT_DECODE_WORKERS
from convscope.data.streams import read_regular_file
from convscope.methods.dataset_jobs import Progress, job_batch_size
from convscope.model.preprocessing import batch_of, decode_sample
from convscope.runtime.context import INFERENCE_WORKERS, in_flight, worker_threads
from convscope.runtime.providers import new_session

REPO = Path(__file__).resolve().parents[1]
MODELS = {"digits_cnn": REPO / "models" / "digits_cnn" / "digits_cnn.onnx",
          "efficientnet_lite0": REPO / "models" / "efficientnet_lite0" / "efficientnet_lite0.onnx"}
SHARED_PASS = ("accuracy", "attributes", "dead_filters")
sys.path.insert(0, str(REPO / "models" / "digits_cnn"))
import digits_data  # noqa: E402  (the shipped model's data module)


def write_digits(root: Path, count: int) -> Path:
    train_x, train_y, test_x, test_y = digits_data.split()
    images, labels = np.concatenate([train_x, test_x]), np.concatenate([train_y, test_y])
    paths = digits_data.write_pngs(root / "png", images)
    rows = ["path,label"] + [f"{paths[i % len(paths)]},{labels[i % len(paths)]}" for i in range(count)]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root / "labels.csv"


def timed_audit(core: Convscope, model_id: str, items: list, settings: dict) -> tuple[float, float, AuditResult]:
    """Wall seconds, the pass's images per second, and the result."""
    began = time.perf_counter()
    last: Progress | None = None
    for event in run_audit(core, model_id, items, audit_config.resolve(settings)):
        if isinstance(event, Progress):
            last = event
        elif isinstance(event, AuditResult):
            result = event
    return time.perf_counter() - began, last.rate if last else float("nan"), result


def write_photos(root: Path, count: int, core: Convscope, record) -> Path:
    """JPEG crops labelled with plain inference's top-1 (any valid label times the same)."""
    from benchmarks.dataset import make_images

    paths = make_images(root / "jpg", count)
    output = record.outputs[0].name
    labels = [int(core.context.forward(record, core.prepare(record, images=[p.read_bytes()]).batch, [output])[output].argmax())
              for p in paths]
    (root / "labels.csv").write_text("path,label\n" + "".join(f"{p},{label}\n" for p, label in zip(paths, labels)))
    return root / "labels.csv"


class PlainBatched:
    """Plain batched inference with the shared pass's means (see the module's docstring): what
    the pass's own work — attributes, top-5, rectifier counts, ordered hand-offs — costs beyond it."""

    def __init__(self, model: Path, record, batch_size: int) -> None:
        self.record = record
        self.batch_size = batch_size
        self.session = new_session(str(model), threads=worker_threads())
        self.name = self.session.get_inputs()[0].name

    def decode(self, paths: list[Path]) -> np.ndarray:
        return batch_of([decode_sample(self.record, read_regular_file(path)) for path in paths])

    def infer(self, batch: np.ndarray) -> object:
        return self.session.run(None, {self.name: batch})

    def images_per_second(self, paths: list[Path]) -> float:
        started = time.perf_counter()
        with ThreadPoolExecutor(DEFAULT_DECODE_WORKERS) as pool:
            ahead: deque = deque()

            def batches():
                for start in range(0, len(paths), self.batch_size):
                    ahead.append(pool.submit(self.decode, paths[start : start + self.batch_size]))
                    if len(ahead) > 2 * DEFAULT_DECODE_WORKERS:
                        yield ahead.popleft().result()
                while ahead:
                    yield ahead.popleft().result()

            for _ in in_flight(self.infer, batches(), workers=INFERENCE_WORKERS):
                pass
        return len(paths) / (time.perf_counter() - started)


def pass_and_plain(core: Convscope, model_id: str, items: list, plain: PlainBatched, *, plain_first: bool) -> dict[str, float]:
    """Images per second of the shared pass (its checks alone) and of plain batched inference,
    run back to back (which first alternates, so neither always gets the warmer caches)."""
    pass_only = {check: {"enabled": check in SHARED_PASS} for check in audit_config.DEFAULTS}
    paths = [item.path for item in items]
    plain_rate = plain.images_per_second(paths) if plain_first else 0.0
    pass_rate = timed_audit(core, model_id, items, pass_only)[1]
    return {"pass": pass_rate, "plain": plain_rate if plain_first else plain.images_per_second(paths)}


class PeakMemory:
    """The peak resident set size (MB) while the block runs, sampled from /proc."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, resident_mb())

    def __enter__(self) -> PeakMemory:
        self.peak = resident_mb()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, resident_mb())


def resident_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--model", choices=list(MODELS), default="digits_cnn")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; medians are reported, and the rounds' spread")
    parser.add_argument("--pairs", type=int, default=3, help="shared pass and plain inference runs per round, in turn")
    args = parser.parse_args(argv)
    model = MODELS[args.model]
    digits = args.model == "digits_cnn"
    checks = list(audit_config.DEFAULTS) if digits else list(SHARED_PASS)
    only = {check: {"enabled": check in checks} for check in audit_config.DEFAULTS}
    with tempfile.TemporaryDirectory() as scratch:
        core = Convscope(Path(scratch) / "store")
        record = core.upload([("", model.read_bytes())])
        csv = write_digits(Path(scratch), args.images) if digits else write_photos(Path(scratch), args.images, core, record)
        items = read_dataset(csv, record.labels, int(record.outputs[0].shape[-1]))
        pass_tensors = AuditPass(record, len(items), audit_config.resolve(only)).tensors
        plain = PlainBatched(model, record, job_batch_size(core.context, record, pass_tensors))
        timed_audit(core, record.id, items[:64], only)  # sessions built, caches warm
        plain.images_per_second([item.path for item in items[:64]])
        rounds = []
        for _ in range(args.repeats):
            pass_vs_plain = [pass_and_plain(core, record.id, items, plain, plain_first=pair % 2 == 0) for pair in range(args.pairs)]
            with PeakMemory() as memory:
                audit_seconds, _, result = timed_audit(core, record.id, items, only)
            alone = {check: timed_audit(core, record.id, items, {other: {"enabled": other == check} for other in audit_config.DEFAULTS})[0]
                     for check in checks}
            rounds.append({"audit_seconds": audit_seconds, "checks_one_by_one_seconds": alone,
                           "one_by_one_total_seconds": sum(alone.values()), "pass_vs_plain_pairs": pass_vs_plain,
                           "pass_vs_plain_batched": float(np.median([rates["pass"] / rates["plain"] for rates in pass_vs_plain])),
                           "audit_peak_rss_mb": memory.peak, "check_seconds_in_audit": {c.name: c.seconds for c in result.checks}})
            rates = ", ".join(f"{pair['pass']:.0f}/{pair['plain']:.0f}" for pair in pass_vs_plain)
            print(f"audit {audit_seconds:.2f} s vs one by one {rounds[-1]['one_by_one_total_seconds']:.2f} s; pass / plain batched "
                  f"{rounds[-1]['pass_vs_plain_batched']:.2f}× (img/s {rates}); audit peak RSS {memory.peak:.0f} MB", flush=True)
        core.close()
    ratios = {
        "audit_vs_one_by_one": [r["audit_seconds"] / r["one_by_one_total_seconds"] for r in rounds],
        "pass_vs_plain_batched": [r["pass_vs_plain_batched"] for r in rounds],
    }
    results = {"model": args.model, "images": args.images, "batch_size": plain.batch_size, "rounds": rounds,
               **{name: float(np.median(values)) for name, values in ratios.items()},
               "spread": {name: [float(min(values)), float(max(values))] for name, values in ratios.items()},
               "audit_peak_rss_mb": max(r["audit_peak_rss_mb"] for r in rounds),
               "process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    spread = (lambda name: f"{results[name]:.2f}× (rounds {min(ratios[name]):.2f}–{max(ratios[name]):.2f})")
    print(f"audit / one by one: {spread('audit_vs_one_by_one')} (goal ≤ 0.7×); shared pass / plain batched inference: "
          f"{spread('pass_vs_plain_batched')} (goal ≥ 0.85×); audit peak RSS {results['audit_peak_rss_mb']:.0f} MB, "
          f"process {results['process_peak_rss_mb']:.0f} MB")
    write_results("audit" if digits else f"audit_{args.model}", results)


if __name__ == "__main__":
    main()
