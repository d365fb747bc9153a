"""Optimization steps: ours (one onnxruntime run of the loss-seeded backward graph per step,
state in numpy) against torch autograd doing the same PGD step on the EfficientNet-Lite0 twin,
at batch 1 and 8; and process memory across 1,000 visualization steps.

A PGD step on both sides: normalize pixels, forward, cross-entropy of the logits, backward to
the pixels, sign step, projection onto the ε-ball, clip to [0, 1].  Each side runs the same
attack of ``STEPS`` steps (with the forward for the label before and the prediction after),
interleaved with the other so both see the same background load; the time per step is the
attack's median time over ``STEPS``.  Goal: ours ≤ 0.5× torch per step.

Also reported: each side's process CPU time per step.  On a machine loaded past its cores,
wall clock measures the scheduler's share more than the work (a side with more threads gets
more of it, and OpenMP barriers stall); CPU time does not.  Pinned to one core (``taskset -c
0``), both sides run one thread.

Run: ``.venv/bin/python -m benchmarks.synthesis``; writes benchmarks/results/synthesis.json.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from benchmarks import _twins
from benchmarks._common import interleaved, write_results
from convscope.core import Convscope
from convscope.methods.optimize import PixelSpace
from convscope.methods.synthesis import AdversarialOptions, VisualizationOptions
from convscope.model.preprocessing import ModelInput
from convscope.runtime.providers import usable_providers

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "efficientnet_lite0" / "efficientnet_lite0.onnx"
CAT = REPO / "models" / "chelsea.png"
STEPS = 5
EPSILON, STEP_SIZE = 4 / 255, 1 / 255
MEMORY_STEPS = 1000
GOAL = 0.5


def torch_pgd(net: nn.Module, space: PixelSpace, pixels: np.ndarray) -> np.ndarray:
    gain, offset = torch.from_numpy(space.gain), torch.from_numpy(space.offset)
    original = torch.from_numpy(pixels)
    with torch.no_grad():
        label = net(original * gain + offset).argmax(1)
    current = original.clone()
    for _ in range(STEPS):
        current.requires_grad_(True)
        loss = nn.functional.cross_entropy(net(current * gain + offset), label, reduction="sum")
        (gradient,) = torch.autograd.grad(loss, current)
        with torch.no_grad():
            current = torch.clamp(current + STEP_SIZE * torch.sign(gradient), 0, 1)
            current = torch.clamp(original + torch.clamp(current - original, -EPSILON, EPSILON), 0, 1)
    with torch.no_grad():
        return net(current * gain + offset).numpy()


def resident_mib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096 / 2**20


def memory_over_steps(core: Convscope, model_id: str) -> dict[str, object]:
    samples = {}
    for event in core.visualize(model_id, VisualizationOptions(target=1, steps=MEMORY_STEPS)):
        step = getattr(event, "step", None)
        if step is not None and step % 100 == 0:
            samples[step] = resident_mib()
    growth = samples[MEMORY_STEPS] - samples[100]
    return {"steps": MEMORY_STEPS, "resident_mib_by_step": samples, "growth_mib_from_step_100": growth}


def main() -> None:
    twin = _twins.efficientnet_lite0()
    results: dict[str, object] = {
        "providers": list(usable_providers()),
        "onnxruntime": ort.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "goal_ours_vs_torch_per_step": GOAL,
        "pgd_steps": STEPS,
        "batches": {},
    }
    with tempfile.TemporaryDirectory() as store:
        core = Convscope(Path(store))
        try:
            record = core.upload([("", MODEL.read_bytes())])
            cat = core.prepare(record, images=[CAT.read_bytes()])
            space = PixelSpace.of(record)
            options = AdversarialOptions(method="pgd", epsilon=EPSILON, step_size=STEP_SIZE, steps=STEPS)
            for batch in (1, 8):
                model_input = ModelInput(np.repeat(cat.batch, batch, axis=0), cat.pictures * batch)
                pixels = space.to_pixels(model_input.batch)

                def ours() -> np.ndarray:
                    *_, result = core.adversarial(record.id, model_input, options)
                    return result.adversarial_logits

                timings = interleaved({"ours": ours, "torch_autograd": lambda: torch_pgd(twin, space, pixels)}, repeats=5, warmup=1)
                per_step = {name: t["median"] / STEPS for name, t in timings.items()}
                cpu_per_step = {name: t["cpu_median"] / STEPS for name, t in timings.items()}
                same = bool(np.array_equal(ours().argmax(1), torch_pgd(twin, space, pixels).argmax(1)))
                results["batches"][str(batch)] = {  # type: ignore[index]
                    "seconds_per_step": per_step,
                    "cpu_seconds_per_step": cpu_per_step,
                    "ratio_ours_vs_torch": per_step["ours"] / per_step["torch_autograd"],
                    "cpu_ratio_ours_vs_torch": cpu_per_step["ours"] / cpu_per_step["torch_autograd"],
                    "same_adversarial_predictions": same,
                }
                print(
                    f"batch {batch}: ours {per_step['ours'] * 1e3:7.1f} ms/step  torch {per_step['torch_autograd'] * 1e3:7.1f} ms/step  "
                    f"ratio {per_step['ours'] / per_step['torch_autograd']:.2f}x (goal ≤ {GOAL}); CPU time "
                    f"{cpu_per_step['ours'] * 1e3:.1f} vs {cpu_per_step['torch_autograd'] * 1e3:.1f} ms/step, "
                    f"ratio {cpu_per_step['ours'] / cpu_per_step['torch_autograd']:.2f}x  same predictions: {same}",
                    flush=True,
                )
            results["memory"] = memory = memory_over_steps(core, record.id)
            print(f"resident memory over {MEMORY_STEPS} visualization steps: {memory['resident_mib_by_step']}")
        finally:
            core.close()
    write_results("synthesis", results)


if __name__ == "__main__":
    main()
