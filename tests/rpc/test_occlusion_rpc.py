"""Occlusion end to end: the real server on port 0, the real client, progress and cancellation.

* positions through gRPC equal a Python loop over the box positions in onnxruntime, and the
  progress messages count up to the total, one per batch;
* the bundled EfficientNet-Lite0 on the cat photo: a cat class, its label, a PNG over the image;
* a call cancelled by the client, or past its deadline, stops the server's work: the servicer
  logs where it stopped and no batch of that request runs afterwards, and the next request is
  served;
* bad requests get INVALID_ARGUMENT / NOT_FOUND; the CLI writes its files and draws a bar.
"""

from __future__ import annotations

import io
import logging
import re
import time

import grpc
import numpy as np
import pytest
from PIL import Image

from convscope_client import Client, ConvscopeError
from convscope_client.cli import main as cli_main
from tests.conftest import CAT_PHOTO
from tests.methods.test_occlusion import _loop_oracle
from tests.nets import exported
from tests.oracles import random_input

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CAT_CLASSES = range(281, 286)
# A job far longer than any test waits for: 55 × 55 positions of EfficientNet-Lite0.
LONG_JOB = {"window": (8, 8), "stride": (4, 4), "batch_size": 2, "engine": "batched"}
LONG_TOTAL = 55 * 55
# How long to wait for the server's log line (a liveness bound, not a speed assertion).
LOG_WAIT_SECONDS = 120


@pytest.fixture(scope="module")
def model_id(client: Client) -> str:
    return client.upload_model(exported("ResNetStyle", "torchscript").SerializeToString(), name="ResNetStyle").id


