"""Shared fixtures: a real server on port 0 and a client talking to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from convscope.rpc.server import RunningServer, ServerConfig, create_server
from convscope_client import Client

REPO = Path(__file__).resolve().parents[1]
BUNDLED_MODEL = REPO / "models" / "efficientnet_lite0" / "efficientnet_lite0.onnx"
CAT_PHOTO = REPO / "models" / "chelsea.png"


def start_server(store: Path, **options: object) -> RunningServer:
    return create_server(ServerConfig(store=store, port=0, **options))  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("store"))
    yield running
    running.stop(grace=1)


@pytest.fixture(scope="session")
def client(server: RunningServer) -> Iterator[Client]:
    with Client(f"127.0.0.1:{server.port}", timeout=120) as connected:
        yield connected


@pytest.fixture(scope="session")
def bundled_model_id(client: Client) -> str:
    return client.upload_model(BUNDLED_MODEL).id
