"""The rule table: op type → vector-Jacobian product written in ONNX ops.

A rule receives a ``Vjp`` (the forward node, the gradients arriving at its outputs,
which inputs need one) and returns ``{input position: gradient tensor}``.  It may
leave out an input it cannot differentiate; the pass then refuses the model with
``UnsupportedOp`` if that input is on the differentiated path, rather than letting a
missing rule become a silent zero.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from convscope.errors import UnsupportedOp
from convscope.graph.analysis import node_attributes
from convscope_client.choices import Rectifier, RectifierScope

from ..emitter import Emitter


@dataclass(frozen=True)
class Options:
    rectifier: Rectifier = Rectifier.PLAIN
    rectifiers: RectifierScope = RectifierScope.ALL


@dataclass
class Vjp:
    """One forward node as a rule sees it."""

    node: onnx.NodeProto  # named: the pass names every node before rules run
    e: Emitter
    dys: list[str | None]
    needs: list[bool]
    options: Options
    constants: Callable[[str], np.ndarray | None]

    def x(self, i: int) -> str:
        """Input ``i``'s name, or "" when the optional input is absent."""
        return self.node.input[i] if i < len(self.node.input) else ""

    def y(self, k: int = 0) -> str:
        return self.node.output[k]

    def dy(self, k: int = 0) -> str:
        """The gradient at output ``k`` (rules with one differentiable output use this)."""
        g = self.dys[k]
        if g is None:
            raise self.unsupported(f"no gradient reached output {k}")
        return g

    def need(self, i: int) -> bool:
        return i < len(self.needs) and self.needs[i]

    def attr(self, name: str, default: Any = None) -> Any:
        return node_attributes(self.node).get(name, default)

    def const_value(self, name: str) -> np.ndarray | None:
        """The value of an input known when the graph is built (initializer or Constant)."""
        return self.constants(name) if name else None

    def unsupported(self, why: str) -> UnsupportedOp:
        return UnsupportedOp(self.node.op_type, self.node.name, why)

    def static_rank(self, name: str) -> int:
        rank = self.e.rank(name)
        if rank is None:
            raise self.unsupported(f"the rank of {name!r} is unknown (shape inference failed)")
        return rank


RuleFn = Callable[[Vjp], dict[int, str]]


@dataclass(frozen=True)
class Rule:
    fn: RuleFn
    inputs: tuple[int, ...] | None
    """Input positions the op is differentiable in (None: all).  Others (shapes,
    indices, Resize scales) never carry a gradient, whatever feeds them."""
    outputs: tuple[int, ...] | None
    """Output positions whose gradient the rule consumes (None: all).  A gradient
    arriving anywhere else (say LayerNormalization's Mean) is refused, not dropped."""


RULES: dict[str, Rule] = {}


def rule(
    *op_types: str, inputs: tuple[int, ...] | None = (0,), outputs: tuple[int, ...] | None = (0,)
) -> Callable[[RuleFn], RuleFn]:
    def register(fn: RuleFn) -> RuleFn:
        for op_type in op_types:
            RULES[op_type] = Rule(fn, inputs, outputs)
        return fn

    return register


NONDIFFERENTIABLE = frozenset(
    {
        # Integer or boolean results: no gradient flows through them.
        "Shape",
        "Size",
        "NonZero",
        "ArgMax",
        "ArgMin",
        "Equal",
        "Greater",
        "GreaterOrEqual",
        "Less",
        "LessOrEqual",
        "Not",
        "And",
        "Or",
        "Xor",
        "IsNaN",
        "IsInf",
        # Float results whose derivative is zero wherever it exists (torch agrees).
        "Floor",
        "Ceil",
        "Round",
        "Sign",
        # Values independent of the input's values (only its shape matters).
        "ConstantOfShape",
        "EyeLike",
    }
)
"""Ops whose outputs carry no gradient: the differentiated path stops at them."""
