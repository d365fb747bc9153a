"""The backward graph alone: input-gradient latency against torch autograd, same weights.

Peers, timed interleaved (repeat by repeat, each peer once per repeat) because the machine
is shared: background load moves absolute times, much less the ratios.  Reported: the
minimum (the least disturbed run) and the median of the repeats.

- ``ours``: the ``build_backward`` graph (forward + backward, one session, the service's
  session options), bare onnxruntime, fed the input and a one-hot seed;
- ``general_conv``: the same graph with every Conv gradient forced through the general
  formulation (ConvTranspose on the unpadded extent, fitted with run-time shape arithmetic):
  what the build-time specializations of ``rules/linear.py`` buy;
- ``torch_autograd``: eager forward + ``backward`` with the same seed on the torch twin.

Models: the bundled EfficientNet-Lite0 (torch twin from efficientnet-lite-pytorch) and the
ResNet-18 of ``benchmarks.gradients`` (random weights, TorchScript export).  Goals (issue 3,
batch 1): EfficientNet ≤ 0.5× torch, ResNet-18 ≤ 0.8× torch.  Writes
benchmarks/results/backward_graph.json.

    .venv/bin/python -m benchmarks.backward_graph [--repeats 21] [--batches 1 8] [--models resnet18]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from benchmarks._common import interleaved, write_results
from benchmarks.gradients import GOALS, agreement, efficientnet_lite0, graph_stats, resnet18, torch_gradient
from convscope.graph.backward import build_backward, grad_output_name, seed_input_name
from convscope.graph.backward.rules import RULES, Rule, Vjp
from convscope.graph.backward.rules.linear import _conv_general
from convscope.runtime.providers import new_session

MODELS: dict[str, Callable[[], tuple[nn.Module, bytes]]] = {"efficientnet_lite0": efficientnet_lite0, "resnet18": resnet18}


@contextmanager
def general_conv_rule() -> Iterator[None]:
    """Every Conv gradient through the general (run-time shaped) formulation."""
    specialized = RULES["Conv"]

    def general(v: Vjp) -> dict[int, str]:
        return {0: _conv_general(v)} if v.need(0) else {}

    RULES["Conv"] = Rule(general, specialized.inputs, specialized.outputs)
    try:
        yield
    finally:
        RULES["Conv"] = specialized


def bench_model(net: nn.Module, model_bytes: bytes, batches: list[int], repeats: int) -> dict[str, object]:
    model = onnx.load_from_string(model_bytes)
    (graph_input,) = (i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer})
    output = model.graph.output[0].name
    start = time.perf_counter()
    ours = build_backward(model, seeds=[output])
    build_s = time.perf_counter() - start
    with general_conv_rule():
        general = build_backward(model, seeds=[output])
    sessions = {
        name: new_session(m.SerializeToString(), providers=["CPUExecutionProvider"])
        for name, m in (("ours", ours), ("general_conv", general))
    }
    grad = grad_output_name(graph_input)
    result: dict[str, object] = {
        "build_seconds": build_s,
        **graph_stats(model, ours),
        "general_conv_backward_graph_nodes": len(general.graph.node),
        "batches": {},
    }
    rng = np.random.default_rng(0)
    for batch in batches:
        x = rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)
        with torch.no_grad():
            targets = net(torch.from_numpy(x)).numpy().argmax(axis=1)
        seed = np.zeros((batch, 1000), np.float32)
        seed[np.arange(batch), targets] = 1
        feeds = {graph_input: x, seed_input_name(output): seed}
        works: dict[str, Callable[[], object]] = {
            name: (lambda s=session: s.run([grad], feeds)[0]) for name, session in sessions.items()
        }
        works["torch_autograd"] = lambda: torch_gradient(net, x, targets)
        want = torch_gradient(net, x, targets)
        seconds = interleaved(works, repeats=repeats if batch == 1 else max(3, repeats // 3))
        result["batches"][str(batch)] = {  # type: ignore[index]
            "seconds": seconds,
            "ratio_ours_vs_torch": {k: seconds["ours"][k] / seconds["torch_autograd"][k] for k in ("min", "median")},
            "ratio_general_conv_vs_torch": {
                k: seconds["general_conv"][k] / seconds["torch_autograd"][k] for k in ("min", "median")
            },
            "agreement_vs_torch": {name: agreement(np.asarray(works[name]()), want) for name in sessions},
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    args = parser.parse_args()
    torch.set_grad_enabled(True)
    results: dict[str, object] = {
        "onnxruntime": ort.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "goals_ours_vs_torch_batch1": GOALS,
        "repeats_batch1": args.repeats,
        "models": {},
    }
    for name in args.models:
        net, model_bytes = MODELS[name]()
        row = bench_model(net, model_bytes, args.batches, args.repeats)
        results["models"][name] = row  # type: ignore[index]
        print(
            f"== {name}: backward graph {row['backward_graph_nodes']} nodes "
            f"(general Conv path {row['general_conv_backward_graph_nodes']}), forward {row['forward_nodes']}"
        )
        for batch, b in row["batches"].items():  # type: ignore[attr-defined]
            s = b["seconds"]
            for stat in ("min", "median"):
                print(
                    f"  batch {batch} {stat:6s}: ours {s['ours'][stat] * 1e3:7.1f} ms  general_conv "
                    f"{s['general_conv'][stat] * 1e3:7.1f} ms  torch {s['torch_autograd'][stat] * 1e3:7.1f} ms  "
                    f"ours/torch {b['ratio_ours_vs_torch'][stat]:.2f}"
                )
    write_results("backward_graph", results)


if __name__ == "__main__":
    main()
