"""What graph a session runs: the model's base graph transformed by passes, named by a spec.

Specs are small hashable values, so sessions can be cached per (model, spec, provider) and a
spec can cross a process boundary when sessions move into sandboxed workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from convscope.graph.expose import expose


@dataclass(frozen=True)
class PlainGraph:
    """The base graph as is: what forward-only work should run (onnxruntime fuses freely)."""

    def build(self, base: onnx.ModelProto) -> onnx.ModelProto:
        return base


@dataclass(frozen=True)
class ExposedGraph:
    """The base graph with these intermediate tensors also returned."""

    tensors: frozenset[str]

    def build(self, base: onnx.ModelProto) -> onnx.ModelProto:
        return expose(base, sorted(self.tensors))


GraphSpec = PlainGraph | ExposedGraph


def graph_for(outputs: set[str] | frozenset[str], model_outputs: set[str]) -> GraphSpec:
    """The cheapest graph that yields ``outputs``: expose only what the plain graph lacks."""
    extra = frozenset(outputs) - model_outputs
    return ExposedGraph(extra) if extra else PlainGraph()
