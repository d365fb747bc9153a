"""The Audit RPC on a running server: streamed progress and checks, cancellation, data roots,
and `convscope audit --address` against an uploaded model's id."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from convscope.cli import main
from convscope.rpc.server import RunningServer
from convscope_client import Client, ConvscopeError
from convscope_client.types import AuditCheck
from tests.audit.conftest import DIGITS_MODEL
from tests.conftest import start_server

QUICK = "[robustness]\nenabled = false\n[explanation_sanity]\nenabled = false\n[explanation_faithfulness]\nenabled = false\n"


@pytest.fixture(scope="module")
def rooted(tmp_path_factory: pytest.TempPathFactory, digits_folder: Path) -> Iterator[tuple[RunningServer, Client]]:
    running = start_server(tmp_path_factory.mktemp("store"), data_roots=(digits_folder.parent,))
    with Client(f"127.0.0.1:{running.port}", timeout=120) as client:
        yield running, client
    running.stop(grace=1)


def test_audit_streams_progress_and_each_check(rooted: tuple[RunningServer, Client], digits_folder: Path) -> None:
    _, client = rooted
    model_id = client.upload_model(DIGITS_MODEL).id
    progress: list[int] = []
    checks: list[AuditCheck] = []
    report = client.audit(
        model_id, digits_folder.name, config_toml=QUICK, progress=lambda p: progress.append(p.done), on_check=checks.append
    )
    assert progress and progress[-1] == 600
    assert [c.name for c in checks][:4] == ["accuracy", "attributes", "dead_filters", "filter_smoothness"]
    assert json.loads(report.files["report.json"])["dataset"]["images"] == 600
    assert report.files["junit.xml"].startswith(b"<?xml") and b"<html" in report.files["report.html"]


def test_a_cancelled_audit_leaves_the_server_serving(rooted: tuple[RunningServer, Client], digits_folder: Path) -> None:
    _, client = rooted
    model_id = client.upload_model(DIGITS_MODEL).id

    def stop(progress: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        client.audit(model_id, digits_folder.name, progress=stop)
    assert any(model.id == model_id for model in client.list_models())
    assert client.audit(model_id, digits_folder.name, config_toml=QUICK).checks


def test_a_dataset_outside_the_data_roots_is_refused(rooted: tuple[RunningServer, Client]) -> None:
    _, client = rooted
    model_id = client.upload_model(DIGITS_MODEL).id
    with pytest.raises(ConvscopeError) as refused:
        client.audit(model_id, "/usr/share")
    assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(ConvscopeError) as refused:
        client.audit(model_id, "digits0", config_toml="[accuracy\n")
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT and "TOML" in refused.value.message


def test_cli_against_a_running_server_by_model_id(
    rooted: tuple[RunningServer, Client], digits_folder: Path, tmp_path: Path
) -> None:
    running, client = rooted
    model_id = client.upload_model(DIGITS_MODEL).id
    (tmp_path / "audit.toml").write_text(QUICK)
    out = tmp_path / "out"
    code = main(
        [
            "audit",
            model_id[:12],
            "--address",
            f"127.0.0.1:{running.port}",
            "--data",
            digits_folder.name,
            "--config",
            str(tmp_path / "audit.toml"),
            "--out",
            str(out),
        ]
    )
    assert code in (0, 1)
    assert {p.name for p in out.iterdir()} == {"report.json", "junit.xml", "report.html"}


def test_cli_passes_its_token_to_a_guarded_server(tmp_path: Path, digits_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = "a" * 32
    (tmp_path / "tokens.txt").write_text(f"ci write {token}\n")
    running = start_server(tmp_path / "store", data_roots=(digits_folder.parent,), token_file=tmp_path / "tokens.txt")
    try:
        (tmp_path / "audit.toml").write_text(QUICK)
        address = f"127.0.0.1:{running.port}"
        arguments = [
            "audit",
            str(DIGITS_MODEL),
            "--address",
            address,
            "--data",
            digits_folder.name,
            "--config",
            str(tmp_path / "audit.toml"),
        ]
        monkeypatch.delenv("CONVSCOPE_TOKEN", raising=False)
        assert main([*arguments, "--out", str(tmp_path / "refused")]) == 2  # no token: a setting to fix, not a crash
        code = main(["--token", token, *arguments, "--out", str(tmp_path / "out")])
        assert code in (0, 1) and (tmp_path / "out" / "report.json").is_file()
    finally:
        running.stop(grace=1)
