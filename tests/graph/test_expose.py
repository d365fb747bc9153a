"""graph/expose.py: intermediate tensors as outputs, against onnxruntime's own values."""

from __future__ import annotations

import numpy as np
import pytest

from convscope.errors import NotFound
from convscope.graph.expose import expose
from tests.forward_oracle import assert_same_activation, reference_tensors
from tests.graph.tiny_models import RNG, conv_relu_reshape, run


@pytest.mark.parametrize("variant", [{}, {"weights_in_constant": True}, {"initializers_as_inputs": True}])
def test_expose_returns_what_onnxruntime_computes(variant):
    model = conv_relu_reshape(1, **variant)
    exposed = expose(model, ["conv", "relu"])
    x = RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)
    got = run(exposed, {"x": x}, ["conv", "relu", "logits"])
    reference = reference_tensors(model, {"x": x}, ["conv", "relu"])
    for tensor in ("conv", "relu"):
        assert_same_activation(got[tensor], reference[tensor])
    np.testing.assert_array_equal(got["logits"], run(model, {"x": x})["logits"])
    assert [o.name for o in model.graph.output] == ["logits"], "the pass must not mutate its input"


def test_expose_all_and_unknown():
    model = conv_relu_reshape(1)
    assert [o.name for o in expose(model).graph.output] == ["logits", "conv", "relu", "flat"]
    with pytest.raises(NotFound, match="nope"):
        expose(model, ["nope"])
