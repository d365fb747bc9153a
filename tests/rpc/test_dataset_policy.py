"""Hostile dataset paths and oversized folders: refused (or the one bad item skipped) with a
message a person can act on; health stays SERVING, the store is unchanged, the next job runs."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from convscope.data.streams import read_regular_file
from convscope.limits import RequestLimits
from convscope.rpc.server import RunningServer
from convscope_client import Client, ServerFolder, ServerPath
from tests.rpc.test_limits import refusal_check, tiny_model_server

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
    (root / "inner-link").symlink_to(root / "photos", target_is_directory=True)  # inside the root: refused all the same
    (root / "linked").mkdir()
    (root / "linked" / "0.png").write_bytes(_png(0))
    (root / "linked" / "file-link.png").symlink_to(root / "photos" / "1.png")
    (root / "linked" / "folder-link").symlink_to(root / "photos", target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def served(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Client, str]]:
    limits = RequestLimits(max_dataset_files=FILES)
    with tiny_model_server(tmp_path_factory.mktemp("store"), "datasets", data_roots=(data_root,), limits=limits) as running:
        yield running


def _photos_run(client: Client, model_id: str) -> None:
    assert client.dead_filters(model_id, ServerFolder("photos"), layers=["y"]).samples == FILES


@pytest.mark.parametrize(
    ("dataset", "code", "mentions"),
    [
        pytest.param(
            ServerFolder("../.."), grpc.StatusCode.PERMISSION_DENIED, ("outside the server's data roots",), id="parent-parent"
        ),
        pytest.param(ServerFolder("/etc"), grpc.StatusCode.PERMISSION_DENIED, ("'/etc'", "outside"), id="etc"),
        pytest.param(
            ServerFolder("root-link"), grpc.StatusCode.PERMISSION_DENIED, ("'root-link'", "outside"), id="symlink-to-root"
        ),
        pytest.param(
            ServerFolder("inner-link"), grpc.StatusCode.INVALID_ARGUMENT, ("'inner-link'", "symbolic link"), id="symlink-inside"
        ),
        pytest.param(
            ServerFolder("inner-link/../photos"), grpc.StatusCode.INVALID_ARGUMENT, ("symbolic link",), id="through-symlink"
        ),
        pytest.param(
            ServerFolder("photos\x00/../../etc"), grpc.StatusCode.PERMISSION_DENIED, ("not under a data root",), id="nul-byte"
        ),
        pytest.param(ServerFolder("a/" * 2048), grpc.StatusCode.INVALID_ARGUMENT, ("4096 characters",), id="4096-chars"),
        pytest.param([ServerPath("/dev/zero")], grpc.StatusCode.PERMISSION_DENIED, ("'/dev/zero'",), id="device"),
        pytest.param([ServerPath("zero")], grpc.StatusCode.PERMISSION_DENIED, ("'zero'", "outside"), id="link-to-device"),
        pytest.param(
            ServerFolder("crowded"),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            (f"more than {FILES} files", "--max-dataset-files"),
            id="too-many-files",
        ),
    ],
)
def test_hostile_dataset_paths(
    served: tuple[RunningServer, Client, str], dataset: object, code: grpc.StatusCode, mentions: tuple[str, ...]
) -> None:
    running, client, model_id = served
    refused = refusal_check(running, client, lambda: _photos_run(client, model_id))
    refused(lambda: client.dead_filters(model_id, dataset, layers=["y"]), code, *mentions)


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


def test_links_inside_the_root_are_skipped_not_followed(served: tuple[RunningServer, Client, str]) -> None:
    """Links that point inside the data root are refused like FIFOs: a walk skips them, each with
    its reason, and so does a file named through one."""
    _, client, model_id = served
    walked = client.dead_filters(model_id, ServerFolder("linked"), layers=["y"])
    named = client.dead_filters(
        model_id, [ServerPath("linked/file-link.png"), ServerPath("inner-link/0.png"), ServerPath("photos/0.png")], layers=["y"]
    )
    assert walked.samples == 1 and named.samples == 1
    reasons = {str(item.image): item.reason for item in [*walked.skipped, *named.skipped]}
    assert set(reasons) == {"linked/file-link.png", "linked/folder-link", "inner-link/0.png"}
    assert all("symbolic link" in reason for reason in reasons.values()), reasons


def test_bytes_read_are_capped(data_root: Path, tmp_path: Path) -> None:
    limit = len(_png(0)) * 2
    limits = RequestLimits(max_dataset_bytes=limit)
    with tiny_model_server(tmp_path / "store", "bytes", data_roots=(data_root,), limits=limits) as (running, client, model_id):
        refused = refusal_check(
            running, client, lambda: client.dead_filters(model_id, [ServerPath("photos/0.png")], layers=["y"])
        )
        refused(
            lambda: client.dead_filters(model_id, ServerFolder("photos"), layers=["y"]),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"more than {limit} bytes",
            "--max-dataset-gb",
        )


@pytest.mark.parametrize("size", [0, 1, 4096, (3 << 20) + 7])
def test_regular_files_are_read_whole(tmp_path: Path, size: int) -> None:
    """read_regular_file sizes its reads by fstat: every byte comes back, whatever the size."""
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    (tmp_path / "file.bin").write_bytes(data)
    assert read_regular_file(tmp_path / "file.bin") == data