def test_positions_and_progress_end_to_end(client: Client, model_id: str) -> None:
    x = random_input((1, 3, 32, 32), seed=21)
    seen: list[tuple[int, int]] = []
    result = client.occlusion(
        model_id,
        x,
        target=[2, 5],
        window=(8, 8),
        stride=(4, 4),
        fill=0.0,
        score="raw",
        batch_size=4,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert result.target == [2, 5] and result.positions.shape == (2, 7, 7)
    assert result.attribution.shape == (2, 3, 32, 32)
    assert result.window == (8, 8) and result.stride == (4, 4)
    loop = _loop_oracle(exported("ResNetStyle", "torchscript"), x, (8, 8), (4, 4), np.zeros((3, 32, 32), np.float32))
    for index, target in enumerate(result.target):
        np.testing.assert_allclose(result.positions[index], loop[..., target], rtol=1e-5, atol=1e-5)
    assert seen == [(0, 49)] + [(min(done, 49), 49) for done in range(4, 53, 4)]
    assert result.png.startswith(PNG_MAGIC)


def test_bundled_model_on_the_cat_photo(client: Client, bundled_model_id: str) -> None:
    result = client.occlusion(bundled_model_id, CAT_PHOTO, window=(64, 64), stride=(64, 64))
    assert result.positions.shape == (1, 4, 4)  # ⌈(224 − 64) / 64⌉ + 1 = 4, the last box clipped
    assert result.target in CAT_CLASSES
    assert any(word in result.target_label.lower() for word in ("cat", "tabby"))
    assert 0 < result.baseline_score <= 1 and (result.positions <= 1).all()
    assert result.engine in ("batched", "incremental")
    picture = Image.open(io.BytesIO(result.png))
    # The heat map with its colour bar, then the map over the photo: two panels of at least the input's size.
    assert picture.width > 2 * 224 and picture.height > 224 and picture.mode == "RGB"


def _wait_for_stop(caplog: pytest.LogCaptureFixture, total: int) -> int:
    """Positions done when the servicer logged that it stopped the request of ``total`` positions."""
    pattern = re.compile(rf"stopped after (\d+) of {total} positions")
    deadline = time.monotonic() + LOG_WAIT_SECONDS
    while time.monotonic() < deadline:
        for record in caplog.records:
            found = pattern.search(record.getMessage())
            if found:
                return int(found.group(1))
        time.sleep(0.05)
    raise AssertionError(f"the server never logged that it stopped; log:\n{caplog.text[-3000:]}")


def _batches_run(caplog: pytest.LogCaptureFixture, total: int) -> int:
    pattern = re.compile(rf": \d+/{total} positions")
    return sum(1 for record in caplog.records if pattern.search(record.getMessage()))


def _assert_no_more_work_and_still_serving(client: Client, model_id: str, caplog: pytest.LogCaptureFixture, done: int) -> None:
    assert 0 < done < LONG_TOTAL
    before = _batches_run(caplog, LONG_TOTAL)
    follow_up = client.occlusion(model_id, random_input((1, 3, 32, 32), seed=1), window=(16, 16), stride=(16, 16))
    assert follow_up.positions.shape == (1, 2, 2)
    assert _batches_run(caplog, LONG_TOTAL) == before  # nothing of the cancelled request ran meanwhile
    assert before <= done // LONG_JOB["batch_size"] + 1  # type: ignore[operator]


class _Stop(Exception):
    pass


def test_cancelled_call_stops_the_server(
    client: Client, bundled_model_id: str, model_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="convscope.methods.occlusion")
    caplog.set_level(logging.INFO, logger="convscope.rpc.servicer")

    def progress(done: int, total: int) -> None:
        if done > 0:
            raise _Stop

    with pytest.raises(_Stop):
        client.occlusion(bundled_model_id, CAT_PHOTO, progress=progress, **LONG_JOB)  # type: ignore[arg-type]
    _assert_no_more_work_and_still_serving(client, model_id, caplog, _wait_for_stop(caplog, LONG_TOTAL))


def test_expired_deadline_stops_the_server(
    client: Client, bundled_model_id: str, model_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="convscope.methods.occlusion")
    caplog.set_level(logging.INFO, logger="convscope.rpc.servicer")
    started: list[int] = []
    with pytest.raises(ConvscopeError) as raised:
        client.occlusion(bundled_model_id, CAT_PHOTO, timeout=2.0, progress=lambda done, _: started.append(done), **LONG_JOB)  # type: ignore[arg-type]
    assert raised.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    _assert_no_more_work_and_still_serving(client, model_id, caplog, _wait_for_stop(caplog, LONG_TOTAL))


@pytest.mark.parametrize(
    ("options", "status", "words"),
    [
        ({"window": (40, 40)}, grpc.StatusCode.INVALID_ARGUMENT, "larger than the image"),
        ({"fill": "median"}, grpc.StatusCode.INVALID_ARGUMENT, "fill"),
        ({"target": 99}, grpc.StatusCode.INVALID_ARGUMENT, "out of range"),
        ({"output": "no-such-tensor"}, grpc.StatusCode.NOT_FOUND, "no-such-tensor"),
    ],
)
def test_bad_requests_get_their_status(client: Client, model_id: str, options, status, words) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConvscopeError) as raised:
        client.occlusion(model_id, random_input((1, 3, 32, 32), seed=2), **options)
    assert raised.value.code == status and words in raised.value.message


def test_cli_writes_files_and_draws_a_bar(server, model_id: str, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    array = tmp_path / "x.npy"
    np.save(array, random_input((1, 3, 32, 32), seed=3))
    out = tmp_path / "out"
    code = cli_main(
        [
            "--address",
            f"127.0.0.1:{server.port}",
            "occlusion",
            model_id,
            str(array),
            "--window",
            "8",
            "8",
            "--stride",
            "8",
            "8",
            "--fill",
            "mean",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    assert "16/16 positions" in captured.err and "[" in captured.err
    assert np.load(out / "occlusion_positions.npy").shape == (1, 4, 4)
    assert np.load(out / "occlusion_attribution.npy").shape == (1, 3, 32, 32)
    assert (out / "occlusion.png").read_bytes().startswith(PNG_MAGIC)
