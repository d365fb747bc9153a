"""graph/backward/rules/layout.py against torch.autograd: Flatten, Reshape, (Un)Squeeze, Transpose,
Concat, Split, Slice, Pad, Gather(Elements), Tile, DepthToSpace, SpaceToDepth."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.graph.backward.harness import (
    INT_MAX,
    Case,
    check,
    f32,
    node,
    rand,
    unary,
)

LAYOUT_CASES = [
    unary("axis1-opset11", "Flatten", lambda x: x.flatten(1), opset=11, axis=1),
    unary("axis2", "Flatten", lambda x: x.reshape(x.shape[0] * x.shape[1], -1), axis=2),
    # Reshape back to X's shape: a constant target (−1 for the batch), or Shape(X) at run time.
    Case("Flatten-static", [node("Flatten", "x")], {"x": (2, 3, 4, 5)}, lambda x: x.flatten(1), symbolic=False),
    Case("Flatten-dynamic", [node("Flatten", "x")], {"x": (2, 3, 4, 5)}, lambda x: x.flatten(1), dynamic_spatial=True),
    unary("", "Reshape", lambda x, s: x.reshape(2, -1, 5), inputs=("s",), weights={"s": np.array([0, -1, 5])}),
    unary("opset11", "Squeeze", lambda x: x.squeeze(1), opset=11, shape=(2, 1, 3, 1), axes=[1]),
    unary(
        "opset13",
        "Squeeze",
        lambda x, a: x.squeeze(3).squeeze(1),
        opset=13,
        shape=(2, 1, 3, 1),
        inputs=("a",),
        weights={"a": np.array([1, -1])},
    ),
    unary("opset11", "Unsqueeze", lambda x: x[:, None, ..., None], opset=11, shape=(2, 3, 4), axes=[1, -1]),
    unary(
        "opset13", "Unsqueeze", lambda x, a: x[:, :, None], opset=13, shape=(2, 3, 4), inputs=("a",), weights={"a": np.array([2])}
    ),
    unary("perm", "Transpose", lambda x: x.permute(0, 2, 3, 1), perm=[0, 2, 3, 1]),
    unary("reverse", "Transpose", lambda x: x.permute(3, 2, 1, 0)),
    Case(
        "Concat-axis1-with-const",
        [node("Concat", "a", "w", "b", axis=1)],
        {"a": (2, 3, 4), "b": (2, 2, 4)},
        lambda a, b, w: torch.cat([a, w, b], 1),
        {"w": rand(2, 1, 4)},
    ),
    Case(
        "Concat-axis-1", [node("Concat", "a", "b", axis=-1)], {"a": (2, 3, 4), "b": (2, 3, 1)}, lambda a, b: torch.cat([a, b], -1)
    ),
    Case(
        "Split-opset11-attr",
        [node("Split", "x", out=["y", "z"], axis=1, split=[2, 3])],
        {"x": (2, 5, 3)},
        lambda x: x[:, :2],
        opset=11,
    ),
    Case(
        "Split-opset13-input",
        [node("Split", "x", "sp", out=["z", "y"], axis=-1)],
        {"x": (2, 3, 5)},
        lambda x, sp: x[..., 1:],
        {"sp": np.array([1, 4])},
        opset=13,
    ),
    Case(
        "Split-opset18-num-outputs",
        [node("Split", "x", out=["a", "y", "c"], axis=1, num_outputs=3)],
        {"x": (2, 6, 3)},
        lambda x: x[:, 2:4],
        opset=18,
    ),
    unary("opset9-attrs", "Slice", lambda x: x[:, 1:3, :, -3:], opset=9, starts=[1, -3], ends=[3, INT_MAX], axes=[1, 3]),
    unary(
        "steps",
        "Slice",
        lambda x, s, e, a, st: x[:, :, [3, 1], ::2],
        opset=13,
        inputs=("s", "e", "a", "st"),
        weights={"s": np.array([3, 0]), "e": np.array([0, INT_MAX]), "a": np.array([2, -1]), "st": np.array([-2, 2])},
    ),
    unary(
        "no-axes",
        "Slice",
        lambda x, s, e: x[1:, :2, 1:-1],
        opset=13,
        inputs=("s", "e"),
        weights={"s": np.array([1, 0, 1]), "e": np.array([5, 2, -1])},
    ),
    unary(
        "constant",
        "Pad",
        lambda x, p, v: F.pad(x, (1, 2, 0, 1), value=0.5),
        opset=11,
        inputs=("p", "v"),
        weights={"p": np.array([0, 0, 0, 1, 0, 0, 1, 2]), "v": f32(0.5)},
    ),
    unary(
        "reflect",
        "Pad",
        lambda x, p: F.pad(x, (2, 1, 1, 2), mode="reflect"),
        opset=13,
        inputs=("p",),
        weights={"p": np.array([0, 0, 1, 2, 0, 0, 2, 1])},
        mode="reflect",
    ),
    unary(
        "edge",
        "Pad",
        lambda x, p: F.pad(x, (2, 3, 1, 0), mode="replicate"),
        opset=13,
        inputs=("p",),
        weights={"p": np.array([0, 0, 1, 2, 0, 0, 0, 3])},
        mode="edge",
    ),
    unary(
        "opset18-axes",
        "Pad",
        lambda x, **_: F.pad(x, (1, 1)),
        opset=18,
        inputs=("p", "", "a"),
        weights={"p": np.array([1, 1]), "a": np.array([-1])},
    ),
    unary("opset9-attrs", "Pad", lambda x: F.pad(x, (0, 0, 2, 1), value=0.0), opset=9, pads=[0, 0, 2, 0, 0, 0, 1, 0]),
    unary(
        "axis0-duplicates",
        "Gather",
        lambda x, i: x[[1, 0, 1, -1]],
        inputs=("i",),
        weights={"i": np.array([1, 0, 1, -1])},
        shape=(3, 4, 5),
    ),
    unary("axis1-scalar", "Gather", lambda x, i: x[:, 2], inputs=("i",), weights={"i": np.array(2)}, axis=1),
    unary(
        "axis2-2d",
        "Gather",
        lambda x, i: x[:, :, [[0, 3], [3, 3]]],
        inputs=("i",),
        weights={"i": np.array([[0, 3], [3, 3]])},
        axis=2,
    ),
    unary(
        "",
        "GatherElements",
        lambda x, i: torch.gather(x, 1, i),
        inputs=("i",),
        weights={"i": np.random.default_rng(4).integers(0, 3, (2, 5, 4, 5))},
        axis=1,
    ),
    unary("", "Tile", lambda x, r: x.repeat(1, 2, 1, 3), inputs=("r",), weights={"r": np.array([1, 2, 1, 3])}),
    unary("crd", "DepthToSpace", lambda x: F.pixel_shuffle(x, 2), shape=(2, 8, 3, 4), blocksize=2, mode="CRD"),
    unary(
        "dcr",
        "DepthToSpace",
        lambda x: x.reshape(2, 2, 2, 2, 3, 4).permute(0, 3, 4, 1, 5, 2).reshape(2, 2, 6, 8),
        shape=(2, 8, 3, 4),
        blocksize=2,
    ),
    unary(
        "",
        "SpaceToDepth",
        lambda x: x.reshape(2, 3, 2, 2, 2, 2).permute(0, 3, 5, 1, 2, 4).reshape(2, 12, 2, 2),
        shape=(2, 3, 4, 4),
        blocksize=2,
    ),
]


@pytest.mark.parametrize("case", LAYOUT_CASES, ids=repr)
def test_op_matches_torch(case: Case) -> None:
    check(case)
