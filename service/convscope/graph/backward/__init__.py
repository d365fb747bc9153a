"""Reverse-mode differentiation of ONNX vision models, as a plain-ONNX graph pass."""

from __future__ import annotations

from .builder import build_backward, grad_output_name, seed_input_name, top_target_name
from .rules import Rectifier

__all__ = ["Rectifier", "build_backward", "grad_output_name", "seed_input_name", "top_target_name"]
