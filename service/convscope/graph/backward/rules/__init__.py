"""Gradient rules, one module per family of ops; importing this package fills ``RULES``."""

from __future__ import annotations

from . import elementwise, layout, linear, pooling, reduction  # noqa: F401  (they register rules)
from ._registry import NONDIFFERENTIABLE, RULES, Options, Rectifier, RectifierScope, Rule, Vjp

__all__ = ["NONDIFFERENTIABLE", "RULES", "Options", "Rectifier", "RectifierScope", "Rule", "Vjp"]
