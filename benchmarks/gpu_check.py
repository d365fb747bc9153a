"""On a machine with an NVIDIA GPU: does the CUDA execution provider load and get chosen, does it
give the CPU provider's numbers, and how fast is each method next to its peer on the same GPU.

Run through benchmarks/gpu_check.sh (which puts onnxruntime-gpu on the path there).  Models: the
bundled EfficientNet-Lite0 with its torch twin, and a ResNet-18 twin (random weights).

* agreement: activations of every layer, input gradients, guided backprop, integrated gradients
  and occlusion positions on CUDA vs the same call on the CPU provider (relative L2), and vs
  torch autograd / Captum running on the GPU;
* diagnosis, for the backward graph of each model outside the service: TF32 on vs off against
  the CPU provider, each cuDNN algorithm search at a stable batch of 8 and with batch sizes
  alternating 1 and 8 (as dynamic-batch sessions see them), and the per-op profile at batch 8 —
  the first GPU check found backward graphs and batches > 1 tens of times slower than torch;
* timings (medians, peers interleaved): plain onnxruntime CUDA inference vs Activations (one
  layer, all layers); the input gradient at batch 1 and 8 vs torch autograd on CUDA; integrated
  gradients (50 steps) vs Captum ``IntegratedGradients(internal_batch_size=50)`` on CUDA;
  occlusion (window 32 stride 16) vs Captum ``Occlusion(perturbations_per_eval=64)`` on CUDA and
  vs positions × a plain batch-1 CUDA forward.

Each section is independent: a failure is recorded in the results and the next section runs.
Writes gpu_check.json to $OUT when set (the device tool's folder), else benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from captum.attr import GuidedBackprop, IntegratedGradients, Occlusion
from torch import nn

from benchmarks import _twins
from benchmarks._common import interleaved_medians, median_seconds, op_profile, write_results
from benchmarks.gradients import torch_gradient
from convscope.core import Convscope
from convscope.graph.backward import build_backward, grad_output_name, seed_input_name
from convscope.methods.attribution import AttributionOptions
from convscope.methods.gradients import Score, one_hot_seed
from convscope.methods.occlusion import OcclusionOptions, OcclusionResult
from convscope.runtime.providers import CUDA_OPTIONS, new_session, session_options, usable_providers

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "models" / "efficientnet_lite0" / "efficientnet_lite0.onnx"
PHOTO = REPO / "models" / "chelsea.png"
CPU = ["CPUExecutionProvider"]
IG_STEPS = 50
# torch runs where the GPU is; without one (a dry run of this script on a CPU machine) on the CPU.
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
# The oracles compute in full FP32, as our sessions do (see CUDA_OPTIONS).
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False


def relative_l2(got: np.ndarray, want: np.ndarray) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))


def occlusion_positions(core: Convscope, model_id: str, model_input, engine: str) -> OcclusionResult:
    options = OcclusionOptions.parse(window=(32, 32), stride=(16, 16), score="raw", engine=engine)
    *_, result = core.occlusion(model_id, model_input, options)
    return result


class Report:
    """Results by section; a failing section records its traceback instead of stopping the run."""

    def __init__(self) -> None:
        self.results: dict[str, object] = {}

    def section(self, name: str, work: Callable[[], object]) -> None:
        started = time.perf_counter()
        try:
            self.results[name] = work()
        except Exception:
            self.results[name] = {"error": traceback.format_exc()}
        print(f"== {name} ({time.perf_counter() - started:.1f} s)\n{json.dumps(self.results[name], indent=1)}", flush=True)


def check_model(
    gpu: Convscope, cpu: Convscope, name: str, model_bytes: bytes, net: nn.Module, batch: np.ndarray, report: Report, repeats: int
) -> None:
    on_gpu = gpu.upload([("", model_bytes)], name=name)
    on_cpu = cpu.upload([("", model_bytes)], name=name)
    input_name = on_gpu.input.name
    gpu_input, cpu_input = gpu.prepare(on_gpu, tensor=batch), cpu.prepare(on_cpu, tensor=batch)
    with torch.no_grad():
        target = int(net(torch.from_numpy(batch).to(DEVICE)).argmax())
    targets = np.array([target])

    def attribution(core: Convscope, record, model_input, method: str, **options) -> np.ndarray:
        return core.attribution(record.id, model_input, method, AttributionOptions(target=target, **options), render=False)[0].map

    def agreement() -> dict[str, float]:
        cuda_acts = {a.tensor: a.value for a in gpu.activations(on_gpu.id, gpu_input, None, statistics=False)}
        cpu_acts = {a.tensor: a.value for a in cpu.activations(on_cpu.id, cpu_input, None, statistics=False)}
        layer_errors = [relative_l2(cuda_acts[t], cpu_acts[t]) for t in cpu_acts if np.linalg.norm(cpu_acts[t]) > 0]
        gradient = attribution(gpu, on_gpu, gpu_input, "gradient")
        guided = attribution(gpu, on_gpu, gpu_input, "guided_backprop", rectifiers="relu")
        ig = attribution(gpu, on_gpu, gpu_input, "integrated_gradients", steps=IG_STEPS)
        x = torch.from_numpy(batch).to(DEVICE)
        captum_guided = GuidedBackprop(net).attribute(x, target=target).cpu().numpy()
        captum_ig = (
            IntegratedGradients(net).attribute(x, target=target, n_steps=IG_STEPS, internal_batch_size=IG_STEPS).cpu().numpy()
        )
        cuda_positions = occlusion_positions(gpu, on_gpu.id, gpu_input, "batched").positions
        return {
            "layers_compared": len(layer_errors),
            "activations_cuda_vs_cpu_worst_rel_l2": max(layer_errors),
            "gradient_cuda_vs_cpu_rel_l2": relative_l2(gradient, attribution(cpu, on_cpu, cpu_input, "gradient")),
            "gradient_vs_torch_rel_l2": relative_l2(gradient, torch_gradient(net, batch, targets, DEVICE)),
            "guided_backprop_vs_captum_rel_l2": relative_l2(guided, captum_guided),
            "integrated_gradients_vs_captum_rel_l2": relative_l2(ig, captum_ig),
            "occlusion_cuda_vs_cpu_rel_l2": relative_l2(
                cuda_positions, occlusion_positions(cpu, on_cpu.id, cpu_input, "batched").positions
            ),
            "occlusion_incremental_vs_batched_cuda_rel_l2": relative_l2(
                occlusion_positions(gpu, on_gpu.id, gpu_input, "incremental").positions, cuda_positions
            ),
        }

    def timings() -> dict[str, object]:
        plain = new_session(model_bytes, providers=gpu.runtime.providers)
        one_layer = [next(layer.tensor for layer in on_gpu.layers if layer.op_type in ("Clip", "Relu"))]
        batch8 = np.repeat(batch, 8, axis=0)
        input8 = gpu.prepare(on_gpu, tensor=batch8)
        targets8 = np.full(8, target)
        options8 = AttributionOptions(target=targets8.tolist())
        x = torch.from_numpy(batch).to(DEVICE)
        ig_options = AttributionOptions(target=target, steps=IG_STEPS)
        seconds = interleaved_medians(
            {
                "plain_onnxruntime_batch1": lambda: plain.run(None, {input_name: batch}),
                "activations_one_layer": lambda: gpu.activations(on_gpu.id, gpu_input, one_layer, statistics=False),
                "activations_all_layers": lambda: gpu.activations(on_gpu.id, gpu_input, None, statistics=False),
                "gradient_batch1": lambda: attribution(gpu, on_gpu, gpu_input, "gradient"),
                "torch_autograd_batch1": lambda: torch_gradient(net, batch, targets, DEVICE),
                "gradient_batch8": lambda: gpu.attribution(on_gpu.id, input8, "gradient", options8, render=False),
                "torch_autograd_batch8": lambda: torch_gradient(net, batch8, targets8, DEVICE),
                "integrated_gradients_50": lambda: gpu.attribution(
                    on_gpu.id, gpu_input, "integrated_gradients", ig_options, render=False
                ),
                "captum_integrated_gradients_50": lambda: (
                    IntegratedGradients(net).attribute(x, target=target, n_steps=IG_STEPS, internal_batch_size=IG_STEPS).cpu()
                ),
                "occlusion_w32s16_batched": lambda: occlusion_positions(gpu, on_gpu.id, gpu_input, "batched"),
                "occlusion_w32s16_incremental": lambda: occlusion_positions(gpu, on_gpu.id, gpu_input, "incremental"),
                "captum_occlusion_w32s16_ppe64": lambda: (
                    Occlusion(net)
                    .attribute(
                        x, sliding_window_shapes=(3, 32, 32), strides=(3, 16, 16), target=target, perturbations_per_eval=64
                    )
                    .cpu()
                ),
            },
            repeats=repeats,
        )
        positions = 13 * 13
        return {
            "seconds": seconds,
            "ratios": {
                "activations_one_layer_vs_plain": seconds["activations_one_layer"] / seconds["plain_onnxruntime_batch1"],
                "activations_all_layers_vs_plain": seconds["activations_all_layers"] / seconds["plain_onnxruntime_batch1"],
                "gradient_batch1_vs_torch": seconds["gradient_batch1"] / seconds["torch_autograd_batch1"],
                "gradient_batch8_vs_torch": seconds["gradient_batch8"] / seconds["torch_autograd_batch8"],
                "integrated_gradients_speedup_vs_captum": seconds["captum_integrated_gradients_50"]
                / seconds["integrated_gradients_50"],
                "occlusion_batched_speedup_vs_captum": seconds["captum_occlusion_w32s16_ppe64"]
                / seconds["occlusion_w32s16_batched"],
                "occlusion_incremental_speedup_vs_captum": seconds["captum_occlusion_w32s16_ppe64"]
                / seconds["occlusion_w32s16_incremental"],
                "occlusion_naive_floor_vs_batched": positions
                * seconds["plain_onnxruntime_batch1"]
                / seconds["occlusion_w32s16_batched"],
            },
        }

    def diagnosis() -> dict[str, object]:
        output = on_gpu.outputs[0].name
        backward = build_backward(onnx.load_from_string(model_bytes), seeds=[output]).SerializeToString()
        grad = grad_output_name(input_name)

        def feeds(x: np.ndarray) -> dict[str, np.ndarray]:
            seed = one_hot_seed(on_gpu, Score(output, np.full(len(x), target, np.int64)), len(x))
            return {input_name: x, seed_input_name(output): seed}

        def cuda(**options: str) -> list[object]:
            return [("CUDAExecutionProvider", {**CUDA_OPTIONS, **options}), "CPUExecutionProvider"]

        one, eight = feeds(batch), feeds(np.repeat(batch, 8, axis=0))
        want = new_session(backward, providers=CPU).run([grad], one)[0]
        found: dict[str, object] = {}
        for tf32 in ("0", "1"):
            session = ort.InferenceSession(backward, session_options(), providers=cuda(use_tf32=tf32))
            found[f"gradient_tf32_{tf32}_vs_cpu_rel_l2"] = relative_l2(session.run([grad], one)[0], want)
        for search in ("EXHAUSTIVE", "HEURISTIC", "DEFAULT"):
            session = ort.InferenceSession(backward, session_options(), providers=cuda(cudnn_conv_algo_search=search))
            found[f"algo_search_{search}_ms"] = {
                "batch8_stable": 1e3 * median_seconds(lambda: session.run([grad], eight), repeats=5),
                "batch1_then_batch8": 1e3
                * median_seconds(lambda: (session.run([grad], one), session.run([grad], eight)), repeats=5),
            }
        found["backward_op_profile_ms_batch8"] = op_profile(backward, eight, providers=cuda())
        found["forward_op_profile_ms_batch8"] = op_profile(model_bytes, {input_name: eight[input_name]}, providers=cuda())
        return found

    report.section(f"{name}: agreement", agreement)
    report.section(f"{name}: cuda diagnosis", diagnosis)
    report.section(f"{name}: timings", timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dry-run", action="store_true", help="run every section even without CUDA (to test this script)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    providers = usable_providers()
    report = Report()
    report.results["environment"] = {
        "onnxruntime": ort.__version__,
        "available_providers": ort.get_available_providers(),
        "chosen_providers": list(providers),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    print(json.dumps(report.results["environment"], indent=1), flush=True)
    if "CUDAExecutionProvider" in providers or args.dry_run:
        torch.manual_seed(0)
        with tempfile.TemporaryDirectory() as gpu_store, tempfile.TemporaryDirectory() as cpu_store:
            gpu = Convscope(Path(gpu_store))
            cpu = Convscope(Path(cpu_store), providers=CPU)
            try:
                batch = gpu.prepare(gpu.upload([("", BUNDLED.read_bytes())]), images=[PHOTO.read_bytes()]).batch
                twin = _twins.efficientnet_lite0().to(DEVICE)
                check_model(gpu, cpu, "efficientnet_lite0", BUNDLED.read_bytes(), twin, batch, report, args.repeats)
                resnet = _twins.resnet18(running_var=(0.5, 2.0))
                resnet_bytes = _twins.export(resnet, batch_axis="batch", quiet=True)
                check_model(gpu, cpu, "resnet18", resnet_bytes, resnet.to(DEVICE), batch, report, args.repeats)
            finally:
                gpu.close()
                cpu.close()
    out = os.environ.get("OUT")
    if out:
        Path(out, "gpu_check.json").write_text(json.dumps(report.results, indent=2))
    write_results("gpu_check", report.results)


if __name__ == "__main__":
    main()
