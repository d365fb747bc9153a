"""runtime/ingest.py: the probe run that learns a symbolic-size model's shapes at upload, at the
probe shape the caller names (by dim name or in full) or at the first candidate size it runs at,
and what a refusal says when it runs at none."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from convscope.core import Convscope
from convscope.errors import InvalidArgument
from tests.dynamic_nets import WidthSensitiveConcat, export_dynamic, initialized


def test_input_shape_fills_symbolic_dims_by_name_or_in_full(tmp_path: Path) -> None:
    model_bytes = export_dynamic(initialized(WidthSensitiveConcat()), torch.zeros(1, 3, 48, 96), "torchscript", fixed_height=True)
    by_name = Convscope(tmp_path / "a", providers=["CPUExecutionProvider"]).upload([("", model_bytes)], input_shape={"W": 144})
    assert by_name.probe_shape == (1, 3, 48, 144)
    in_full = Convscope(tmp_path / "b", providers=["CPUExecutionProvider"]).upload(
        [("", model_bytes)], input_shape=[1, 3, 48, 300]
    )
    assert in_full.probe_shape == (1, 3, 48, 300)
    with pytest.raises(InvalidArgument, match=r"does not run at input_shape \[1, 3, 48, 100\]: onnxruntime: .+"):
        Convscope(tmp_path / "c", providers=["CPUExecutionProvider"]).upload([("", model_bytes)], input_shape={"W": 100})
    with pytest.raises(InvalidArgument, match=r"names dims \['H'\]"):
        Convscope(tmp_path / "d", providers=["CPUExecutionProvider"]).upload([("", model_bytes)], input_shape={"H": 64})


def test_upload_that_runs_at_no_candidate_says_what_was_tried(tmp_path: Path) -> None:
    service = Convscope(tmp_path / "store", providers=["CPUExecutionProvider"])
    model_bytes = export_dynamic(
        initialized(WidthSensitiveConcat(factor=11)), torch.zeros(1, 3, 48, 88), "torchscript", fixed_height=True
    )
    with pytest.raises(InvalidArgument) as raised:
        service.upload([("", model_bytes)])
    message = str(raised.value)
    assert "[1, 3, 48, 224]" in message and "[1, 3, 48, 96]" in message and "onnxruntime at [1, 3, 48, 224]:" in message
    assert "pass input_shape" in message
    assert service.models() == []
