"""Tokens with roles, TLS and mutual TLS, through the real server and the real client."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from convscope.rpc.security import TlsFiles, TokenFileError, load_tokens
from convscope.rpc.server import SERVICE_NAME, RunningServer
from convscope_client import Client, ConvscopeError, Tls
from convscope_client import cli as client_cli
from tests.certs import Authority, make_authority
from tests.conftest import start_server
from tests.rpc.test_errors import tiny_conv_model

READ_TOKEN = "r3ad-" + "a" * 27
WRITE_TOKEN = "wr1te-" + "b" * 26


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tokens") / "tokens.txt"
    path.write_text(f"# name role token\nviewer read {READ_TOKEN}\nci write {WRITE_TOKEN}  # the CI uploader\n")
    return path


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, token_file: Path) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("store"), token_file=token_file)
    yield running
    running.stop(grace=1)


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    return make_authority(tmp_path_factory.mktemp("ca"))


def _health(channel: grpc.Channel) -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=10).status


def _refused(call: object, code: grpc.StatusCode, *mentions: str) -> None:
    with pytest.raises(ConvscopeError) as caught:
        call()  # type: ignore[operator]
    assert caught.value.code == code, caught.value
    for fragment in mentions:
        assert fragment in caught.value.message, caught.value.message


# ------------------------------------------------------------------------------ the token file


@pytest.mark.parametrize(
    ("text", "mention"),
    [
        pytest.param("alice read\n", "line 1", id="two-fields"),
        pytest.param(f"alice admin {READ_TOKEN}\n", "'admin'", id="unknown-role"),
        pytest.param("alice read short\n", "shorter", id="short-token"),
        pytest.param(f"alice read {READ_TOKEN}\nbob write {READ_TOKEN}\n", "line 2", id="repeated-token"),
        pytest.param("# only a comment\n", "no tokens", id="empty"),
    ],
)
def test_malformed_token_file_is_refused(tmp_path: Path, text: str, mention: str) -> None:
    path = tmp_path / "tokens.txt"
    path.write_text(text)
    with pytest.raises(TokenFileError, match=mention):
        load_tokens(path)


# ------------------------------------------------------------------------------ tokens and roles


def test_calls_without_a_known_token_are_unauthenticated(guarded: RunningServer) -> None:
    address = f"127.0.0.1:{guarded.port}"
    with Client(address, timeout=30) as anonymous, Client(address, timeout=30, token="x" * 32) as stranger:
        _refused(anonymous.list_models, grpc.StatusCode.UNAUTHENTICATED, "ListModels", "no bearer token", "--token")
        _refused(stranger.list_models, grpc.StatusCode.UNAUTHENTICATED, "an unknown token")
        _refused(
            lambda: anonymous.upload_model(tiny_conv_model("anon").SerializeToString()),
            grpc.StatusCode.UNAUTHENTICATED,
            "UploadModel",
        )
    with Client(address, timeout=30, metadata=[("authorization", f"Basic {READ_TOKEN}")]) as wrong_scheme:
        _refused(wrong_scheme.list_models, grpc.StatusCode.UNAUTHENTICATED, "Bearer")


def test_health_stays_open_without_a_token(guarded: RunningServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{guarded.port}") as channel:
        assert _health(channel) == health_pb2.HealthCheckResponse.SERVING


def test_read_token_reads_but_cannot_upload_or_delete(guarded: RunningServer) -> None:
    address = f"127.0.0.1:{guarded.port}"
    with Client(address, timeout=60, token=WRITE_TOKEN) as writer, Client(address, timeout=60, token=READ_TOKEN) as reader:
        model = writer.upload_model(tiny_conv_model("roles").SerializeToString())
        before = sorted(info.id for info in reader.list_models())
        assert model.id in before
        _refused(lambda: reader.delete_model(model.id), grpc.StatusCode.PERMISSION_DENIED, "DeleteModel", "'write'", "'viewer'")
        _refused(
            lambda: reader.upload_model(tiny_conv_model("read-upload").SerializeToString()),
            grpc.StatusCode.PERMISSION_DENIED,
            "UploadModel",
            "'write'",
        )
        assert sorted(info.id for info in reader.list_models()) == before
        assert reader.get_model(model.id).id == model.id
        writer.delete_model(model.id)
        assert model.id not in {info.id for info in reader.list_models()}


def test_cli_takes_the_token_from_the_environment(
    guarded: RunningServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    address = ["--address", f"127.0.0.1:{guarded.port}", "--timeout", "30"]
    monkeypatch.delenv("CONVSCOPE_TOKEN", raising=False)
    assert client_cli.main([*address, "models"]) == client_cli.EXIT_REFUSED
    assert "UNAUTHENTICATED" in capsys.readouterr().err
    assert client_cli.main([*address, "--token", READ_TOKEN, "models"]) == 0
    capsys.readouterr()
    monkeypatch.setenv("CONVSCOPE_TOKEN", READ_TOKEN)
    assert client_cli.main([*address, "models"]) == 0


# ------------------------------------------------------------------------------ TLS


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, authority: Authority) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("store"), tls=TlsFiles(authority.server.cert, authority.server.key))
    yield running
    running.stop(grace=1)


@pytest.fixture(scope="module")
def mutual_tls_server(
    tmp_path_factory: pytest.TempPathFactory, authority: Authority, token_file: Path
) -> Iterator[RunningServer]:
    files = TlsFiles(authority.server.cert, authority.server.key, client_ca=authority.ca.cert)
    running = start_server(tmp_path_factory.mktemp("store"), tls=files, token_file=token_file)
    yield running
    running.stop(grace=1)


def _round_trip(client: Client) -> None:
    model = client.upload_model(tiny_conv_model(f"tls-{client.address}").SerializeToString())
    assert model.id in {info.id for info in client.list_models()}
    client.delete_model(model.id)


def test_tls_round_trip(tls_server: RunningServer, authority: Authority) -> None:
    with Client(f"localhost:{tls_server.port}", timeout=60, tls=Tls(ca=authority.ca.cert)) as client:
        _round_trip(client)


def test_plaintext_client_against_tls_server_fails(tls_server: RunningServer) -> None:
    with Client(f"localhost:{tls_server.port}", timeout=10) as plaintext:
        _refused(plaintext.list_models, grpc.StatusCode.UNAVAILABLE, "TLS", "--tls-ca")


def test_tls_client_must_trust_the_server(tls_server: RunningServer) -> None:
    with Client(f"localhost:{tls_server.port}", timeout=10, tls=True) as untrusting:  # system roots lack the test CA
        _refused(untrusting.list_models, grpc.StatusCode.UNAVAILABLE)


def test_mutual_tls_round_trip_with_token(mutual_tls_server: RunningServer, authority: Authority) -> None:
    address = f"localhost:{mutual_tls_server.port}"
    mutual = Tls(ca=authority.ca.cert, cert=authority.client.cert, key=authority.client.key)
    with Client(address, timeout=60, tls=mutual, token=WRITE_TOKEN) as client:
        _round_trip(client)
    with Client(address, timeout=60, tls=mutual) as no_token:
        _refused(no_token.list_models, grpc.StatusCode.UNAUTHENTICATED)
    with Client(address, timeout=10, tls=Tls(ca=authority.ca.cert), token=WRITE_TOKEN) as no_certificate:
        _refused(no_certificate.list_models, grpc.StatusCode.UNAVAILABLE)


def test_cli_mutual_tls(mutual_tls_server: RunningServer, authority: Authority, capsys: pytest.CaptureFixture[str]) -> None:
    code = client_cli.main(
        [
            "--address",
            f"localhost:{mutual_tls_server.port}",
            "--timeout",
            "30",
            "--token",
            READ_TOKEN,
            "--tls-ca",
            str(authority.ca.cert),
            "--tls-cert",
            str(authority.client.cert),
            "--tls-key",
            str(authority.client.key),
            "models",
        ]
    )
    assert code == 0, capsys.readouterr().err


# ------------------------------------------------------------------------------ reflection and exposure


def _reflected_services(port: int) -> list[str]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        return list(ProtoReflectionDescriptorDatabase(channel).get_services())


def test_reflection_is_off_unless_asked_for(server: RunningServer, tmp_path: Path) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _reflected_services(server.port)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    reflecting = start_server(tmp_path / "store", reflection=True)
    try:
        assert SERVICE_NAME in _reflected_services(reflecting.port)
    finally:
        reflecting.stop(grace=1)


def test_warning_on_an_exposed_plaintext_server(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="convscope.rpc.security"):
        exposed = start_server(tmp_path / "store", host="0.0.0.0")
        exposed.stop(grace=1)
    warning = " ".join(record.getMessage() for record in caplog.records)
    assert "0.0.0.0" in warning and "--token-file" in warning and "--tls-cert" in warning
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="convscope.rpc.security"):
        start_server(tmp_path / "store2").stop(grace=1)  # loopback: nothing to warn about
    assert not caplog.records
