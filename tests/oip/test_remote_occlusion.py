"""Occlusion of a model served elsewhere: every occluded batch goes to a remote Open Inference
Protocol endpoint (convscope's own, in a second process), nothing is uploaded by the method, and
the numbers equal the local engine's on the same model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from convscope.cli import main as cli_main
from convscope.errors import InvalidArgument, RemoteFailed
from convscope.methods.occlusion import OcclusionOptions, OcclusionProgress, OcclusionResult
from convscope.model.preprocessing import from_images, input_from_tensor
from convscope.oip.remote import RemoteModel, remote_occlusion
from convscope.rpc.server import RunningServer
from convscope_client import Client
from tests.conftest import BUNDLED_MODEL, CAT_PHOTO
from tests.oip.server_process import serving_process

REMOTE_NAME = "lite0-remote"
RELATIVE_L2 = 1e-5
OPTIONS = {"window": (32, 32), "stride": (24, 24), "fill": "mean", "engine": "batched", "batch_size": 8}


def _relative_l2(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.linalg.norm(got.astype(np.float64) - want) / np.linalg.norm(want.astype(np.float64)))


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving_process(tmp_path_factory.mktemp("remote")) as address:
        with Client(address, timeout=120) as remote_client:
            remote_client.upload_model(BUNDLED_MODEL, name=REMOTE_NAME)
        yield address


def _run(events: Iterator[OcclusionProgress | OcclusionResult]) -> tuple[OcclusionResult, list[OcclusionProgress]]:
    progress = []
    for event in events:
        if isinstance(event, OcclusionResult):
            return event, progress
        progress.append(event)
    raise AssertionError("no result")


def test_remote_occlusion_equals_local(endpoint: str, server: RunningServer, bundled_model_id: str) -> None:
    record = server.core.model(bundled_model_id)
    model_input = server.core.prepare(record, images=[CAT_PHOTO.read_bytes()])
    options = OcclusionOptions.parse(**OPTIONS)
    local, _ = _run(server.core.occlusion(bundled_model_id, model_input, options))
    with RemoteModel(endpoint, REMOTE_NAME) as remote:
        assert remote.record().id == record.id  # the remote server's version: the same content hash
        result, progress = _run(remote_occlusion(remote, input_from_tensor(remote.record(), model_input.batch), options))
    assert progress[0] == OcclusionProgress(0, 81) and progress[-1] == OcclusionProgress(81, 81)
    assert result.targets == local.targets and result.output == local.output
    assert _relative_l2(result.positions, local.positions) <= RELATIVE_L2
    assert _relative_l2(result.attribution, local.attribution) <= RELATIVE_L2
    np.testing.assert_allclose(result.baseline_scores, local.baseline_scores, rtol=1e-6)


def test_remote_occlusion_of_an_image_with_the_models_preprocessing(
    endpoint: str, server: RunningServer, bundled_model_id: str
) -> None:
    local_record = server.core.model(bundled_model_id)
    with RemoteModel(f"grpc://{endpoint}", REMOTE_NAME) as remote:
        record = remote.record(local_record.preprocessing)
        model_input = from_images(record, [CAT_PHOTO.read_bytes()])
        np.testing.assert_array_equal(model_input.batch, server.core.prepare(local_record, images=[CAT_PHOTO.read_bytes()]).batch)
        options = OcclusionOptions.parse(window=(56, 56), stride=(56, 56), targets=[282, 285], score="raw")
        result, _ = _run(remote_occlusion(remote, model_input, options, record))
    local, _ = _run(
        server.core.occlusion(bundled_model_id, model_input, OcclusionOptions.parse(**{**options.__dict__, "engine": "batched"}))
    )
    assert result.targets == (282, 285) and result.positions.shape == (2, 4, 4)
    assert _relative_l2(result.positions, local.positions) <= RELATIVE_L2
    assert result.png.startswith(b"\x89PNG")


def test_remote_errors_carry_the_remote_status(endpoint: str, tmp_path: Path) -> None:
    with pytest.raises(RemoteFailed) as caught:
        RemoteModel(endpoint, "no-such-model")
    assert caught.value.status == grpc.StatusCode.NOT_FOUND and "no-such-model" in str(caught.value)
    with RemoteModel(endpoint, REMOTE_NAME) as remote:
        with pytest.raises(InvalidArgument, match="batched engine"):
            _run(
                remote_occlusion(
                    remote,
                    input_from_tensor(remote.record(), np.zeros((1, 3, 224, 224), np.float32)),
                    OcclusionOptions.parse(engine="incremental"),
                )
            )
    with pytest.raises(InvalidArgument, match="host:port"):
        RemoteModel("grpc://host:1/models/x", REMOTE_NAME)


def test_cli_writes_the_map_of_a_remote_model(
    endpoint: str, server: RunningServer, bundled_model_id: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    preprocessing = json.dumps(server.core.model(bundled_model_id).preprocessing.to_dict())
    code = cli_main(
        [
            "remote-occlusion",
            endpoint,
            REMOTE_NAME,
            str(CAT_PHOTO),
            "--preprocessing",
            preprocessing,
            "--window",
            "56",
            "56",
            "--stride",
            "56",
            "56",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    assert summary["positions"] == [1, 4, 4] and 281 <= summary["target"][0] <= 285  # a cat class
    assert np.load(tmp_path / "remote_occlusion_positions.npy").shape == (1, 4, 4)
    assert (tmp_path / "remote_occlusion.png").read_bytes().startswith(b"\x89PNG")
    assert cli_main(["remote-occlusion", endpoint, "no-such-model", str(CAT_PHOTO), "--out", str(tmp_path)]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err


def test_a_guarded_server_wants_the_token_over_the_protocol_too(tmp_path: Path) -> None:
    from tests.audit.conftest import DIGITS_MODEL
    from tests.conftest import start_server

    token = "c" * 32
    (tmp_path / "tokens.txt").write_text(f"ci write {token}\n")
    running = start_server(tmp_path / "store", token_file=tmp_path / "tokens.txt")
    try:
        address = f"127.0.0.1:{running.port}"
        with Client(address, timeout=60, token=token) as guarded:
            guarded.upload_model(DIGITS_MODEL, name="digits")
        with pytest.raises(RemoteFailed) as refused:
            RemoteModel(address, "digits")
        assert refused.value.status == grpc.StatusCode.UNAUTHENTICATED and "token" in str(refused.value)
        with RemoteModel(address, "digits", token=token) as remote:
            x = np.zeros((1, *remote.record().input.shape[1:]), np.float32)
            assert remote.infer({remote.record().input.name: x}, [remote.record().outputs[0].name])
    finally:
        running.stop(grace=1)
