"""kill -9 of the server during an upload (while bytes stream in, and while the model is being
validated) and during a dataset job, then a restart on the same store: every committed model is
intact, byte for byte and in its outputs, and nothing partial is visible."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from convscope_client import Client, ConvscopeError
from convscope_client._proto import convscope_pb2 as pb
from convscope_client._proto import convscope_pb2_grpc as pb_grpc
from tests.conftest import BUNDLED_MODEL
from tests.rpc.test_errors import tiny_conv_model

X = np.random.default_rng(9).random((1, 3, 8, 8), dtype=np.float32)
WAIT_S = 120  # a fresh interpreter importing onnxruntime on a loaded 2-core machine


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class ServerProcess:
    def __init__(self, store: Path, tmp: Path) -> None:
        port_file = tmp / f"port-{time.monotonic_ns()}"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "convscope",
                "serve",
                "--port",
                "0",
                "--store",
                str(store),
                "--port-file",
                str(port_file),
                "--data-root",
                str(tmp),
                "--log-level",
                "WARNING",
            ],
        )
        _wait_for(
            lambda: bool(port_file.exists() and port_file.read_text().strip()) or self.process.poll() is not None, "the server"
        )
        assert self.process.poll() is None, "the server exited at start"
        self.address = f"127.0.0.1:{int(port_file.read_text())}"

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def committed(store: Path, tmp_path: Path) -> Iterator[dict[str, object]]:
    """A server with one committed model, its stored files' hashes and its output on X."""
    server = ServerProcess(store, tmp_path)
    try:
        with Client(server.address, timeout=120) as client:
            info = client.upload_model(tiny_conv_model("committed").SerializeToString())
            output = client.activations(info.id, X, layers=["y"])["y"]
        yield {"server": server, "id": info.id, "output": output, "files": _hashes(store / "models")}
    finally:
        server.stop()


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _files_in(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def _restart_and_check(committed: dict[str, object], store: Path, tmp_path: Path) -> None:
    server = ServerProcess(store, tmp_path)
    try:
        with Client(server.address, timeout=120) as client:
            assert [info.id for info in client.list_models()] == [committed["id"]]
            np.testing.assert_array_equal(client.activations(str(committed["id"]), X, layers=["y"])["y"], committed["output"])
        assert _hashes(store / "models") == committed["files"], "a committed model's files changed"
        assert _files_in(store / "incoming") == [], "a partial upload is still on disk"
    finally:
        server.stop()


def test_kill_while_upload_streams(committed: dict[str, object], store: Path, tmp_path: Path) -> None:
    server: ServerProcess = committed["server"]  # type: ignore[assignment]
    first_chunk_sent, never = threading.Event(), threading.Event()

    def requests() -> Iterator[pb.UploadModelRequest]:
        yield pb.UploadModelRequest(header=pb.UploadHeader(name="partial"))
        yield pb.UploadModelRequest(chunk=pb.FileChunk(file="", data=BUNDLED_MODEL.read_bytes()[: 1 << 20]))
        first_chunk_sent.set()
        never.wait(WAIT_S)  # the rest never comes: the server dies first

    with grpc.insecure_channel(server.address) as channel:
        call = pb_grpc.ConvscopeStub(channel).UploadModel.future(requests(), timeout=WAIT_S)
        _wait_for(lambda: any(p.stat().st_size > 0 for p in _files_in(store / "incoming")), "the upload's first bytes on disk")
        server.kill()
        with pytest.raises(grpc.RpcError):
            call.result()
        never.set()
    _restart_and_check(committed, store, tmp_path)


def test_kill_while_upload_is_validated(committed: dict[str, object], store: Path, tmp_path: Path) -> None:
    """All bytes arrived; the checker and the probe runs are under way when the server dies."""
    server: ServerProcess = committed["server"]  # type: ignore[assignment]
    size = BUNDLED_MODEL.stat().st_size
    errors: list[BaseException] = []

    def upload() -> None:
        try:
            with Client(server.address, timeout=WAIT_S) as client:
                client.upload_model(BUNDLED_MODEL)
        except (ConvscopeError, grpc.RpcError) as error:
            errors.append(error)

    thread = threading.Thread(target=upload)
    thread.start()
    _wait_for(lambda: any(p.stat().st_size >= size for p in _files_in(store / "incoming")), "the whole upload on disk")
    server.kill()
    thread.join(WAIT_S)
    assert errors and errors[0].code == grpc.StatusCode.UNAVAILABLE  # type: ignore[union-attr]
    _restart_and_check(committed, store, tmp_path)


def test_kill_during_a_dataset_job(committed: dict[str, object], store: Path, tmp_path: Path) -> None:
    server: ServerProcess = committed["server"]  # type: ignore[assignment]
    progressed = threading.Event()
    errors: list[BaseException] = []

    def endless() -> Iterator[np.ndarray]:
        while True:
            yield X[0]

    def job() -> None:
        try:
            with Client(server.address, timeout=WAIT_S) as client:
                client.dead_filters(str(committed["id"]), endless(), layers=["y"], progress=lambda *_: progressed.set())
        except ConvscopeError as error:
            errors.append(error)

    thread = threading.Thread(target=job)
    thread.start()
    assert progressed.wait(WAIT_S), "the job never reported progress"
    server.kill()
    thread.join(WAIT_S)
    assert errors and errors[0].code == grpc.StatusCode.UNAVAILABLE  # type: ignore[union-attr]
    _restart_and_check(committed, store, tmp_path)
