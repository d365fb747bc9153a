"""Hostile dataset paths and oversized folders: refused (or the one bad item skipped) with a
message a person can act on; health stays SERVING, the store is unchanged, the next job runs."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from convscope_client import Client, ConvscopeError, ServerFolder, ServerPath
from PIL import Image

from convscope.limits import RequestLimits
from convscope.rpc.server import RunningServer
from tests.conftest import start_server
from tests.rpc.test_errors import assert_fails, tiny_conv_model
from tests.rpc.test_limits import serving

FILES = 5


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    for name in ("photos", "crowded"):
        (root / name).mkdir()
    for i in range(FILES):
        (root / "photos" / f"{i}.png").write_bytes(_png(i))
    for i in range(FILES + 1):
        (root / "crowded" / f"{i}.png").write_bytes(_png(i))
    (root / "root-link").symlink_to("/", target_is_directory=True)
    (root / "zero").symlink_to("/dev/zero")
    return root


@pytest.fixture(scope="module")
def served(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Client, str]]:
    running = start_server(tmp_path_factory.mktemp("store"), data_roots=(data_root,), limits=RequestLimits(max_dataset_files=FILES))
    with Client(f"127.0.0.1:{running.port}", timeout=60) as client:
        model_id = client.upload_model(tiny_conv_model("datasets").SerializeToString(), preprocessing={"size": [8, 8]}).id
        yield running, client, model_id
    running.stop(grace=1)


@pytest.fixture
def refused(served: tuple[RunningServer, Client, str]) -> Callable[..., ConvscopeError]:
    running, client, model_id = served

    def still_runs() -> None:
        assert serving(running.port)
        assert client.dead_filters(model_id, ServerFolder("photos"), layers=["y"]).samples == FILES

    def check(dataset: object, code: grpc.StatusCode, *mentions: str) -> ConvscopeError:
        return assert_fails(client, lambda: client.dead_filters(model_id, dataset, layers=["y"]), code, *mentions,
                            store_root=running.core.store.root, still_runs=still_runs)

    return check


@pytest.mark.parametrize(
    ("dataset", "code", "mentions"),
    [
        pytest.param(ServerFolder("../.."), grpc.StatusCode.PERMISSION_DENIED, ("outside the server's data roots",), id="parent-parent"),
        pytest.param(ServerFolder("/etc"), grpc.StatusCode.PERMISSION_DENIED, ("'/etc'", "outside"), id="etc"),
        pytest.param(ServerFolder("root-link"), grpc.StatusCode.PERMISSION_DENIED, ("'root-link'", "outside"), id="symlink-to-root"),
        pytest.param(ServerFolder("photos\x00/../../etc"), grpc.StatusCode.PERMISSION_DENIED, ("not under a data root",), id="nul-byte"),
        pytest.param(ServerFolder("a/" * 2048), grpc.StatusCode.INVALID_ARGUMENT, ("4096 characters",), id="4096-chars"),
        pytest.param([ServerPath("/dev/zero")], grpc.StatusCode.PERMISSION_DENIED, ("'/dev/zero'",), id="device"),
        pytest.param([ServerPath("zero")], grpc.StatusCode.PERMISSION_DENIED, ("'zero'", "outside"), id="link-to-device"),
        pytest.param(ServerFolder("crowded"), grpc.StatusCode.RESOURCE_EXHAUSTED, (f"more than {FILES} files", "--max-dataset-files"), id="too-many-files"),
    ],
)
def test_hostile_dataset_paths(refused: Callable[..., ConvscopeError], dataset: object, code: grpc.StatusCode, mentions: tuple[str, ...]) -> None:
    refused(dataset, code, *mentions)


def test_fifo_is_skipped_not_read(served: tuple[RunningServer, Client, str], data_root: Path, tmp_path: Path) -> None:
    """A FIFO would block a reader forever: it is reported as skipped, and the job finishes."""
    _, client, model_id = served
    fifo = data_root / "photos" / "pipe.png"
    os.mkfifo(fifo)
    try:
        result = client.dead_filters(model_id, [ServerPath("photos/pipe.png"), ServerPath("photos/0.png")], layers=["y"])
    finally:
        fifo.unlink()
    assert result.samples == 1
    reasons = {str(item.image): item.reason for item in result.skipped}
    assert "not a regular file" in reasons["photos/pipe.png"]
    assert set(reasons) == {"photos/pipe.png"}


def test_bytes_read_are_capped(data_root: Path, tmp_path: Path) -> None:
    limit = len(_png(0)) * 2
    running = start_server(tmp_path / "store", data_roots=(data_root,), limits=RequestLimits(max_dataset_bytes=limit))
    try:
        with Client(f"127.0.0.1:{running.port}", timeout=60) as client:
            model_id = client.upload_model(tiny_conv_model("bytes").SerializeToString(), preprocessing={"size": [8, 8]}).id
            assert_fails(client, lambda: client.dead_filters(model_id, ServerFolder("photos"), layers=["y"]),
                         grpc.StatusCode.RESOURCE_EXHAUSTED, f"more than {limit} bytes", "--max-dataset-gb",
                         store_root=running.core.store.root)
            assert client.dead_filters(model_id, [ServerPath("photos/0.png")], layers=["y"]).samples == 1
    finally:
        running.stop(grace=1)
