"""graph/backward/rules/reduction.py against torch.autograd: ReduceSum/Mean/Max/Min across opsets
(axes as attribute and as input), Softmax and LogSoftmax."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch.nn.functional as F

from tests.graph.backward.harness import (
    Case,
    Shape,
    check,
    check_ties,
    reduce_case,
    unary,
)

REDUCE_CASES = [
    reduce_case("opset11-attr", "ReduceSum", lambda x: x.sum((2, 3), keepdim=True), 11, axes=[2, 3]),
    reduce_case("opset13-input", "ReduceSum", lambda x: x.sum(1), 13, axes_input=[1], keepdims=0),
    reduce_case("all", "ReduceSum", lambda x: x.sum(), 13, keepdims=0),
    reduce_case("noop", "ReduceSum", lambda x: x, 13, noop_with_empty_axes=1),
    reduce_case("empty-axes", "ReduceSum", lambda x: x.sum(), 13, axes_input=[], keepdims=0),
    reduce_case("opset13-attr", "ReduceMean", lambda x: x.mean(-1), 13, axes=[-1], keepdims=0),
    reduce_case("opset18-input", "ReduceMean", lambda x: x.mean((1, 3), keepdim=True), 18, axes_input=[1, 3]),
    reduce_case("all-keepdims", "ReduceMean", lambda x: x.mean((0, 1, 2, 3), keepdim=True), 18),
    reduce_case("opset18", "ReduceMax", lambda x: x.amax(1), 18, axes_input=[1], keepdims=0),
    reduce_case("opset13", "ReduceMin", lambda x: x.amin((2, 3), keepdim=True), 13, axes=[2, 3]),
]


SOFTMAX_CASES = [
    unary("opset11-axis1", "Softmax", lambda x: F.softmax(x.flatten(1), 1).reshape(x.shape), opset=11, axis=1),
    unary("opset11-axis2", "Softmax", lambda x: F.softmax(x.flatten(2), 2).reshape(x.shape), opset=11, axis=2),
    unary("opset11-default", "Softmax", lambda x: F.softmax(x.flatten(1), 1).reshape(x.shape), opset=11),
    unary("opset13-axis1", "Softmax", lambda x: F.softmax(x, 1), opset=13, axis=1),
    unary("opset13-default", "Softmax", lambda x: F.softmax(x, -1), opset=13),
    unary("opset11-axis1", "LogSoftmax", lambda x: F.log_softmax(x.flatten(1), 1).reshape(x.shape), opset=11, axis=1),
    unary("opset13-axis-2", "LogSoftmax", lambda x: F.log_softmax(x, -2), opset=13, axis=-2),
]


TIE_CASES = [
    (
        reduce_case("ties", "ReduceMax", lambda x: x.amax((2, 3)), 18, axes_input=[2, 3], keepdims=0),
        lambda rng, s: np.round(rng.random(s)),
    ),
]


@pytest.mark.parametrize(("case", "values"), TIE_CASES, ids=[c.id for c, _ in TIE_CASES])
def test_ties_follow_torch(case: Case, values: Callable[[np.random.Generator, Shape], np.ndarray]) -> None:
    check_ties(case, values)


@pytest.mark.parametrize("case", REDUCE_CASES + SOFTMAX_CASES, ids=repr)
def test_op_matches_torch(case: Case) -> None:
    check(case)
