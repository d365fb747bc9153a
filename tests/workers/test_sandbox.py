"""The hostile cases that need worker processes: memory bombs, endless loops, a run past its
time budget and a segfaulting worker. Each asserts the status, a message a person can act on,
health SERVING, the next valid request served and the store unchanged (``refusal_check``), and
that no worker held more address space than its cap."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator

import grpc
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from convscope.rpc.server import RunningServer
from convscope.runtime.context import parallel_runs
from convscope.workers.child import CRASH_GRAPH_ENV
from convscope.workers.pool import SandboxSettings, WorkerPool
from convscope.workers.runtime import SandboxedRuntime
from convscope_client import Client, ConvscopeError
from tests.rpc.test_errors import PROBE, tiny_conv_model
from tests.rpc.test_limits import refusal_check, serving, tiny_model_server

CAP_MB = 2048
CRASHING = tiny_conv_model("segfaults").SerializeToString()
CRASHING_GRAPH = "tiny_segfaults"  # its graph's name: the hook's trigger
Sandbox = tuple[RunningServer, Client, str]


def pool_of(running: RunningServer) -> WorkerPool:
    runtime = running.core.runtime
    assert isinstance(runtime, SandboxedRuntime), "this server runs models in process"
    return runtime.pool


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CRASH_GRAPH_ENV, CRASHING_GRAPH)  # workers spawned from now on carry the hook
        settings = SandboxSettings(workers=2, memory_mb=CAP_MB)
        with tiny_model_server(tmp_path_factory.mktemp("store"), "sandboxed", sandbox=settings) as served:
            yield served


@pytest.fixture(scope="module")
def hurried(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """One worker that may run for 0.5 s and validate an upload for 4 s."""
    settings = SandboxSettings(workers=1, memory_mb=CAP_MB, run_budget_s=0.5, load_budget_s=4.0, grace_s=0.5)
    with tiny_model_server(tmp_path_factory.mktemp("store"), "hurried", sandbox=settings) as served:
        yield served


def checker(served: Sandbox) -> Callable[..., ConvscopeError]:
    running, client, model_id = served

    def runs() -> None:
        value = client.activations(model_id, PROBE[:, :, :8, :8], layers=["y"])["y"]
        assert value.shape == (1, 4, 8, 8) and np.isfinite(value).all()

    return refusal_check(running, client, runs)


def _graph(nodes: list[onnx.NodeProto], name: str, rank: int, inputs: list[onnx.ValueInfoProto] | None = None) -> bytes:
    """x[N,3,8,8] in, ``y`` out with symbolic dims: onnx.checker sees nothing to refuse."""
    graph = helper.make_graph(
        nodes,
        name,
        inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [f"d{axis}" for axis in range(rank)])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.checker.check_model(model, full_check=True)  # what makes them bombs: they pass the checker
    return model.SerializeToString()


def _constant(name: str, value: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value))


BIG_SHAPE = np.array([100_000, 100_000], np.int64)  # 40 GB of float32 from a few bytes
BOMBS = {
    "ConstantOfShape": lambda: _graph(
        [
            _constant("shape", BIG_SHAPE),
            helper.make_node("ConstantOfShape", ["shape"], ["y"], value=numpy_helper.from_array(np.ones(1, np.float32))),
        ],
        "bomb_constant_of_shape",
        2,
    ),
    "Expand": lambda: _graph(
        [
            _constant("shape", BIG_SHAPE),
            helper.make_node("ReduceMax", ["x"], ["top"], keepdims=0),
            helper.make_node("Expand", ["top", "shape"], ["y"]),
        ],
        "bomb_expand",
        2,
    ),
    "Range": lambda: _graph(
        [
            _constant("start", np.array(0, np.float32)),
            _constant("limit", np.array(1e10, np.float32)),
            _constant("delta", np.array(1, np.float32)),
            helper.make_node("Range", ["start", "limit", "delta"], ["y"]),
        ],
        "bomb_range",
        1,
    ),
    # onnxruntime itself refuses a Tile output over 4 GiB: 3 GiB passes that check, not the cap.
    "Tile": lambda: _graph(
        [
            _constant("repeats", np.array([1, 1, 2048, 2048], np.int64)),
            helper.make_node("Tile", ["x", "repeats"], ["y"]),
        ],
        "bomb_tile",
        4,
    ),
}


@pytest.mark.parametrize("op", sorted(BOMBS))
def test_memory_bomb_is_resource_exhausted(sandbox: Sandbox, op: str) -> None:
    running, client, _ = sandbox
    error = checker(sandbox)(
        lambda: client.upload_model(BOMBS[op]()),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"({CAP_MB} MiB, --worker-memory-mb)",
        "Failed to allocate memory",
        "checking and loading the upload",
    )
    assert "refused unless the operator raises --worker-memory-mb" in error.message
    pool = pool_of(running)
    assert pool.replaced["memory"] >= 1
    assert 0 < pool.peak_address_space <= CAP_MB << 20, "a worker held more address space than its cap"


def _loop(trip_count: np.ndarray | None, name: str) -> bytes:
    """y = x carried through a Loop whose condition stays true: endless without a trip count."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Identity", ["v_in"], ["v_out"])],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", TensorProto.FLOAT, ["N", 3, 8, 8]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", TensorProto.FLOAT, ["N", 3, 8, 8]),
        ],
    )
    nodes = [_constant("go", np.array(True))]
    if trip_count is not None:
        nodes.append(_constant("trips", trip_count))
    nodes.append(helper.make_node("Loop", ["trips" if trip_count is not None else "", "go", "x"], ["y"], body=body))
    return _graph(nodes, name, 4)


