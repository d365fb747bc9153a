"""Every way a request can fail, through the real server and the real client.

Each case checks four things: the status code, that the message names what is wrong (the
layer, the expected shape, the dtype, the offending path), that the server still answers
(ListModels works and the bundled model still runs), and that the store is unchanged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import convscope.runtime.ingest as inspect_module
from convscope.rpc.server import RunningServer
from convscope_client import Client, ConvscopeError
from tests.conftest import BUNDLED_MODEL, CAT_PHOTO, start_server

RNG = np.random.default_rng(7)
PROBE = RNG.random((1, 3, 224, 224), dtype=np.float32)


# ------------------------------------------------------------------------------ tiny models


def tiny_conv_model(tag: str) -> onnx.ModelProto:
    """x[N,3,8,8] → Conv(4, 3×3, pad 1) → Relu; ``tag`` makes its bytes (so its id) unique."""
    weight = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["conv"], ["y"], name="relu"),
        ],
        f"tiny_{tag}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])],
        initializer=[numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10  # make_model stamps a newer IR than onnxruntime accepts
    return model


def _external(name: str, location: str, dims: list[int]) -> TensorProto:
    """A float tensor whose data is said to live in ``location``."""
    tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=dims, data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", "0"), ("length", str(4 * int(np.prod(dims))))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def external_initializer_model(location: str) -> onnx.ModelProto:
    """The tiny conv model with its Conv weight ``w`` moved to external data at ``location``."""
    model = tiny_conv_model(f"ext_init_{location}")
    del model.graph.initializer[:]
    model.graph.initializer.append(_external("w", location, [4, 3, 3, 3]))
    return model


def external_sparse_constant_model(location: str) -> onnx.ModelProto:
    """x + Constant(sparse_value=...) whose sparse values ``vals`` are external."""
    values = _external("vals", location, [2])
    indices = numpy_helper.from_array(np.array([0, 5], np.int64), "idx")
    graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["c"], name="const", sparse_value=helper.make_sparse_tensor(values, indices, [192])),
            helper.make_node("Reshape", ["c", "shape"], ["c4"], name="reshape"),
            helper.make_node("Add", ["x", "c4"], ["y"], name="add"),
        ],
        f"sparse_{location}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 8, 8])],
        initializer=[numpy_helper.from_array(np.array([1, 3, 8, 8], np.int64), "shape")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


def external_function_constant_model(location: str) -> onnx.ModelProto:
    """A model-local function whose body holds a Constant with external data."""
    function = helper.make_function(
        "local",
        "AddK",
        ["a"],
        ["b"],
        [
            helper.make_node("Constant", [], ["k"], value=_external("k", location, [1, 3, 8, 8])),
            helper.make_node("Add", ["a", "k"], ["b"]),
        ],
        [helper.make_opsetid("", 17)],
    )
    graph = helper.make_graph(
        [helper.make_node("AddK", ["x"], ["y"], name="addk", domain="local")],
        f"function_{location}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 8, 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)])
    model.functions.append(function)
    model.ir_version = 10
    return model


def unknown_domain_model() -> onnx.ModelProto:
    """Passes onnx.checker (custom domains are not checked), but no runtime has ``com.example::Frobnicate``."""
    graph = helper.make_graph(
        [helper.make_node("Frobnicate", ["x"], ["y"], name="frob", domain="com.example")],
        "unknown_domain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 8, 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model


def type_mismatch_model() -> onnx.ModelProto:
    """float + int64 in one Add: the checker (no full check) passes it, onnxruntime refuses it."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "k"], ["y"], name="mixed_add")],
        "type_mismatch",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 8, 8])],
        initializer=[numpy_helper.from_array(np.ones(1, np.int64), "k")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model


def two_input_model() -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Add", ["image", "mask"], ["y"], name="add")],
        "two_inputs",
        [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8]),
            helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["N", 3, 8, 8]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 8, 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


# ------------------------------------------------------------------------------ helpers


