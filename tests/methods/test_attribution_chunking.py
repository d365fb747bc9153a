"""Many IG steps or SmoothGrad samples run in memory-sized chunks and give the same answer."""

from __future__ import annotations

import numpy as np
import pytest

from convscope.core import Convscope
from convscope.methods import gradients
from convscope.methods.attribution import AttributionOptions
from convscope.methods.gradients import backward_batch_size
from tests.nets import NETS, exported


@pytest.fixture(scope="module")
def core_and_model(tmp_path_factory):
    core = Convscope(tmp_path_factory.mktemp("store"))
    record = core.upload([("", exported("ResNetStyle", "torchscript").SerializeToString())])
    yield core, record
    core.close()


@pytest.mark.parametrize("method", ["integrated_gradients", "smoothgrad"])
def test_chunked_equals_one_batch(core_and_model, method):
    core, record = core_and_model
    x = np.random.default_rng(3).standard_normal((2, *NETS["ResNetStyle"].input_shape)).astype(np.float32)
    options = AttributionOptions(steps=12, samples=12, integration="riemann_trapezoid", baseline=0.1)
    whole, _ = core.attribution(record.id, core.prepare(record, tensor=x), method, options, render=False)
    per_sample = sum(int(np.prod(layer.shape)) * 4 for layer in record.layers) * 3
    core.context.batch_budget_bytes = per_sample * 5  # 5 samples per run: chunks of 2 copies of the pair
    try:
        chunked, _ = core.attribution(record.id, core.prepare(record, tensor=x), method, options, render=False)
    finally:
        core.context.batch_budget_bytes = type(core.context).batch_budget_bytes
    np.testing.assert_allclose(chunked.map, whole.map, rtol=1e-5, atol=1e-6 * float(np.abs(whole.map).max()))
    assert np.abs(whole.map).max() > 0


def test_cpu_backward_runs_stay_cache_sized(core_and_model, monkeypatch):
    """On the CPU provider the memory budget is capped by the cache-sized one; a GPU keeps
    the memory-sized batch."""
    core, record = core_and_model
    per_sample = sum(layer.sample_bytes for layer in record.layers)
    monkeypatch.setattr(core.context, "batch_budget_bytes", per_sample * gradients.BACKWARD_MEMORY_FACTOR * 10)
    monkeypatch.setattr(gradients, "BACKWARD_CACHE_BYTES", per_sample * 2)
    monkeypatch.setattr(core.context.runtime, "_providers", ("CPUExecutionProvider",))
    assert backward_batch_size(core.context, record) == 2
    monkeypatch.setattr(gradients, "BACKWARD_CACHE_BYTES", per_sample // 2)
    assert backward_batch_size(core.context, record) == 1
    monkeypatch.setattr(core.context.runtime, "_providers", ("CUDAExecutionProvider", "CPUExecutionProvider"))
    assert backward_batch_size(core.context, record) == 10
