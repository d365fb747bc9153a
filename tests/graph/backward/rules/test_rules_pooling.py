"""graph/backward/rules/pooling.py against torch.autograd: MaxPool (and its ties), GlobalMaxPool,
AveragePool, Resize in every mode, LRN."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.graph.backward.harness import (
    Case,
    Shape,
    check,
    check_ties,
    node,
    same_pads,
    torch_pads,
    unary,
)

# -- pooling and resizing ------------------------------------------------------------

NEG_INF = float("-inf")
MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def pool_ref(kind: str, kernel: Sequence[int], attrs: dict[str, Any]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Explicit-padding torch pooling; ceil_mode goes to torch when pads are symmetric."""
    n = len(kernel)
    strides, dilations = attrs.get("strides", [1] * n), attrs.get("dilations", [1] * n)
    ceil = bool(attrs.get("ceil_mode", 0))

    def ref(x: torch.Tensor) -> torch.Tensor:
        auto_pad = attrs.get("auto_pad", "NOTSET")
        if auto_pad.startswith("SAME"):
            begin, end = same_pads(x.shape[2:], kernel, strides, dilations, auto_pad == "SAME_UPPER")
        else:
            pads = attrs.get("pads", [0] * 2 * n)
            begin, end = pads[:n], pads[n:]
        if kind == "max":
            if begin == end:
                return MAX_POOL[n](x, kernel, strides, begin, dilations, ceil_mode=ceil)
            return MAX_POOL[n](F.pad(x, torch_pads(begin, end), value=NEG_INF), kernel, strides, 0, dilations, ceil_mode=ceil)
        if begin == end:
            return AVG_POOL[n](
                x, kernel, strides, begin, ceil_mode=ceil, count_include_pad=bool(attrs.get("count_include_pad", 0))
            )
        padded = F.pad(x, torch_pads(begin, end))
        total = AVG_POOL[n](padded, kernel, strides, 0, ceil_mode=ceil)
        if attrs.get("count_include_pad", 0):
            return total
        counts = AVG_POOL[n](F.pad(torch.ones_like(x), torch_pads(begin, end)), kernel, strides, 0, ceil_mode=ceil)
        return total / counts

    return ref


def pool_case(id: str, op: str, shape: Shape, opset: int = 17, **attrs: Any) -> Case:
    ref = pool_ref("max" if op == "MaxPool" else "avg", attrs["kernel_shape"], attrs)
    return Case(f"{op}-{id}", [node(op, "x", **attrs)], {"x": shape}, ref, opset=opset)


