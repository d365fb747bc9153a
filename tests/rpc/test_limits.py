"""Per-request caps, the concurrent-call limit and the image policy, through the real server.

Each refusal is checked as in test_errors: the status, a message naming the flag or the remedy,
the store unchanged, health still SERVING, and the next valid request served.
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from convscope.limits import RequestLimits
from convscope.rpc.server import SERVICE_NAME, RunningServer
from convscope_client import Client, ConvscopeError
from tests.conftest import CAT_PHOTO, start_server
from tests.rpc.test_errors import assert_fails, tiny_conv_model

LIMITS = RequestLimits(max_batch=4, max_occlusion_positions=10, max_steps=3, max_path_points=5, max_image_pixels=200 * 200)
RNG = np.random.default_rng(3)
SMALL = RNG.random((1, 3, 8, 8), dtype=np.float32)


def serving(port: int) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=10).status
    return status == health_pb2.HealthCheckResponse.SERVING


@contextlib.contextmanager
def tiny_model_server(store: Path, tag: str, **options: Any) -> Iterator[tuple[RunningServer, Client, str]]:
    """A server of its own (``options``: its ServerConfig) holding the 8×8 tiny conv model."""
    running = start_server(store, **options)
    try:
        with Client(f"127.0.0.1:{running.port}", timeout=60) as client:
            model_id = client.upload_model(tiny_conv_model(tag).SerializeToString(), preprocessing={"size": [8, 8]}).id
            yield running, client, model_id
    finally:
        running.stop(grace=1)


def refusal_check(running: RunningServer, client: Client, runs: Callable[[], None]) -> Callable[..., ConvscopeError]:
    """``assert_fails`` against ``running``, then health SERVING and ``runs()`` (a valid request) succeed."""

    def still_runs() -> None:
        assert serving(running.port)
        runs()

    def check(call: Callable[[], Any], code: grpc.StatusCode, *mentions: str) -> ConvscopeError:
        return assert_fails(client, call, code, *mentions, store_root=running.core.store.root, still_runs=still_runs)

    return check


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Client, str]]:
    with tiny_model_server(tmp_path_factory.mktemp("store"), "limits", limits=LIMITS) as served:
        yield served


@pytest.fixture
def refused(limited: tuple[RunningServer, Client, str]) -> Callable[..., ConvscopeError]:
    running, client, model_id = limited
    return refusal_check(running, client, lambda: client.activations(model_id, SMALL, layers=["y"]))


# ------------------------------------------------------------------------------ per-request caps


def test_caps_name_their_flag(limited: tuple[RunningServer, Client, str], refused: Callable[..., ConvscopeError]) -> None:
    _, client, model_id = limited
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    refused(lambda: client.activations(model_id, RNG.random((5, 3, 8, 8), dtype=np.float32)), invalid, "5 samples", "--max-batch")
    refused(
        lambda: client.occlusion(model_id, SMALL, window=(1, 1), stride=(1, 1), target=0),
        invalid,
        "64 occluder positions",
        "--max-occlusion-positions",
        "larger stride",
    )
    refused(
        lambda: client.attribution(model_id, SMALL, method="integrated_gradients", steps=6, target=0),
        invalid,
        "steps",
        "--max-path-points",
        "5",
    )
    refused(
        lambda: client.attribution(model_id, SMALL, method="smoothgrad", samples=6, target=0),
        invalid,
        "samples",
        "--max-path-points",
    )
    refused(lambda: client.invert(model_id, SMALL, layer="conv", steps=4), invalid, "steps", "--max-steps", "3")
    # At the caps, each is served.
    assert client.activations(model_id, RNG.random((4, 3, 8, 8), dtype=np.float32), layers=["y"])["y"].shape[0] == 4
    assert client.attribution(model_id, SMALL, method="integrated_gradients", steps=5, target=0).map.shape == (1, 3, 8, 8)


# ------------------------------------------------------------------------------ images


def _png(width: int, height: int, mode: str = "1") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _png_header_claiming(width: int, height: int) -> bytes:
    """A 67-byte PNG whose header claims ``width``×``height``: the classic decompression bomb."""
    small = _png(1, 1)
    ihdr = bytearray(small[8:33])  # length, 'IHDR', 13 data bytes, CRC
    ihdr[8:16] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    import zlib

    ihdr[21:25] = zlib.crc32(bytes(ihdr[4:21])).to_bytes(4, "big")
    return small[:8] + bytes(ihdr) + small[33:]


CAT = Image.open(CAT_PHOTO).convert("RGB").resize((16, 16))


@pytest.mark.parametrize(
    ("data", "code", "mentions"),
    [
        pytest.param(
            _png(201, 200), grpc.StatusCode.RESOURCE_EXHAUSTED, ("image 0", "201×200", "--max-image-pixels"), id="over-limit"
        ),
        pytest.param(
            _png_header_claiming(100_000, 100_000),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            ("10000000000 pixels", "bomb"),
            id="header-bomb",
        ),
        pytest.param(_png(12_000, 12_000), grpc.StatusCode.RESOURCE_EXHAUSTED, ("144000000 pixels",), id="real-12000-squared"),
        # Between Pillow's limit and twice it, Pillow only warns: the server makes that an error.
        pytest.param(
            _png(9_000, 9_000), grpc.StatusCode.RESOURCE_EXHAUSTED, ("81000000 pixels", "bomb"), id="real-in-warning-range"
        ),
        pytest.param(_encoded(CAT, "TIFF"), grpc.StatusCode.INVALID_ARGUMENT, ("TIFF", "PNG, JPEG, WEBP, BMP"), id="tiff"),
        pytest.param(_encoded(CAT, "GIF"), grpc.StatusCode.INVALID_ARGUMENT, ("GIF",), id="gif"),
        pytest.param(b"hello, world" * 10, grpc.StatusCode.INVALID_ARGUMENT, ("not an image",), id="not-an-image"),
        pytest.param(_encoded(CAT, "JPEG")[:200], grpc.StatusCode.INVALID_ARGUMENT, ("truncated",), id="truncated-jpeg"),
    ],
)
def test_image_policy(
    limited: tuple[RunningServer, Client, str],
    refused: Callable[..., ConvscopeError],
    data: bytes,
    code: grpc.StatusCode,
    mentions: tuple[str, ...],
) -> None:
    _, client, model_id = limited
    refused(lambda: client.activations(model_id, [data]), code, *mentions)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP"])
def test_allowed_image_formats_decode(limited: tuple[RunningServer, Client, str], fmt: str) -> None:
    _, client, model_id = limited
    assert client.activations(model_id, [_encoded(CAT, fmt)], layers=["y"])["y"].shape == (1, 4, 8, 8)


# ------------------------------------------------------------------------------ concurrent calls


def test_calls_beyond_the_concurrency_limit_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a limit of N, N calls held in the server and 2 more: the 2 fail at once with
    RESOURCE_EXHAUSTED, the N finish, and the server serves again afterwards."""
    limit = 3
    running = start_server(tmp_path / "store", max_concurrent_rpcs=limit)
    entered, release = threading.Semaphore(0), threading.Event()
    real_models = running.core.models

    def held_models() -> Any:
        entered.release()
        release.wait(30)
        return real_models()

    monkeypatch.setattr(running.core, "models", held_models)
    outcomes: list[object] = []
    try:
        with Client(f"127.0.0.1:{running.port}", timeout=60) as client:

            def call() -> None:
                try:
                    outcomes.append(client.list_models())
                except ConvscopeError as error:
                    outcomes.append(error)

            held = [threading.Thread(target=call) for _ in range(limit)]
            for thread in held:
                thread.start()
            for _ in range(limit):
                assert entered.acquire(timeout=30), "the held calls never reached the server"
            extra = [threading.Thread(target=call) for _ in range(2)]
            for thread in extra:
                thread.start()
            for thread in extra:
                thread.join(30)
            refusals = [o for o in outcomes if isinstance(o, ConvscopeError)]
            assert [e.code for e in refusals] == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 2, outcomes
            release.set()
            for thread in held:
                thread.join(30)
            assert sum(isinstance(o, list) for o in outcomes) == limit
            assert client.list_models() == []
    finally:
        release.set()
        running.stop(grace=1)