@pytest.fixture(scope="module")
def bundled_layers(client: Client, bundled_model_id: str) -> dict[str, str]:
    """A Conv tensor/node and a non-Conv node of the bundled model, from its layer table."""
    layers = client.get_model(bundled_model_id).layers
    conv = next(layer for layer in layers if layer.op_type == "Conv")
    other = next(layer for layer in layers if layer.op_type not in ("Conv", "ConvTranspose"))
    return {"conv_tensor": conv.tensor, "other_node": other.name, "other_op": other.op_type}


def model_ids(client: Client) -> list[str]:
    return sorted(info.id for info in client.list_models())


def assert_fails(
    client: Client,
    call: Callable[[], Any],
    code: grpc.StatusCode,
    *must_mention: str,
    store_root: Path | None = None,
    still_runs: Callable[[], None] | None = None,
) -> ConvscopeError:
    """``call`` fails with ``code`` and a message naming ``must_mention``; nothing else changes."""
    before = model_ids(client)
    with pytest.raises(ConvscopeError) as caught:
        call()
    error = caught.value
    assert error.code == code, error
    for fragment in must_mention:
        assert fragment in error.message, f"{fragment!r} missing from: {error.message}"
    if store_root is not None:  # library messages must not reveal where the server keeps files
        assert str(store_root) not in error.message
        assert "incoming" not in error.message
    assert model_ids(client) == before
    if store_root is not None:
        assert not any((store_root / "incoming").iterdir()), "an upload left files behind"
        assert sorted(p.name for p in (store_root / "models").iterdir()) == before
    if still_runs is not None:
        still_runs()
    return error


@pytest.fixture
def expect(
    client: Client, server: RunningServer, bundled_model_id: str, bundled_layers: dict[str, str]
) -> Callable[..., ConvscopeError]:
    """``assert_fails`` against the session server, then check the bundled model still runs."""

    def still_runs() -> None:
        tensor = bundled_layers["conv_tensor"]
        value = client.activations(bundled_model_id, PROBE, layers=[tensor])[tensor]
        assert value.shape[:2] == (1, 32) and np.isfinite(value).all()

    def expect_failure(call: Callable[[], Any], code: grpc.StatusCode, *must_mention: str) -> ConvscopeError:
        return assert_fails(client, call, code, *must_mention, store_root=server.core.store.root, still_runs=still_runs)

    return expect_failure


