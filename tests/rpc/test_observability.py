"""Prometheus metrics move with the calls made, and logs carry each call's request id."""

from __future__ import annotations

import io
import json
import logging
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from convscope.logs import JsonFormatter, RequestIdFilter
from convscope.rpc.observability import REQUEST_ID_KEY
from convscope.rpc.server import PortInUse, RunningServer
from convscope_client import Client, ConvscopeError
from tests.conftest import start_server
from tests.rpc.test_errors import tiny_conv_model
from tests.rpc.test_security import READ_TOKEN, token_file  # noqa: F401  (a fixture)

SMALL = np.random.default_rng(5).random((2, 3, 8, 8), dtype=np.float32)


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Client]]:
    running = start_server(tmp_path_factory.mktemp("store"), metrics_port=0)
    with Client(f"127.0.0.1:{running.port}", timeout=60) as client:
        yield running, client
    running.stop(grace=1)


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample on /metrics, keyed by (name, sorted labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_move_with_calls(observed: tuple[RunningServer, Client]) -> None:
    running, client = observed
    port = running.metrics_port
    assert port
    before = scrape(port)
    model = client.upload_model(tiny_conv_model("metrics").SerializeToString())
    for _ in range(3):
        client.list_models()
    with pytest.raises(ConvscopeError):
        client.get_model("0" * 64)
    client.activations(model.id, SMALL, layers=["y"])
    after = scrape(port)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("convscope_requests_total", method="ListModels", code="OK") == 3
    assert moved("convscope_requests_total", method="GetModel", code="NOT_FOUND") == 1
    assert moved("convscope_requests_total", method="UploadModel", code="OK") == 1
    assert moved("convscope_request_seconds_count", method="ListModels") == 3
    assert moved("convscope_request_seconds_sum", method="Activations") > 0
    # The tensors' bytes each way: 2×3×8×8 float32 in, 2×4×8×8 out, plus framing.
    assert SMALL.nbytes <= moved("convscope_request_bytes_total", method="Activations") < SMALL.nbytes + 1024
    assert 2 * 4 * 8 * 8 * 4 <= moved("convscope_response_bytes_total", method="Activations") < 2 * 4 * 8 * 8 * 4 + 1024
    assert moved("convscope_request_bytes_total", method="UploadModel") >= len(tiny_conv_model("metrics").SerializeToString())
    assert value(after, "convscope_cached_sessions") >= 1
    assert value(after, "convscope_cached_session_bytes") > 0
    assert ("convscope_queue_depth", ()) in after and value(after, "convscope_calls_in_progress") == 0


def test_refused_calls_are_counted(tmp_path: Path, token_file: Path) -> None:  # noqa: F811
    running = start_server(tmp_path / "store", metrics_port=0, token_file=token_file)
    try:
        with Client(f"127.0.0.1:{running.port}", timeout=30) as anonymous:
            with pytest.raises(ConvscopeError):
                anonymous.list_models()
        with Client(f"127.0.0.1:{running.port}", timeout=30, token=READ_TOKEN) as reader:
            reader.list_models()
        samples = scrape(running.metrics_port or 0)
        assert value(samples, "convscope_requests_total", method="ListModels", code="UNAUTHENTICATED") == 1
        assert value(samples, "convscope_requests_total", method="ListModels", code="OK") == 1
    finally:
        running.stop(grace=1)


def test_metrics_port_in_use(observed: tuple[RunningServer, Client], tmp_path: Path) -> None:
    with pytest.raises(PortInUse, match=f"metrics port {observed[0].metrics_port} is already in use"):
        start_server(tmp_path / "store", metrics_port=observed[0].metrics_port)


def test_json_logs_carry_the_request_id(observed: tuple[RunningServer, Client]) -> None:
    running, _ = observed
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("convscope")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            call = channel.unary_unary(
                "/convscope.v1.Convscope/ListModels", request_serializer=lambda m: b"", response_deserializer=bytes
            )
            _, rpc = call.with_call(b"", metadata=[(REQUEST_ID_KEY, "req-42")], timeout=30)
            assert (REQUEST_ID_KEY, "req-42") in tuple(rpc.trailing_metadata())
            _, rpc = call.with_call(b"", timeout=30)
            fresh = dict(rpc.trailing_metadata())[REQUEST_ID_KEY]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert {"time", "level", "logger", "request_id", "message"} <= set(entries[0])
    mine = [entry for entry in entries if entry["request_id"] == "req-42"]
    assert mine and "ListModels OK" in mine[-1]["message"]
    assert len(fresh) == 16 and any(entry["request_id"] == fresh for entry in entries)
