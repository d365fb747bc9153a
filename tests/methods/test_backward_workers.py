"""On the CPU provider the chunks of a backward batch run side by side on worker threads
(methods/gradients.py ``run_backward``): the answers are those of the chunks run one after another on the same session, bit for bit."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest

from convscope.core import Convscope
from convscope.graph.loss_seed import rule_input_names
from convscope.methods import gradients
from convscope.methods.gradients import backward_batch_size, backward_call_size, resolve_score
from convscope.methods.optimize import Objective, loss_gradient
from convscope.model.types import ModelRecord
from tests.nets import exported
from tests.oracles import random_input


@pytest.fixture(scope="module")
def core_and_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Convscope, ModelRecord]]:
    core = Convscope(tmp_path_factory.mktemp("store"))
    record = core.upload([("", exported("ResNetStyle", "torchscript").SerializeToString())])
    yield core, record
    core.close()


@pytest.fixture
def one_sample_runs(core_and_model, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A two-core CPU machine whose backward runs hold one sample; returns the names of the
    threads that ran them."""
    core, record = core_and_model
    monkeypatch.setattr(core.context.runtime, "_providers", ("CPUExecutionProvider",))
    monkeypatch.setattr(gradients, "available_cores", lambda: 2)
    monkeypatch.setattr(gradients, "BACKWARD_CACHE_BYTES", sum(layer.sample_bytes for layer in record.layers))
    runners: list[str] = []
    run = core.context.runtime.run

    def recorded(*args, **kwargs):  # type: ignore[no-untyped-def]
        runners.append(threading.current_thread().name)
        return run(*args, **kwargs)

    monkeypatch.setattr(core.context.runtime, "run", recorded)
    return runners


def sequentially(monkeypatch: pytest.MonkeyPatch, work):  # type: ignore[no-untyped-def]
    """``work()`` with one backward run at a time, on the worker threads' session."""
    with monkeypatch.context() as patch:
        patch.setattr(gradients, "backward_workers", lambda context: 1)
        return work()


def test_input_gradients_of_concurrent_chunks_equal_sequential_runs(core_and_model, one_sample_runs, monkeypatch) -> None:
    core, record = core_and_model
    x = random_input((5, 3, 32, 32), seed=11)
    score = resolve_score(record, len(x), output=None, target=[0, 3, 9, 2, 5])
    assert backward_batch_size(core.context, record) == 1 and backward_call_size(core.context, record) == 2

    together = gradients.gradients(core.context, record, x, score, keep=(record.outputs[0].name,))
    assert len(one_sample_runs) == 5 and all(name.startswith("convscope-infer") for name in one_sample_runs)
    one_by_one = sequentially(
        monkeypatch, lambda: gradients.gradients(core.context, record, x, score, keep=(record.outputs[0].name,))
    )

    np.testing.assert_array_equal(together.input, one_by_one.input)
    np.testing.assert_array_equal(together.scores, one_by_one.scores)
    assert np.abs(together.input).max() > 0


def test_loss_gradients_of_concurrent_chunks_equal_sequential_runs(core_and_model, one_sample_runs, monkeypatch) -> None:
    core, record = core_and_model
    x = random_input((3, 3, 32, 32), seed=12)
    logits = record.outputs[0].name
    (onehot,) = rule_input_names(logits, "cross_entropy")
    objective = Objective(logits, "cross_entropy", {onehot: np.eye(10, dtype=np.float32)[[1, 4, 7]]})

    values, gradient = loss_gradient(core.context, record, x, objective)
    assert len(one_sample_runs) == 3
    want_values, want_gradient = sequentially(monkeypatch, lambda: loss_gradient(core.context, record, x, objective))

    np.testing.assert_array_equal(values, want_values)
    np.testing.assert_array_equal(gradient, want_gradient)


def test_runs_in_flight_share_the_memory_budget(core_and_model, monkeypatch) -> None:
    """Two runs at once each get half of what one run would: the budget holds with both alive."""
    core, record = core_and_model
    per_sample = sum(layer.sample_bytes for layer in record.layers)
    monkeypatch.setattr(core.context, "batch_budget_bytes", per_sample * gradients.BACKWARD_MEMORY_FACTOR * 10)
    monkeypatch.setattr(gradients, "BACKWARD_CACHE_BYTES", per_sample * 100)
    monkeypatch.setattr(core.context.runtime, "_providers", ("CPUExecutionProvider",))
    monkeypatch.setattr(gradients, "available_cores", lambda: 2)
    assert backward_batch_size(core.context, record) == 5 and backward_call_size(core.context, record) == 10
    monkeypatch.setattr(gradients, "available_cores", lambda: 1)
    assert backward_batch_size(core.context, record) == 10 and backward_call_size(core.context, record) == 10


def test_a_runtime_that_runs_one_call_at_a_time_gets_one_run_on_every_core(core_and_model, one_sample_runs, monkeypatch) -> None:
    """A sandbox of one worker process executes runs one after another: chunks sent side by side
    would each wait their turn on half the cores, so the batch goes as one run after another on
    all of them."""
    core, record = core_and_model
    monkeypatch.setattr(type(core.context.runtime), "concurrent_runs", property(lambda runtime: 1))
    assert gradients.backward_workers(core.context) == 1
    assert backward_call_size(core.context, record) == backward_batch_size(core.context, record) == 1
    x = random_input((3, 3, 32, 32), seed=13)
    score = resolve_score(record, len(x), output=None, target=[0, 3, 9])

    gradients.gradients(core.context, record, x, score)
    assert one_sample_runs == [threading.current_thread().name] * 3
