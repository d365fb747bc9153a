"""What graph a session runs: the model's base graph transformed by passes, named by a spec.

Specs are small hashable values, so sessions can be cached per (model, spec, provider) and a
spec can cross a process boundary when sessions move into sandboxed workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from convscope.choices import parse
from convscope.graph.backward import build_backward
from convscope.graph.channel_peaks import add_channel_peaks, peaks_source
from convscope.graph.expose import expose
from convscope.graph.incremental.stages import StagePlan
from convscope.graph.incremental.submodels import stage_model, tail_model
from convscope.graph.loss_seed import seed_from_forward
from convscope_client.choices import Rectifier, RectifierScope


@dataclass(frozen=True)
class PlainGraph:
    """The base graph as is: what forward-only work should run (onnxruntime fuses freely)."""

    def build(self, base: onnx.ModelProto) -> onnx.ModelProto:
        return base


@dataclass(frozen=True)
class ExposedGraph:
    """The base graph with these intermediate tensors also returned, and the per-channel peaks of
    ``peaks`` (graph/channel_peaks.py) computed in the graph."""

    tensors: frozenset[str]
    peaks: frozenset[str] = frozenset()

    def build(self, base: onnx.ModelProto) -> onnx.ModelProto:
        exposed = expose(base, sorted(self.tensors))
        return add_channel_peaks(exposed, sorted(self.peaks)) if self.peaks else exposed


@dataclass(frozen=True)
class BackwardGraph:
    """Forward and backward in one graph: seeds in, gradients of the input and ``wrt`` out."""

    seeds: tuple[str, ...]
    wrt: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
    rectifier: Rectifier = Rectifier.PLAIN
    rectifiers: RectifierScope = RectifierScope.ALL
    top_target: bool = False  # seed the (one) seed tensor's top entry in the graph itself

    def __post_init__(self) -> None:
        # Graphs are cached by spec: "guided" and Rectifier.GUIDED are equal but hash apart.
        object.__setattr__(self, "rectifier", parse(Rectifier, self.rectifier))
        object.__setattr__(self, "rectifiers", parse(RectifierScope, self.rectifiers))

    def build(self, base: onnx.ModelProto) -> onnx.ModelProto:
        return build_backward(
            base,
            self.seeds,
            wrt=self.wrt,
            keep=self.keep,
            rectifier=self.rectifier,
            rectifiers=self.rectifiers,
            top_target=self.top_target,
        )


@dataclass(frozen=True)
class StageGraph:
    """One stage of incremental inference: a region of a cut tensor from a crop (graph/incremental/submodels.py)."""

    plan: StagePlan

    def build(self, base: onnx.ModelProto) -> onnx.ModelProto:
        return stage_model(base, self.plan)


@dataclass(frozen=True)
class TailGraph:
    """The graph from a cut tensor ``start`` ([N, *shape]) to ``output``."""

    start: str
    output: str
    shape: tuple[int, int, int]

    def build(self, base: onnx.ModelProto) -> onnx.ModelProto:
        return tail_model(base, self.start, self.output, self.shape)


@dataclass(frozen=True)
class LossGraph:
    """``backward`` seeded at its one seed tensor by a rule of graph/loss_seed.py (the seed made
    from the tensor's forward value in the same run): one run per optimization step."""

    backward: BackwardGraph
    rule: str

    def build(self, base: onnx.ModelProto) -> onnx.ModelProto:
        return seed_from_forward(self.backward.build(base), self.backward.seeds[0], self.rule)


GraphSpec = PlainGraph | ExposedGraph | BackwardGraph | StageGraph | TailGraph | LossGraph


def graph_for(outputs: set[str] | frozenset[str], model_outputs: set[str]) -> GraphSpec:
    """The cheapest graph that yields ``outputs`` (tensors, or ``peaks_name``s of tensors): expose
    only what the plain graph lacks."""
    peaks = frozenset(source for name in outputs if (source := peaks_source(name)) is not None)
    extra = frozenset(name for name in outputs if peaks_source(name) is None) - model_outputs
    return ExposedGraph(extra, peaks) if extra or peaks else PlainGraph()
