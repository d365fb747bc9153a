"""The audit's shared work: one audit vs its checks run one by one, and the shared pass vs plain
batched inference.

Model: the digits CNN (models/digits_cnn); images: scikit-learn's 1,797 digits as 8×8 PNGs,
listed cyclically in a CSV up to ``--images`` rows (default 2,000). Run in-process on the data
plane (``convscope.core``), so server start-up is not in the figures.

* audit: every check of the default config in one ``run_audit``: one pass over the images
  feeds accuracy, attribute slices and dead filters; the other checks sample images.
* one by one: the same checks, each alone in its own ``run_audit`` (what running separate tools
  costs: a pass each); the sum of their wall times is the peer. Goal: audit ≤ 0.7× of it.
* shared pass: images / second at the pass's last progress report (reading and decoding the
  files, top-5, attributes and rectifier zero counts included) vs plain onnxruntime in batches
  of 32 over the same images decoded in one thread, timed with the decode (decode then infer,
  what a simple script does: the peer to beat, goal ≥ 0.85×) and without it (inference only).

With ``--model efficientnet_lite0`` the pass is measured where inference, not PNG decoding,
dominates: the bundled EfficientNet-Lite0 over 256×256 JPEG crops of packaged photos (made as
benchmarks/dataset.py makes them), labelled with plain inference's top-1, the checks that share
the pass only (accuracy, attributes, dead filters).

Prints the figures and writes benchmarks/results/audit.json (audit_efficientnet_lite0.json).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._common import write_results
from convscope.audit import config as audit_config
from convscope.audit.dataset import read_dataset
from convscope.audit.engine import AuditResult, run_audit
from convscope.core import Convscope
from convscope.methods.dataset_jobs import Progress
from convscope.model.preprocessing import decode_sample
from convscope.runtime.providers import new_session

REPO = Path(__file__).resolve().parents[1]
MODELS = {"digits_cnn": REPO / "models" / "digits_cnn" / "digits_cnn.onnx",
          "efficientnet_lite0": REPO / "models" / "efficientnet_lite0" / "efficientnet_lite0.onnx"}
SHARED_PASS = ("accuracy", "attributes", "dead_filters")
BATCH = 32
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


def plain_inference(model: Path, record, paths: list[Path]) -> dict[str, float]:
    session = new_session(str(model))
    name = session.get_inputs()[0].name
    started = time.perf_counter()
    batches = [np.stack([decode_sample(record, path.read_bytes()).value() for path in paths[i : i + BATCH]])
               for i in range(0, len(paths), BATCH)]
    decode = time.perf_counter() - started
    session.run(None, {name: batches[0]})  # warm-up
    started = time.perf_counter()
    for batch in batches:
        session.run(None, {name: batch})
    return {"inference_seconds": time.perf_counter() - started, "decode_seconds": decode}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--model", choices=list(MODELS), default="digits_cnn")
    parser.add_argument("--repeats", type=int, default=3, help="paired rounds; medians are reported")
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
        paths = [item.path for item in items]
        timed_audit(core, record.id, items[:64], only)  # sessions built, caches warm
        rounds = []
        for _ in range(args.repeats):
            plain = plain_inference(model, record, paths)
            audit_seconds, pass_rate, result = timed_audit(core, record.id, items, only)
            alone = {check: timed_audit(core, record.id, items, {other: {"enabled": other == check} for other in checks})[0]
                     for check in checks}
            rounds.append({"audit_seconds": audit_seconds, "checks_one_by_one_seconds": alone,
                           "one_by_one_total_seconds": sum(alone.values()), "pass_images_per_second": pass_rate,
                           "plain_inference_images_per_second": len(paths) / plain["inference_seconds"],
                           "plain_decode_then_infer_images_per_second": len(paths) / (plain["inference_seconds"] + plain["decode_seconds"]),
                           "check_seconds_in_audit": {c.name: c.seconds for c in result.checks}})
            print(f"audit {audit_seconds:.2f} s vs one by one {rounds[-1]['one_by_one_total_seconds']:.2f} s; pass "
                  f"{pass_rate:.0f} img/s vs plain {rounds[-1]['plain_inference_images_per_second']:.0f} img/s (inference only), "
                  f"{rounds[-1]['plain_decode_then_infer_images_per_second']:.0f} img/s (decode then infer)")
        core.close()
    ratios = {
        "audit_vs_one_by_one": [r["audit_seconds"] / r["one_by_one_total_seconds"] for r in rounds],
        "pass_vs_plain_decode_then_infer": [r["pass_images_per_second"] / r["plain_decode_then_infer_images_per_second"] for r in rounds],
        "pass_vs_plain_inference": [r["pass_images_per_second"] / r["plain_inference_images_per_second"] for r in rounds],
    }
    results = {"model": args.model, "images": args.images, "rounds": rounds,
               **{name: float(np.median(values)) for name, values in ratios.items()},
               "spread": {name: [float(min(values)), float(max(values))] for name, values in ratios.items()}}
    spread = (lambda name: f"{results[name]:.2f}× (rounds {min(ratios[name]):.2f}–{max(ratios[name]):.2f})")
    print(f"audit / one by one: {spread('audit_vs_one_by_one')} (goal ≤ 0.7×); shared pass / decode-then-infer: "
          f"{spread('pass_vs_plain_decode_then_infer')} (goal ≥ 0.85×); / inference only: {spread('pass_vs_plain_inference')}")
    write_results("audit" if digits else f"audit_{args.model}", results)


if __name__ == "__main__":
    main()