@pytest.mark.parametrize("trips", [None, np.array(2**40, np.int64)], ids=["endless", "2**40 trips"])
def test_loop_past_the_load_budget_is_deadline_exceeded(hurried: Sandbox, trips: np.ndarray | None) -> None:
    running, client, _ = hurried
    started = time.monotonic()
    checker(hurried)(
        lambda: client.upload_model(_loop(trips, f"loop_{trips is None}")),
        grpc.StatusCode.DEADLINE_EXCEEDED,
        "ran past the server's time budget of 4 s (--worker-load-seconds)",
        "checking and loading the upload",
    )
    assert time.monotonic() - started < 60


def _matmul_square() -> bytes:
    """x[1,S] → the outer product m[S,S] → m·m: one S³ MatMul (8192³: seconds on any CPU)."""
    return _graph(
        [
            _constant("column", np.array([-1, 1], np.int64)),
            helper.make_node("Reshape", ["x", "column"], ["xt"]),
            helper.make_node("MatMul", ["xt", "x"], ["m"]),
            helper.make_node("MatMul", ["m", "m"], ["y"]),
        ],
        "matmul_square",
        2,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "S"])],
    )


def test_one_big_matmul_past_the_run_budget_is_killed(hurried: Sandbox) -> None:
    running, client, _ = hurried
    model_id = client.upload_model(_matmul_square(), input_shape=[1, 8]).id
    pool = pool_of(running)
    killed = pool.replaced["deadline"]
    started = time.monotonic()
    error = checker(hurried)(
        lambda: client.activations(model_id, np.full((1, 8192), 1e-3, np.float32), layers=["y"]),
        grpc.StatusCode.DEADLINE_EXCEEDED,
        "0.5 s (--worker-run-seconds)",
        model_id[:12],
    )
    assert "ask for less work" in error.message
    # onnxruntime only looks at RunOptions.terminate between kernels: the worker was killed.
    assert pool.replaced["deadline"] == killed + 1
    assert time.monotonic() - started < 30
    small = client.activations(model_id, np.ones((1, 8), np.float32), layers=["y"])["y"]
    np.testing.assert_allclose(small, np.full((8, 8), 8.0, np.float32), rtol=1e-6)


def test_segfaulting_worker_is_internal_then_quarantined(sandbox: Sandbox) -> None:
    running, client, _ = sandbox
    check, pool = checker(sandbox), pool_of(running)
    model_id = client.upload_model(CRASHING, preprocessing={"size": [8, 8]}).id
    crashed = pool.replaced["crashed"]

    def activations() -> object:
        return client.activations(model_id, PROBE[:, :, :8, :8], layers=["y"])

    for left in (2, 1):
        error = check(activations, grpc.StatusCode.INTERNAL, "killed by SIGSEGV", model_id[:12], "worker was replaced")
        assert f"{left} more and the model is quarantined" in error.message
    check(activations, grpc.StatusCode.INTERNAL, "killed by SIGSEGV", "quarantined after 3 crashes")
    assert pool.replaced["crashed"] == crashed + 3
    metric = running.metrics.registry.get_sample_value("convscope_worker_replacements_total", {"cause": "crashed"})
    assert metric == pool.replaced["crashed"]
    check(activations, grpc.StatusCode.FAILED_PRECONDITION, "is quarantined", "SIGSEGV", "upload it again")
    assert serving(running.port)
    # Uploading it again lifts the quarantine: it is tried (and crashes) once more.
    client.upload_model(CRASHING, preprocessing={"size": [8, 8]})
    check(activations, grpc.StatusCode.INTERNAL, "killed by SIGSEGV", "2 more and the model is quarantined")


def test_workers_killed_while_idle_are_replaced(sandbox: Sandbox) -> None:
    """Workers killed from outside (the OOM killer, an operator) between calls: the next calls
    get fresh ones, and no model is blamed."""
    running, client, model_id = sandbox
    pool = pool_of(running)
    pool.wait_ready()
    crashed = pool.replaced["crashed"]
    pids = pool.pids()
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while not all(_dead(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for _ in range(4):  # enough calls to meet both workers
        value = client.activations(model_id, PROBE[:, :, :8, :8], layers=["y"])["y"]
        assert value.shape == (1, 4, 8, 8)
    assert serving(running.port)
    assert pool.replaced["crashed"] >= crashed + 1


def _dead(pid: int) -> bool:
    """Gone, or a zombie with no thread left: the leader turns zombie while onnxruntime's threads
    are still exiting, and until the last one has, the worker's pipe stays open and the pool
    cannot see the death."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            zombie = stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
        return zombie and len(os.listdir(f"/proc/{pid}/task")) <= 1
    except FileNotFoundError:
        return True


def test_a_sandbox_runs_as_many_calls_at_once_as_it_has_workers(sandbox: Sandbox, hurried: Sandbox) -> None:
    """What methods size their runs in flight by (``runtime.context.parallel_runs``): a pool of one
    worker runs its calls one after another."""
    assert pool_of(sandbox[0]).size == 2 and parallel_runs(sandbox[0].core.runtime) == 2
    assert pool_of(hurried[0]).size == 1 and parallel_runs(hurried[0].core.runtime) == 1