POOL_CASES = [
    pool_case("k2s2", "MaxPool", (2, 3, 8, 9), kernel_shape=[2, 2], strides=[2, 2]),
    pool_case("k3s2p1-overlap", "MaxPool", (2, 3, 9, 8), kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    pool_case("k3s1-asym", "MaxPool", (2, 3, 6, 7), kernel_shape=[3, 2], pads=[0, 1, 1, 0]),
    pool_case("ceil", "MaxPool", (2, 3, 8, 9), kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
    pool_case("ceil-pads", "MaxPool", (2, 3, 6, 8), kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1),
    pool_case("dilation2", "MaxPool", (2, 3, 8, 9), kernel_shape=[2, 3], dilations=[2, 2]),
    pool_case("same-upper", "MaxPool", (2, 3, 8, 9), kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    pool_case("same-lower", "MaxPool", (2, 3, 8, 9), kernel_shape=[2, 2], strides=[2, 2], auto_pad="SAME_LOWER"),
    pool_case("1d", "MaxPool", (2, 3, 11), kernel_shape=[3], strides=[2]),
    pool_case("3d", "MaxPool", (1, 2, 5, 6, 4), kernel_shape=[2, 3, 2], strides=[2, 2, 1]),
    pool_case("opset9", "MaxPool", (2, 3, 8, 9), opset=9, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    pool_case("k2s2", "AveragePool", (2, 3, 8, 9), kernel_shape=[2, 2], strides=[2, 2]),
    pool_case("k3s2p1-excl", "AveragePool", (2, 3, 9, 8), kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    pool_case(
        "k3s2p1-incl", "AveragePool", (2, 3, 9, 8), kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1
    ),
    pool_case("ceil-excl", "AveragePool", (2, 3, 8, 9), kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
    pool_case(
        "ceil-incl-pads",
        "AveragePool",
        (2, 3, 8, 7),
        kernel_shape=[3, 3],
        strides=[2, 2],
        pads=[1, 1, 1, 1],
        ceil_mode=1,
        count_include_pad=1,
    ),
    pool_case("asym-excl", "AveragePool", (2, 3, 7, 6), kernel_shape=[3, 2], pads=[0, 1, 2, 1]),
    pool_case("asym-incl", "AveragePool", (2, 3, 7, 6), kernel_shape=[3, 2], pads=[0, 1, 2, 1], count_include_pad=1),
    pool_case("same-upper", "AveragePool", (2, 3, 8, 9), kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    pool_case("1d", "AveragePool", (2, 3, 11), kernel_shape=[3], strides=[2], pads=[1, 1]),
    pool_case("3d", "AveragePool", (1, 2, 5, 6, 4), kernel_shape=[2, 3, 2], strides=[2, 2, 1]),
    pool_case("opset9", "AveragePool", (2, 3, 8, 9), opset=9, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    Case("GlobalMaxPool", [node("GlobalMaxPool", "x")], {"x": (2, 3, 5, 4)}, lambda x: F.adaptive_max_pool2d(x, 1)),
    Case("GlobalAveragePool", [node("GlobalAveragePool", "x")], {"x": (2, 3, 5, 4)}, lambda x: x.mean((2, 3), keepdim=True)),
    Case("GlobalAveragePool-1d", [node("GlobalAveragePool", "x")], {"x": (2, 3, 7)}, lambda x: x.mean(2, keepdim=True)),
    Case(
        "GlobalAveragePool-static-batch",
        [node("GlobalAveragePool", "x")],
        {"x": (2, 3, 5, 4)},
        lambda x: x.mean((2, 3), keepdim=True),
        symbolic=False,
    ),
    Case(
        "GlobalAveragePool-dynamic",
        [node("GlobalAveragePool", "x")],
        {"x": (2, 3, 5, 4)},
        lambda x: x.mean((2, 3), keepdim=True),
        dynamic_spatial=True,
    ),
]


def source_coords(n: int, m: int, scale: float, ctm: str) -> np.ndarray:
    """ONNX Resize's coordinate transformations, straight from the operator spec."""
    i = np.arange(m, dtype=np.float64)
    if ctm == "half_pixel":
        return (i + 0.5) / scale - 0.5
    if ctm == "pytorch_half_pixel":
        return (i + 0.5) / scale - 0.5 if m > 1 else np.zeros(m)
    if ctm == "align_corners":
        return i * (n - 1) / (m - 1) if m > 1 else np.zeros(m)
    if ctm == "asymmetric":
        return i / scale
    if ctm == "tf_half_pixel_for_nn":
        return (i + 0.5) / scale
    raise ValueError(ctm)


def interp_matrix(n: int, m: int, scale: float, mode: str, ctm: str, nearest_mode: str) -> np.ndarray:
    """The [m, n] matrix of one axis of ONNX Resize (nearest or linear)."""
    x = source_coords(n, m, scale, ctm)
    out = np.zeros((m, n))
    if mode == "nearest":
        rounded = {
            "round_prefer_floor": np.ceil(x - 0.5),
            "round_prefer_ceil": np.floor(x + 0.5),
            "floor": np.floor(x),
            "ceil": np.ceil(x),
        }[nearest_mode]
        out[np.arange(m), np.clip(rounded, 0, n - 1).astype(int)] = 1.0
        return out
    x = np.clip(x, 0, n - 1)
    lo = np.floor(x).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    frac = x - lo
    np.add.at(out, (np.arange(m), lo), 1 - frac)
    np.add.at(out, (np.arange(m), hi), frac)
    return out


def resize_case(
    id: str,
    shape: Shape,
    *,
    scales: Sequence[float] | None = None,
    sizes: Sequence[int] | None = None,
    opset: int = 13,
    mode: str = "nearest",
    ctm: str = "half_pixel",
    nearest_mode: str = "round_prefer_floor",
) -> Case:
    """Resize checked against the spec's per-axis matrices applied in torch."""
    factors = list(scales) if scales else [o / i for o, i in zip(sizes, shape, strict=True)]  # type: ignore[arg-type]
    out = [int(math.floor(i * s)) for i, s in zip(shape, factors, strict=True)] if scales else list(sizes)  # type: ignore[arg-type]
    mats = [
        torch.tensor(interp_matrix(n, m, s, mode, ctm, nearest_mode))
        for n, m, s in zip(shape[2:], out[2:], factors[2:], strict=True)
    ]

    def ref(x: torch.Tensor, **_: Any) -> torch.Tensor:
        y = torch.einsum("nchw,Hh->ncHw", x, mats[0])
        return torch.einsum("ncHw,Ww->ncHW", y, mats[1])

    weights: dict[str, np.ndarray] = {"roi": np.zeros(0, np.float32)}
    inputs = ["roi"]
    if scales:
        weights["scales"] = np.array(scales, np.float32)
        inputs.append("scales")
    else:
        weights["sizes"] = np.array(sizes, np.int64)
        inputs += ["", "sizes"]
    attrs = dict(mode=mode, coordinate_transformation_mode=ctm)
    if mode == "nearest":
        attrs["nearest_mode"] = nearest_mode
    return Case(f"Resize-{id}", [node("Resize", "x", *inputs, **attrs)], {"x": shape}, ref, weights, opset)


RESIZE_CASES = [
    resize_case("nearest-asym-floor-x2", (2, 3, 4, 5), scales=[1, 1, 2, 2], ctm="asymmetric", nearest_mode="floor"),
    resize_case("nearest-half-pixel-prefer-floor", (2, 3, 4, 5), scales=[1, 1, 1.5, 2.5]),
    resize_case("nearest-half-pixel-prefer-ceil", (2, 3, 5, 4), scales=[1, 1, 1.7, 0.6], nearest_mode="round_prefer_ceil"),
    resize_case("nearest-align-corners", (2, 3, 4, 5), sizes=[2, 3, 7, 9], ctm="align_corners"),
    resize_case("nearest-asym-ceil", (2, 3, 4, 5), scales=[1, 1, 1.5, 2.0], ctm="asymmetric", nearest_mode="ceil"),
    resize_case("nearest-tf-half-pixel", (2, 3, 4, 5), scales=[1, 1, 2.0, 1.5], ctm="tf_half_pixel_for_nn", nearest_mode="floor"),
    resize_case("nearest-downsample", (2, 3, 8, 9), scales=[1, 1, 0.5, 0.4], ctm="asymmetric", nearest_mode="floor"),
    resize_case("linear-half-pixel", (2, 3, 4, 5), scales=[1, 1, 2, 1.5], mode="linear"),
    resize_case("linear-pytorch-half-pixel", (2, 3, 4, 5), sizes=[2, 3, 7, 3], mode="linear", ctm="pytorch_half_pixel"),
    resize_case("linear-align-corners", (2, 3, 4, 5), sizes=[2, 3, 9, 7], mode="linear", ctm="align_corners"),
    resize_case("linear-asymmetric", (2, 3, 4, 5), scales=[1, 1, 2.5, 2], mode="linear", ctm="asymmetric"),
    resize_case("linear-width-only", (2, 3, 4, 5), scales=[1, 1, 1, 3], mode="linear"),
    resize_case("linear-opset18", (2, 3, 4, 5), scales=[1, 1, 2, 1.5], mode="linear", opset=18),
    resize_case("nearest-opset11-sizes", (2, 3, 4, 5), sizes=[2, 3, 6, 10], opset=11, ctm="asymmetric", nearest_mode="floor"),
    Case(
        "Resize-cubic-half-pixel",
        [node("Resize", "x", "", "scales", mode="cubic", cubic_coeff_a=-0.75)],
        {"x": (2, 3, 4, 5)},
        lambda x, scales: F.interpolate(x, scale_factor=(2.0, 1.5), mode="bicubic", align_corners=False),
        {"scales": np.array([1, 1, 2, 1.5], np.float32)},
        opset=13,
    ),
    Case(
        "Upsample-opset9-nearest",
        [node("Upsample", "x", "scales", mode="nearest")],
        {"x": (2, 3, 4, 5)},
        lambda x, scales: F.interpolate(x, scale_factor=2, mode="nearest"),
        {"scales": np.array([1, 1, 2, 2], np.float32)},
        opset=9,
    ),
    Case(
        "Resize-dynamic-sizes",
        [
            node("Shape", "x", out=["s"]),
            node("Slice", "s", "zero", "two", out=["nc"]),
            node("Concat", "nc", "hw", out=["sizes"], axis=0),
            node("Resize", "x", "", "", "sizes", mode="linear", coordinate_transformation_mode="align_corners"),
        ],
        {"x": (2, 3, 4, 5)},
        lambda x, **_: F.interpolate(x, size=(7, 8), mode="bilinear", align_corners=True),
        {"zero": np.array([0]), "two": np.array([2]), "hw": np.array([7, 8])},
        opset=13,
    ),
]


LRN_CASES = [
    unary("size3", "LRN", lambda x: F.local_response_norm(x, 3, 1e-2, 0.75, 1.0), shape=(2, 6, 3, 4), size=3, alpha=1e-2),
    unary(
        "size5",
        "LRN",
        lambda x: F.local_response_norm(x, 5, 0.5, 0.6, 2.0),
        shape=(2, 7, 3, 4),
        size=5,
        alpha=0.5,
        beta=0.6,
        bias=2.0,
    ),
]


TIE_CASES = [
    # Values on a coarse grid: many equal maxima in overlapping windows; torch picks the first.
    (
        Case(
            "MaxPool-ties",
            [node("MaxPool", "x", kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])],
            {"x": (2, 2, 5, 6)},
            lambda x: F.max_pool2d(x, 3, 1, 1),
        ),
        lambda rng, s: np.round(rng.standard_normal(s)).clip(0, 1),
    ),
    (
        Case(
            "MaxPool-ties-s2",
            [node("MaxPool", "x", kernel_shape=[2, 2], strides=[2, 2])],
            {"x": (1, 2, 6, 6)},
            lambda x: F.max_pool2d(x, 2, 2),
        ),
        lambda rng, s: np.ones(s),
    ),
    (
        Case("GlobalMaxPool-ties", [node("GlobalMaxPool", "x")], {"x": (2, 3, 4, 4)}, lambda x: F.adaptive_max_pool2d(x, 1)),
        lambda rng, s: np.round(rng.random(s)),
    ),
]


@pytest.mark.parametrize(("case", "values"), TIE_CASES, ids=[c.id for c, _ in TIE_CASES])
def test_ties_follow_torch(case: Case, values: Callable[[np.random.Generator, Shape], np.ndarray]) -> None:
    check_ties(case, values)


@pytest.mark.parametrize("case", POOL_CASES + RESIZE_CASES + LRN_CASES, ids=repr)
def test_op_matches_torch(case: Case) -> None:
    check(case)
