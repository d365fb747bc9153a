"""Results that onnxruntime writes straight into a worker's shared memory (``IOBinding``) equal
those of a plain run, call after call, and a graph whose output shapes follow the data falls
back to plain runs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from convscope.core import Convscope
from convscope.methods import gradients
from convscope.methods.attribution import AttributionOptions
from convscope.model.types import ModelRecord
from convscope.runtime.graphs import PlainGraph
from convscope.runtime.sessions import Runtime
from convscope.workers import shm
from convscope.workers.placement import PlacedRuns
from convscope.workers.pool import SandboxSettings
from convscope.workers.runtime import SandboxedRuntime
from tests.nets import exported
from tests.rpc.test_errors import tiny_conv_model


@pytest.fixture
def blocks() -> Iterator[tuple[shm.WrittenBlock, shm.ReadBlocks]]:
    written, read = shm.WrittenBlock(shm.server_prefix() + "placement_"), shm.ReadBlocks()
    yield written, read
    read.close()
    written.release()


def _nonzero_model() -> onnx.ModelProto:
    """y = the indices of x's non-zero entries: its shape depends on the values."""
    graph = helper.make_graph(
        [helper.make_node("NonZero", ["x"], ["y"])],
        "nonzero",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [4, "K"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


@pytest.mark.parametrize("model", [tiny_conv_model("placed"), _nonzero_model()], ids=["fixed-shapes", "data-dependent-shapes"])
def test_placed_results_equal_plain_runs(model: onnx.ModelProto, blocks: tuple[shm.WrittenBlock, shm.ReadBlocks]) -> None:
    written, read = blocks
    runtime = Runtime(lambda _: model)
    placed = PlacedRuns(runtime, written)
    rng = np.random.default_rng(3)
    for call in range(4):
        x = (rng.random((2, 3, 8, 8), dtype=np.float32) > 0.5).astype(np.float32) * rng.random((2, 3, 8, 8), dtype=np.float32)
        expected = runtime.run("m", PlainGraph(), {"x": x}, ["y"], dynamic_batch=True)["y"]
        name, layout = placed.run("m", PlainGraph(), {"x": x}, ["y"], dynamic_batch=True, threads=0, fresh=call == 3)
        got = read.views(name, layout)["y"]
        np.testing.assert_array_equal(got, expected)  # the same kernels on the same input: exactly equal
        del got
    assert written.generation == 2, "only the call that asked for a fresh block made one"
    # Fixed shapes: every call after the first is bound; NonZero's shapes change with the data:
    # the second call's binding fails and the rest run plainly.
    assert placed.bound_runs == (3 if model.graph.name != "nonzero" else 0)


def test_a_kept_binding_reads_each_calls_inputs(blocks: tuple[shm.WrittenBlock, shm.ReadBlocks]) -> None:
    """As in a worker: the inputs arrive as views at the same place in the server's block, new
    values every call; the binding made on the second call is run again and must read them."""
    written, read = blocks
    model = tiny_conv_model("kept")
    runtime = Runtime(lambda _: model)
    placed = PlacedRuns(runtime, written)
    server_block, worker_view = shm.WrittenBlock(shm.server_prefix() + "inputs_"), shm.ReadBlocks()
    rng = np.random.default_rng(4)
    try:
        for _ in range(4):
            x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
            feeds = worker_view.views(*server_block.write({"x": x}))
            name, layout = placed.run("m", PlainGraph(), feeds, ["y"], dynamic_batch=True, threads=0, fresh=False)
            expected = runtime.run("m", PlainGraph(), {"x": x}, ["y"], dynamic_batch=True)["y"]
            np.testing.assert_array_equal(read.views(name, layout)["y"], expected)
            del feeds
    finally:
        worker_view.close()
        server_block.release()
    assert placed.bound_runs == 3 and placed.bindings_made == 1, "one binding, made once and run again"


@contextlib.contextmanager
def twin_cores(folder: Path, workers: int) -> Iterator[tuple[Convscope, Convscope, ModelRecord]]:
    """An in-process core and a sandboxed one (``workers`` processes), the same model in each."""
    model_bytes = exported("ResNetStyle", "torchscript").SerializeToString()
    in_process = Convscope(folder / "in-process")
    sandboxed = Convscope(folder / "sandboxed", sandbox=SandboxSettings(workers=workers))
    try:
        record = in_process.upload([("", model_bytes)])
        sandboxed.upload([("", model_bytes)])
        yield in_process, sandboxed, record
    finally:
        sandboxed.close()
        in_process.close()


def test_a_sandboxed_core_answers_as_the_in_process_one(tmp_path: Path) -> None:
    """Every layer's activations and a gradient map through a worker (first call copied into the
    block, later ones written there by onnxruntime, results read as views) against the same
    calls in process."""
    with twin_cores(tmp_path, workers=1) as (in_process, sandboxed, record):
        rng = np.random.default_rng(5)
        kept = []  # results held across calls: the worker must write the next ones elsewhere
        for _ in range(3):
            x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
            want = {r.tensor: r.value for r in in_process.activations(record.id, in_process.prepare(record, tensor=x), None)}
            got = {r.tensor: r.value for r in sandboxed.activations(record.id, sandboxed.prepare(record, tensor=x), None)}
            assert got.keys() == want.keys() and len(want) > 5
            for name in want:
                np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6, err_msg=name)
            kept.append((got, want))
            options = AttributionOptions(target=[1, 7])
            want_map = in_process.attribution(record.id, in_process.prepare(record, tensor=x), "gradient", options, render=False)
            got_map = sandboxed.attribution(record.id, sandboxed.prepare(record, tensor=x), "gradient", options, render=False)
            np.testing.assert_allclose(got_map[0].map, want_map[0].map, rtol=1e-4, atol=1e-6)
        for got, want in kept:  # nothing held was written over by a later call
            for name in want:
                np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_chunks_of_a_batch_through_two_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch's one-sample backward runs spread over two workers answer as in process; each
    worker gets its half of the batch in one exchange (a call's fixed price paid twice, not once
    per sample), and each exchange's results are copied out before its worker runs again: it
    writes into the same block instead of a fresh one per call."""
    with twin_cores(tmp_path, workers=2) as (in_process, sandboxed, record):
        monkeypatch.setattr(gradients, "available_cores", lambda: 2)
        monkeypatch.setattr(gradients, "BACKWARD_CACHE_BYTES", sum(layer.sample_bytes for layer in record.layers))
        for core in (in_process, sandboxed):
            monkeypatch.setattr(core.runtime, "_providers", ("CPUExecutionProvider",))
        assert isinstance(sandboxed.runtime, SandboxedRuntime)
        assert gradients.backward_call_size(sandboxed.context, record) == 2
        x = np.random.default_rng(6).standard_normal((6, 3, 32, 32)).astype(np.float32)
        options = AttributionOptions(target=[1, 7, 0, 3, 9, 2])
        slots = sandboxed.runtime.pool._slots
        pool_run = sandboxed.runtime.pool.run
        batched_runs: list[tuple[int, int | None]] = []

        def counted_run(*args: Any, **kwargs: Any) -> dict[str, np.ndarray]:
            if kwargs.get("batch_size") is not None:
                batched_runs.append((len(next(iter(args[3].values()))), kwargs["batch_size"]))
            return pool_run(*args, **kwargs)

        monkeypatch.setattr(sandboxed.runtime.pool, "run", counted_run)
        maps = []
        for _ in range(2):  # the first call copies results into the blocks; the second is bound
            maps.append(sandboxed.attribution(record.id, sandboxed.prepare(record, tensor=x), "gradient", options, render=False))
        want = in_process.attribution(record.id, in_process.prepare(record, tensor=x), "gradient", options, render=False)
        for got in maps:
            np.testing.assert_allclose(got[0].map, want[0].map, rtol=1e-4, atol=1e-6)
        assert sum(slot.output_generation for slot in slots) == 2, "one block per worker, written again run after run"
        assert batched_runs == [(3, 1)] * 4, "each call: two exchanges of three one-sample runs"
        # A batch that is one run anyway goes as a plain run, which onnxruntime writes into the block.
        sandboxed.activations(record.id, sandboxed.prepare(record, tensor=x), None)
        assert len(batched_runs) == 4