@pytest.fixture
def runtime_spy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every call that would hand the upload to the onnx checker or onnxruntime."""
    calls: list[str] = []
    real_check, real_session = inspect_module.check_model, inspect_module._session

    def check_model(path: Path) -> None:
        calls.append("onnx.checker")
        real_check(path)

    def session(model: Any) -> Any:
        calls.append("onnxruntime")
        return real_session(model)

    monkeypatch.setattr(inspect_module, "check_model", check_model)
    monkeypatch.setattr(inspect_module, "_session", session)
    return calls


# ------------------------------------------------------------------------------ uploads


def test_malformed_bytes(client: Client, expect: Callable[..., ConvscopeError]) -> None:
    expect(lambda: client.upload_model(b"\xff" * 64), grpc.StatusCode.INVALID_ARGUMENT, "not an ONNX model")


def test_truncated_model(client: Client, expect: Callable[..., ConvscopeError]) -> None:
    data = BUNDLED_MODEL.read_bytes()
    expect(lambda: client.upload_model(data[: len(data) // 2]), grpc.StatusCode.INVALID_ARGUMENT, "complete")


@pytest.mark.parametrize(
    ("build", "mentions"),
    [
        pytest.param(unknown_domain_model, ("onnxruntime", "com.example", "Frobnicate"), id="unknown-domain-op"),
        pytest.param(type_mismatch_model, ("onnxruntime", "mixed_add", "int64"), id="type-mismatch"),
    ],
)
def test_model_onnxruntime_cannot_load(
    client: Client,
    expect: Callable[..., ConvscopeError],
    build: Callable[[], onnx.ModelProto],
    mentions: tuple[str, ...],
) -> None:
    data = build().SerializeToString()
    expect(lambda: client.upload_model(data), grpc.StatusCode.INVALID_ARGUMENT, *mentions)


@pytest.mark.parametrize(
    ("build", "tensor", "location"),
    [
        pytest.param(external_initializer_model, "w", "/etc/passwd", id="initializer-absolute"),
        pytest.param(external_initializer_model, "w", "../x", id="initializer-parent"),
        pytest.param(external_initializer_model, "w", "weights.bin", id="initializer-not-uploaded"),
        # The model's own stored file name and the server's side-file names are not side files.
        pytest.param(external_initializer_model, "w", "model.onnx", id="initializer-own-file"),
        pytest.param(external_initializer_model, "w", "data-0.bin", id="initializer-server-name"),
        pytest.param(external_sparse_constant_model, "vals", "../x", id="sparse-constant-parent"),
        pytest.param(external_sparse_constant_model, "vals", "model.onnx", id="sparse-constant-own-file"),
        pytest.param(external_function_constant_model, "k", "/etc/passwd", id="function-constant-absolute"),
        pytest.param(external_function_constant_model, "k", "model.onnx", id="function-constant-own-file"),
    ],
)
def test_external_data_reference_refused_before_loading(
    client: Client,
    expect: Callable[..., ConvscopeError],
    runtime_spy: list[str],
    build: Callable[[str], onnx.ModelProto],
    tensor: str,
    location: str,
) -> None:
    data = build(location).SerializeToString()
    expect(lambda: client.upload_model(data), grpc.StatusCode.INVALID_ARGUMENT, repr(tensor), repr(location))
    assert runtime_spy == [], "the reference reached the checker or onnxruntime"


def test_external_data_with_an_unrelated_side_file(
    client: Client, expect: Callable[..., ConvscopeError], runtime_spy: list[str]
) -> None:
    """Uploading *a* side file does not make other names acceptable."""
    data = external_initializer_model("other.bin").SerializeToString()
    weights = RNG.standard_normal(4 * 3 * 3 * 3).astype(np.float32).tobytes()
    expect(
        lambda: client.upload_model(data, side_files={"model.onnx.data": weights}),
        grpc.StatusCode.INVALID_ARGUMENT,
        "'w'",
        "'other.bin'",
    )
    assert runtime_spy == []


@pytest.mark.parametrize("side_name", ["../escape.bin", "sub/dir.bin", "..", "/etc/passwd"])
def test_side_file_name_must_be_plain(client: Client, expect: Callable[..., ConvscopeError], side_name: str) -> None:
    data = tiny_conv_model(f"side_{side_name}").SerializeToString()
    expect(
        lambda: client.upload_model(data, side_files={side_name: b"\0" * 16}),
        grpc.StatusCode.INVALID_ARGUMENT,
        repr(side_name),
    )


def test_two_runtime_inputs_need_both(client: Client, expect: Callable[..., ConvscopeError]) -> None:
    info = client.upload_model(two_input_model().SerializeToString())
    image = PROBE[:, :, :8, :8].copy()
    expect(lambda: client.activations(info.id, image), grpc.StatusCode.INVALID_ARGUMENT, "'mask'", "send")
    expect(
        lambda: client.activations(info.id, {"image": image, "mask": image, "depth": image}),
        grpc.StatusCode.INVALID_ARGUMENT,
        "'depth'",
    )
    expect(
        lambda: client.attribution(info.id, {"image": image, "mask": image}, method="gradient", wrt="depth"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "'depth'",
    )
    np.testing.assert_array_equal(client.activations(info.id, {"image": image, "mask": image})["y"], 2 * image)
    client.delete_model(info.id)


# ------------------------------------------------------------------------------ lookups and inputs


def test_unknown_model_id(client: Client, expect: Callable[..., ConvscopeError]) -> None:
    missing = "0" * 64
    expect(lambda: client.get_model(missing), grpc.StatusCode.NOT_FOUND, missing)
    expect(lambda: client.activations(missing, PROBE), grpc.StatusCode.NOT_FOUND, missing)
    expect(lambda: client.filters(missing, "conv"), grpc.StatusCode.NOT_FOUND, missing)
    expect(lambda: client.delete_model(missing), grpc.StatusCode.NOT_FOUND, missing)


def test_unknown_layer(client: Client, bundled_model_id: str, expect: Callable[..., ConvscopeError]) -> None:
    expect(
        lambda: client.activations(bundled_model_id, PROBE, layers=["/no/such_layer_output_0"]),
        grpc.StatusCode.NOT_FOUND,
        "/no/such_layer_output_0",
    )
    expect(lambda: client.filters(bundled_model_id, "/no/such/Conv"), grpc.StatusCode.NOT_FOUND, "/no/such/Conv")


def test_filters_on_a_layer_that_is_not_conv(
    client: Client, bundled_model_id: str, bundled_layers: dict[str, str], expect: Callable[..., ConvscopeError]
) -> None:
    node, op = bundled_layers["other_node"], bundled_layers["other_op"]
    expect(lambda: client.filters(bundled_model_id, node), grpc.StatusCode.INVALID_ARGUMENT, repr(node), op, "Conv")


@pytest.mark.parametrize(
    ("tensor", "mentions"),
    [
        pytest.param(PROBE.astype(np.float64), ("'input'", "float32", "float64"), id="float64"),
        pytest.param(PROBE.astype(np.int64), ("'input'", "float32", "int64"), id="int64"),
        pytest.param(PROBE[:, :, :100, :100].copy(), ("'input'", "224", "[1, 3, 100, 100]"), id="spatial-size"),
        pytest.param(PROBE[:, :1].copy(), ("'input'", "3, 224, 224", "[1, 1, 224, 224]"), id="channels"),
        pytest.param(PROBE[0, 0].copy(), ("'input'", "224", "[224, 224]"), id="rank"),
    ],
)
def test_wrong_input_tensor(
    client: Client,
    bundled_model_id: str,
    expect: Callable[..., ConvscopeError],
    tensor: np.ndarray,
    mentions: tuple[str, ...],
) -> None:
    expect(lambda: client.activations(bundled_model_id, tensor), grpc.StatusCode.INVALID_ARGUMENT, *mentions)


@pytest.mark.parametrize(
    ("images", "mentions"),
    [
        pytest.param([b"definitely not a PNG"], ("image 0", "decoded"), id="garbage"),
        pytest.param([CAT_PHOTO.read_bytes()[:400]], ("image 0", "decoded"), id="truncated-png"),
        pytest.param([CAT_PHOTO.read_bytes(), b"\x89PNG\r\n\x1a\n garbage"], ("image 1", "decoded"), id="second-of-two"),
    ],
)
def test_undecodable_image(
    client: Client,
    bundled_model_id: str,
    expect: Callable[..., ConvscopeError],
    images: list[bytes],
    mentions: tuple[str, ...],
) -> None:
    expect(lambda: client.activations(bundled_model_id, images), grpc.StatusCode.INVALID_ARGUMENT, *mentions)


# ------------------------------------------------------------------------------ limits


@pytest.fixture
def small_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[RunningServer, Client]]:
    """A server of its own with the limits given by indirect parametrization."""
    running = start_server(tmp_path / "store", **request.param)
    try:
        with Client(f"127.0.0.1:{running.port}", timeout=60) as connected:
            yield running, connected
    finally:
        running.stop(grace=0)


@pytest.mark.parametrize("small_server", [{"max_request_bytes": 1 << 20}], indirect=True)
def test_request_over_the_request_limit(small_server: tuple[RunningServer, Client]) -> None:
    running, client = small_server
    model_id = client.upload_model(tiny_conv_model("request_limit").SerializeToString()).id
    big = RNG.random((2731, 3, 8, 8), dtype=np.float32)  # 2 MiB + a little
    assert big.nbytes > 2 << 20

    def still_runs() -> None:
        small = big[:4]
        assert client.activations(model_id, small, layers=["y"])["y"].shape == (4, 4, 8, 8)

    still_runs()
    assert_fails(
        client,
        lambda: client.activations(model_id, big),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        str(1 << 20),
        store_root=running.core.store.root,
        still_runs=still_runs,
    )


@pytest.mark.parametrize("small_server", [{"max_response_bytes": 1 << 20}], indirect=True)
def test_response_over_the_response_limit(small_server: tuple[RunningServer, Client]) -> None:
    """Named layers come in one message: over the limit it is refused with its size and the
    remedy, and the stream (a message per tensor) still carries them; a single tensor over the
    limit is refused in the stream too."""
    running, client = small_server
    model_id = client.upload_model(tiny_conv_model("response_limit").SerializeToString()).id
    together = RNG.random((600, 3, 8, 8), dtype=np.float32)  # conv and y: 600 KiB each
    alone = RNG.random((1200, 3, 8, 8), dtype=np.float32)  # y alone: 1.2 MiB

    def still_runs() -> None:
        streamed = client.activations(model_id, together)
        assert {name: value.shape for name, value in streamed.items()} == {"conv": (600, 4, 8, 8), "y": (600, 4, 8, 8)}
        named = client.activation_details(model_id, together, layers=["y", "conv"], stream=True)
        assert [a.tensor for a in named] == ["y", "conv"]
        for activation in named:
            np.testing.assert_array_equal(activation.value, streamed[activation.tensor])

    for call, remedy in (
        (lambda: client.activations(model_id, together, layers=["conv", "y"]), "StreamActivations"),
        (lambda: client.activations(model_id, alone), "smaller batch"),
    ):
        assert_fails(
            client,
            call,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "1.0 MiB per message",
            "--max-response-mb",
            remedy,
            store_root=running.core.store.root,
            still_runs=still_runs,
        )


@pytest.mark.parametrize("small_server", [{"max_response_bytes": 4 << 30}], indirect=True)
def test_a_response_limit_over_grpcs_cap_is_capped(small_server: tuple[RunningServer, Client]) -> None:
    """gRPC refuses a send limit over 2 GiB - 1 (OverflowError at start): the server caps it."""
    _, client = small_server
    model_id = client.upload_model(tiny_conv_model("response_cap").SerializeToString()).id
    assert client.activations(model_id, RNG.random((2, 3, 8, 8), dtype=np.float32), layers=["y"])["y"].shape == (2, 4, 8, 8)


@pytest.mark.parametrize("small_server", [{"max_upload_bytes": 1 << 20}], indirect=True)
def test_upload_over_the_upload_limit(small_server: tuple[RunningServer, Client]) -> None:
    running, client = small_server
    root = running.core.store.root
    assert_fails(
        client,
        lambda: client.upload_model(BUNDLED_MODEL),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "1 MiB",
        "--max-upload-mb",
        store_root=root,
    )
    assert list((root / "incoming").iterdir()) == []
    assert list((root / "models").iterdir()) == []
    # Still answering, and a model under the limit is accepted and runs.
    model_id = client.upload_model(tiny_conv_model("upload_limit").SerializeToString()).id
    assert model_ids(client) == [model_id]
    assert client.activations(model_id, np.ones((1, 3, 8, 8), np.float32), layers=["y"])["y"].shape == (1, 4, 8, 8)


# ------------------------------------------------------------------------------ unexpected failures


def test_unexpected_exception_is_internal_without_its_text(
    client: Client,
    server: RunningServer,
    bundled_model_id: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = model_ids(client)

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret path /x")

    monkeypatch.setattr(server.core, "models", boom)
    monkeypatch.setattr(server.core, "model", boom)
    with caplog.at_level(logging.ERROR, logger="convscope.rpc.errors"):
        for call in (client.list_models, lambda: client.get_model(bundled_model_id)):
            with pytest.raises(ConvscopeError) as caught:
                call()
            assert caught.value.code == grpc.StatusCode.INTERNAL
            assert "secret" not in caught.value.message and "/x" not in caught.value.message
            # The client gets an incident tag; the server log has the details under it.
            incident = re.search(r"incident (\w+)", caught.value.message)
            assert incident is not None, caught.value.message
            logged = [r for r in caplog.records if incident.group(1) in r.getMessage()]
            assert logged and "secret path /x" in str(logged[0].exc_info[1])
    monkeypatch.undo()
    assert model_ids(client) == before
    assert client.get_model(bundled_model_id).id == bundled_model_id
