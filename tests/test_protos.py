"""The committed stubs are what the .proto generates, and the server describes itself."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from convscope.rpc.server import RunningServer
from tests.conftest import REPO, start_server

STUB_DIR = REPO / "clients" / "python" / "convscope_client" / "_proto"
SERVICE = "convscope.v1.Convscope"


def _gen_protos() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_protos", REPO / "scripts" / "gen_protos.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _committed() -> set[str]:
    return {p.name for p in STUB_DIR.iterdir() if p.is_file()}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("stubs")
    files = _gen_protos().generate(out)
    return {path.name: path for path in files}


def test_generates_the_committed_set_of_files(generated: dict[str, Path]) -> None:
    assert {"convscope_pb2.py", "convscope_pb2.pyi", "convscope_pb2_grpc.py", "__init__.py"} <= set(generated)
    assert set(generated) == _committed(), "regenerate with: python scripts/gen_protos.py"


@pytest.mark.parametrize("name", sorted(_committed()))
def test_committed_stub_is_fresh(generated: dict[str, Path], name: str) -> None:
    assert name in generated, f"{name} is committed but no longer generated; regenerate with scripts/gen_protos.py"
    assert (STUB_DIR / name).read_text() == generated[name].read_text(), (
        f"{name} is stale: regenerate with `python scripts/gen_protos.py`"
    )


@pytest.fixture(scope="module")
def reflecting_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("store"), reflection=True)
    yield running
    running.stop(grace=1)


def test_reflection_lists_the_service(reflecting_server: RunningServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{reflecting_server.port}") as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = database.get_services()
        assert SERVICE in services
        assert "grpc.health.v1.Health" in services
        # The descriptors come through too: the service's methods are resolvable by name.
        descriptor = database.FindFileContainingSymbol(SERVICE)
        methods = {m.name for s in descriptor.service if s.name == "Convscope" for m in s.method}
        assert {"UploadModel", "ListModels", "GetModel", "DeleteModel", "Activations", "StreamActivations", "Filters"} <= methods


@pytest.mark.parametrize("service", ["", SERVICE])
def test_health_is_serving(server: RunningServer, service: str) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_health_unknown_service_is_not_found(server: RunningServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        with pytest.raises(grpc.RpcError) as caught:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
