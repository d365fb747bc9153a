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
  included) vs plain batched inference given the same means, measured in the same round: the
  same file read, decode and preprocessing on the pass's own prefetcher (the same decode threads
  at the same priority, each writing a batch of the pass's batch size, as many batches ahead),
  the same runs in flight on as many onnxruntime threads each, the model's outputs only.
  ``--pairs`` runs of each per round, in turn; a round's ratio is their median. Goal ≥ 0.85×.
  Process CPU time (the pass's up to its last progress report) is printed beside it (plain's ÷
  the pass's): on a loaded machine wall-clock rates swing several-fold between runs of a second.
* memory: the peak resident set size while each audit runs (sampled), and the process's peak;
  the audit keeps small per-image records only, so its peak should not grow with the images.

With ``--model efficientnet_lite0`` the pass is measured where inference, not PNG decoding,
dominates: the bundled EfficientNet-Lite0 over 256×256 JPEG crops of packaged photos (made as
benchmarks/dataset.py makes them), labelled with plain inference's top-1; the rounds measure the
shared pass against plain inference only (at ~30 images a second on two cores, a pass of 1,000
crops takes half a minute: ``--images 1000 --quick`` runs in about five minutes on an idle machine).

``--quick``: one pass / plain pair per round instead of ``--pairs`` (three rounds still).
The 1-minute load average is printed and stored with each round.

Prints the figures and writes benchmarks/results/audit.json (audit_efficientnet_lite0.json).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks._common import write_results
from convscope.audit import config as audit_config
from convscope.audit.dataset import read_dataset
from convscope.audit.engine import AuditPass, AuditResult, run_audit
from convscope.core import Convscope
from convscope.data.prefetch import DEFAULT_DECODE_WORKERS, Prefetcher
from convscope.data.streams import read_regular_file
from convscope.methods.dataset_jobs import Progress, job_batch_size
from convscope.model.preprocessing import batch_of, decode_sample
from convscope.runtime.context import INFERENCE_WORKERS, in_flight, worker_threads
from convscope.runtime.providers import new_session

REPO = Path(__file__).resolve().parents[1]
MODELS = {
    "digits_cnn": REPO / "models" / "digits_cnn" / "digits_cnn.onnx",
    "efficientnet_lite0": REPO / "models" / "efficientnet_lite0" / "efficientnet_lite0.onnx",
}
SHARED_PASS = ("accuracy", "attributes", "dead_filters")
LABELLING_BATCH = 16
sys.path.insert(0, str(REPO / "models" / "digits_cnn"))
import digits_data  # noqa: E402  (the shipped model's data module)


def write_digits(root: Path, count: int) -> Path:
    train_x, train_y, test_x, test_y = digits_data.split()
    images, labels = np.concatenate([train_x, test_x]), np.concatenate([train_y, test_y])
    paths = digits_data.write_pngs(root / "png", images)
    rows = ["path,label"] + [f"{paths[i % len(paths)]},{labels[i % len(paths)]}" for i in range(count)]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root / "labels.csv"


def timed_audit(core: Convscope, model_id: str, items: list, settings: dict) -> tuple[float, float, float, AuditResult]:
    """Wall seconds, the pass's images per second, the process's CPU seconds until the pass's
    last progress report (the checks that follow it are no part of the pass), and the result."""
    began, cpu_began = time.perf_counter(), time.process_time()
    last: Progress | None = None
    for event in run_audit(core, model_id, items, audit_config.resolve(settings)):
        if isinstance(event, Progress):
            last, pass_cpu = event, time.process_time() - cpu_began
        elif isinstance(event, AuditResult):
            result = event
    return time.perf_counter() - began, last.rate if last else float("nan"), pass_cpu, result


def write_photos(root: Path, count: int, core: Convscope, record) -> Path:
    """JPEG crops labelled with plain inference's top-1 (any valid label times the same), a
    batch of them a run: one run per crop took minutes of a loaded machine before any round."""
    from benchmarks.dataset import make_images

    paths = make_images(root / "jpg", count)
    output = record.outputs[0].name
    labels: list[int] = []
    for start in range(0, len(paths), LABELLING_BATCH):
        batch = core.prepare(record, images=[p.read_bytes() for p in paths[start : start + LABELLING_BATCH]]).batch
        labels += core.context.forward(record, batch, [output])[output].reshape(len(batch), -1).argmax(1).tolist()
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
        """Decoded on the pass's own prefetcher (the same pool, thread priority and depth)."""
        started = time.perf_counter()
        chunks = (paths[start : start + self.batch_size] for start in range(0, len(paths), self.batch_size))
        batches = Prefetcher(chunks, lambda chunk, _: [self.decode(chunk)], depth=2 * DEFAULT_DECODE_WORKERS)
        for _ in in_flight(self.infer, batches, workers=INFERENCE_WORKERS):
            pass
        return len(paths) / (time.perf_counter() - started)


def pass_and_plain(core: Convscope, model_id: str, items: list, plain: PlainBatched, *, plain_first: bool) -> dict[str, float]:
    """Images per second and process CPU seconds of the shared pass (its checks alone) and of
    plain batched inference, run back to back (which first alternates, so neither always gets
    the warmer caches)."""
    pass_only = {check: {"enabled": check in SHARED_PASS} for check in audit_config.DEFAULTS}
    paths = [item.path for item in items]

    def plain_run() -> tuple[float, float]:
        began = time.process_time()
        return plain.images_per_second(paths), time.process_time() - began

    def pass_run() -> tuple[float, float]:
        _, rate, cpu, _ = timed_audit(core, model_id, items, pass_only)
        return rate, cpu

    runs = {"plain": plain_run, "pass": pass_run}
    figures = {}
    for name in sorted(runs, reverse=plain_first):  # "pass" < "plain"
        figures[name], figures[f"{name}_cpu_seconds"] = runs[name]()
    return figures


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
    parser.add_argument("--quick", action="store_true", help="one pair a round (the rounds stay three)")
    args = parser.parse_args(argv)
    pairs = 1 if args.quick else args.pairs
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
        rounds = [
            measure_round(core, record.id, items, plain, only, checks if digits else [], pairs) for _ in range(args.repeats)
        ]
        core.close()
    ratios = {"pass_vs_plain_batched": [r["pass_vs_plain_batched"] for r in rounds]}
    if digits:
        ratios["audit_vs_one_by_one"] = [r["audit_seconds"] / r["one_by_one_total_seconds"] for r in rounds]
    results = {
        "model": args.model,
        "images": args.images,
        "batch_size": plain.batch_size,
        "pairs": pairs,
        "rounds": rounds,
        **{name: float(np.median(values)) for name, values in ratios.items()},
        "spread": {name: [float(min(values)), float(max(values))] for name, values in ratios.items()},
        "load_average_1min": [r["load_average_1min"] for r in rounds],
        "process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    spread = lambda name: f"{results[name]:.2f}× (rounds {min(ratios[name]):.2f}–{max(ratios[name]):.2f})"
    loads = ", ".join(f"{load:.1f}" for load in results["load_average_1min"])
    print(f"{args.model}, {args.images} images, {args.repeats} rounds × {pairs} pairs; 1-min load average {loads}")
    if digits:
        print(f"  audit / checks one by one: {spread('audit_vs_one_by_one')} (goal ≤ 0.7×)")
    cpu = np.median([pair["plain_cpu_seconds"] / pair["pass_cpu_seconds"] for r in rounds for pair in r["pass_vs_plain_pairs"]])
    print(
        f"  shared pass / plain batched inference, images per second: {spread('pass_vs_plain_batched')} (goal ≥ 0.85×); "
        f"by CPU time (plain's ÷ the pass's) {cpu:.2f}×"
    )
    print(f"  process peak RSS {results['process_peak_rss_mb']:.0f} MB")
    write_results("audit" if digits else f"audit_{args.model}", results)


def measure_round(
    core: Convscope, model_id: str, items: list, plain: PlainBatched, only: dict, checks: list[str], pairs: int
) -> dict:
    """One round: ``pairs`` shared pass / plain pairs, then (``checks`` given) the audit of
    ``checks`` and each of them alone."""
    pass_vs_plain = [pass_and_plain(core, model_id, items, plain, plain_first=pair % 2 == 0) for pair in range(pairs)]
    found = {
        "load_average_1min": os.getloadavg()[0],
        "pass_vs_plain_pairs": pass_vs_plain,
        "pass_vs_plain_batched": float(np.median([rates["pass"] / rates["plain"] for rates in pass_vs_plain])),
    }
    rates = ", ".join(f"{pair['pass']:.0f}/{pair['plain']:.0f}" for pair in pass_vs_plain)
    line = f"pass / plain batched {found['pass_vs_plain_batched']:.2f}× (img/s {rates})"
    if checks:
        with PeakMemory() as memory:
            audit_seconds, _, _, result = timed_audit(core, model_id, items, only)
        alone = {
            check: timed_audit(core, model_id, items, {other: {"enabled": other == check} for other in audit_config.DEFAULTS})[0]
            for check in checks
        }
        found |= {
            "audit_seconds": audit_seconds,
            "checks_one_by_one_seconds": alone,
            "one_by_one_total_seconds": sum(alone.values()),
            "audit_peak_rss_mb": memory.peak,
            "check_seconds_in_audit": {c.name: c.seconds for c in result.checks},
        }
        line = (
            f"audit {audit_seconds:.2f} s vs one by one {found['one_by_one_total_seconds']:.2f} s "
            f"({audit_seconds / found['one_by_one_total_seconds']:.2f}×); {line}; audit peak RSS {memory.peak:.0f} MB"
        )
    print(f"{line}; load {found['load_average_1min']:.1f}", flush=True)
    return found


if __name__ == "__main__":
    main()
