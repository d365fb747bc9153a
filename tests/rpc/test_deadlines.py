"""Deadlines stop work: the server's default for calls without one, and the client's own —
onnxruntime runs are terminated (RunOptions.terminate), not left to finish."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from convscope.errors import Cancelled, DeadlineExceeded
from convscope.rpc.server import RunningServer
from convscope_client import Client, ConvscopeError
from tests.conftest import start_server
from tests.rpc.test_limits import serving

SIDE = 256
MATMULS = 200  # a batch of 16: ~320 GFLOP, seconds even on an idle machine (40 finished inside 0.3 s there)


def slow_model() -> onnx.ModelProto:
    """x[N,3,256,256] through MATMULS MatMuls by one shared 256×256 weight (kept near norm 1)."""
    weight = (np.random.default_rng(0).standard_normal((SIDE, SIDE)) / np.sqrt(SIDE)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x" if i == 0 else f"m{i - 1}", "w"], [f"m{i}"], name=f"matmul{i}") for i in range(MATMULS)
    ]
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, SIDE, SIDE])],
        [helper.make_tensor_value_info(f"m{MATMULS - 1}", TensorProto.FLOAT, ["N", 3, SIDE, SIDE])],
        initializer=[numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


BATCH = np.random.default_rng(1).random((16, 3, SIDE, SIDE), dtype=np.float32)


@pytest.fixture(scope="module")
def hurried(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Client, str]]:
    running = start_server(tmp_path_factory.mktemp("store"), deadline_s=0.3)
    with Client(f"127.0.0.1:{running.port}") as client:  # no client deadline: the server's applies
        model_id = client.upload_model(slow_model().SerializeToString()).id
        yield running, client, model_id
    running.stop(grace=1)


@pytest.fixture
def outcome(hurried: tuple[RunningServer, Client, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What the server's Activations handler ended with, set when it has ended."""
    running = hurried[0]
    real = running.core.activations
    seen: dict[str, Any] = {"ended": threading.Event()}

    def recorded(*args: Any, **kwargs: Any) -> Any:
        try:
            return real(*args, **kwargs)
        except BaseException as error:
            seen["error"] = error
            raise
        finally:
            seen["ended"].set()

    monkeypatch.setattr(running.core, "activations", recorded)
    return seen


def test_default_deadline_terminates_the_run(hurried: tuple[RunningServer, Client, str], outcome: dict[str, Any]) -> None:
    running, client, model_id = hurried
    with pytest.raises(ConvscopeError) as caught:
        client.activations(model_id, BATCH, layers=[f"m{MATMULS - 1}"])
    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "0.3 s" in caught.value.message and "--deadline" in caught.value.message
    assert isinstance(outcome.get("error"), DeadlineExceeded), "the run was not stopped by RunOptions.terminate"
    assert serving(running.port)
    assert client.get_model(model_id).id == model_id  # cheap calls fit the 0.3 s and are served


def test_client_deadline_terminates_the_run(hurried: tuple[RunningServer, Client, str], outcome: dict[str, Any]) -> None:
    running, client, model_id = hurried
    with pytest.raises(ConvscopeError) as caught:
        client.activations(model_id, BATCH, layers=[f"m{MATMULS - 1}"], timeout=0.2)
    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert outcome["ended"].wait(60), "the handler kept running after the client's deadline"
    assert isinstance(outcome.get("error"), (DeadlineExceeded, Cancelled)), outcome.get("error")


def test_unknown_method_in_method_deadlines_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Activatons"):
        start_server(tmp_path / "store", method_deadlines_s={"Activatons": 5})
