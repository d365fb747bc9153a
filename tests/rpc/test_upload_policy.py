"""The hostile upload corpus: each case is refused with its status and a message a person can act
on, health stays SERVING, the store is unchanged, and the next valid request succeeds."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from convscope.errors import InvalidModel
from convscope.model.policy import check_external_extents
from convscope.rpc.server import RunningServer
from convscope_client import Client, ConvscopeError
from tests.rpc.test_errors import (  # noqa: F401  (fixtures)
    _external,
    bundled_layers,
    expect,
    external_initializer_model,
    runtime_spy,
    tiny_conv_model,
)
from tests.rpc.test_limits import serving

WEIGHT_BYTES = 4 * 4 * 3 * 3 * 3  # the tiny model's Conv weight, float32


@pytest.fixture
def hostile(server: RunningServer, expect: Callable[..., ConvscopeError]) -> Callable[..., ConvscopeError]:  # noqa: F811
    def refused(call: Callable[[], object], code: grpc.StatusCode, *mentions: str) -> ConvscopeError:
        error = expect(call, code, *mentions)
        assert serving(server.port)
        return error

    return refused


def _model(
    nodes: list[onnx.NodeProto], tag: str, *, opsets: tuple[tuple[str, int], ...] = (("", 17),), ir: int = 10
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        f"hostile_{tag}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 8, 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(domain, version) for domain, version in opsets])
    model.ir_version = ir
    return model


def _nested_graphs(levels: int) -> bytes:
    """A ModelProto whose graph holds a node whose attribute holds a graph ... ``levels`` deep,
    written directly as protobuf bytes (the Python API recurses and would overflow first)."""

    def varint(value: int) -> bytes:
        out = bytearray()
        while True:
            out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
            value >>= 7
            if not value:
                return bytes(out)

    # Inside out: GraphProto{node(1): NodeProto{attribute(5): AttributeProto{g(6): GraphProto{...}}}}
    tags = (b"\x32", b"\x2a", b"\x0a")  # g(6) in an attribute, attribute(5) in a node, node(1) in a graph
    sizes, size = [], 0
    for _ in range(levels):
        for tag in tags:
            sizes.append((tag, size))
            size += len(tag) + len(varint(size))
    head = b"".join(tag + varint(length) for tag, length in reversed(sizes))
    return b"\x08\x0a" + b"\x3a" + varint(size) + head  # ir_version 10, graph(7)


def _cycle_model() -> onnx.ModelProto:
    return _model(
        [
            helper.make_node("Add", ["x", "b"], ["a"], name="first"),
            helper.make_node("Relu", ["a"], ["b"], name="second"),
            helper.make_node("Identity", ["a"], ["y"], name="out"),
        ],
        "cycle",
    )


def _identity_chain(count: int) -> bytes:
    model = _model([], "identities")
    nodes = model.graph.node
    for i in range(count):
        node = nodes.add()
        node.op_type = "Identity"
        node.input.append("x" if i == 0 else f"t{i - 1}")
        node.output.append("y" if i == count - 1 else f"t{i}")
    return model.SerializeToString()


def _dims_disagree() -> onnx.ModelProto:
    model = tiny_conv_model("dims")
    model.graph.initializer[0].raw_data = model.graph.initializer[0].raw_data[:10]
    return model


def _ep_context() -> onnx.ModelProto:
    node = helper.make_node(
        "EPContext", ["x"], ["y"], name="compiled", domain="com.microsoft", ep_cache_context="/etc/passwd", embed_mode=0
    )
    return _model([node], "epcontext", opsets=(("", 17), ("com.microsoft", 1)))


def _external_at(offset: int, length: int) -> onnx.ModelProto:
    model = tiny_conv_model(f"extent_{offset}_{length}")
    del model.graph.initializer[:]
    tensor = _external("w", "w.bin", [4, 3, 3, 3])
    for entry in tensor.external_data:
        entry.value = {"offset": str(offset), "length": str(length)}.get(entry.key, entry.value)
    model.graph.initializer.append(tensor)
    return model


RANDOM = np.random.default_rng(11).bytes(4096)
SERIALIZED = tiny_conv_model("truncate").SerializeToString()
CORPUS = [
    pytest.param(lambda: RANDOM, grpc.StatusCode.INVALID_ARGUMENT, ("not an ONNX model",), id="random-bytes"),
    pytest.param(lambda: SERIALIZED[: len(SERIALIZED) * 2 // 3], grpc.StatusCode.INVALID_ARGUMENT, ("complete",), id="truncated"),
    pytest.param(lambda: _nested_graphs(33_000), grpc.StatusCode.INVALID_ARGUMENT, ("not an ONNX model",), id="nested-33000"),
    pytest.param(
        lambda: _model([helper.make_node("Relu", ["x"], ["y"])], "ir", ir=999).SerializeToString(),
        grpc.StatusCode.INVALID_ARGUMENT,
        ("ir_version", "999"),
        id="ir-version-999",
    ),
    pytest.param(lambda: _cycle_model().SerializeToString(), grpc.StatusCode.INVALID_ARGUMENT, ("checker",), id="node-cycle"),
    pytest.param(
        lambda: _model(
            [helper.make_node("Frob", ["x"], ["y"], name="frob", domain="com.example")],
            "domain",
            opsets=(("", 17), ("com.example", 1)),
        ).SerializeToString(),
        grpc.StatusCode.INVALID_ARGUMENT,
        ("'frob'", "com.example", "onnxruntime does not ship"),
        id="unknown-domain",
    ),
    pytest.param(
        lambda: _ep_context().SerializeToString(),
        grpc.StatusCode.INVALID_ARGUMENT,
        ("EPContext", "'compiled'", "original ONNX"),
        id="epcontext",
    ),
    pytest.param(
        lambda: b"\x14\x00\x00\x00ORTM" + RANDOM[:200], grpc.StatusCode.INVALID_ARGUMENT, (".ort", "ONNX"), id="ort-format"
    ),
    pytest.param(
        lambda: _dims_disagree().SerializeToString(),
        grpc.StatusCode.INVALID_ARGUMENT,
        ("'w'", "432 bytes", "holds 10"),
        id="dims-vs-data",
    ),
    pytest.param(
        lambda: _identity_chain(600_000),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        ("100000 nodes", "--max-nodes"),
        id="600000-identities",
    ),
]


@pytest.mark.parametrize(("build", "code", "mentions"), CORPUS)
def test_hostile_model(
    client: Client,
    hostile: Callable[..., ConvscopeError],
    build: Callable[[], bytes],
    code: grpc.StatusCode,
    mentions: tuple[str, ...],
) -> None:
    data = build()
    hostile(lambda: client.upload_model(data), code, *mentions)


@pytest.mark.parametrize("location", ["/etc/passwd", "../x", "sub/../../x", "a/../../../etc/passwd", "model.onnx", "link.bin"])
def test_external_reference_outside_the_side_files(
    client: Client,
    hostile: Callable[..., ConvscopeError],
    runtime_spy: list[str],  # noqa: F811 (a fixture imported by name; the formatter keeps this comment on its line)
    location: str,
    tmp_path: Path,
) -> None:
    """``link.bin`` names a symlink (and ``/etc/passwd`` a file) on the server's disk: only
    names of files uploaded with the model are ever resolved, so neither is followed."""
    (tmp_path / "link.bin").symlink_to("/etc/passwd")
    data = external_initializer_model(location).SerializeToString()
    hostile(lambda: client.upload_model(data), grpc.StatusCode.INVALID_ARGUMENT, "'w'", repr(location))
    assert runtime_spy == []


@pytest.mark.parametrize(
    ("offset", "length", "mention"),
    [
        pytest.param(0, 2**50, str(2**50), id="length-2^50"),
        pytest.param(WEIGHT_BYTES + 8, WEIGHT_BYTES, "does not lie inside", id="offset-past-end"),
        pytest.param(0, WEIGHT_BYTES - 4, "need 432 bytes", id="short-length"),
    ],
)
def test_external_extent_outside_the_side_file(
    client: Client,
    hostile: Callable[..., ConvscopeError],
    runtime_spy: list[str],  # noqa: F811 (a fixture imported by name; the formatter keeps this comment on its line)
    offset: int,
    length: int,
    mention: str,
) -> None:
    data = _external_at(offset, length).SerializeToString()
    weights = np.zeros(WEIGHT_BYTES // 4, np.float32).tobytes()
    hostile(lambda: client.upload_model(data, side_files={"w.bin": weights}), grpc.StatusCode.INVALID_ARGUMENT, "'w'", mention)
    assert runtime_spy == []


def test_external_data_inside_the_side_file_loads(client: Client) -> None:
    weights = np.random.default_rng(2).standard_normal(WEIGHT_BYTES // 4 + 2).astype(np.float32)
    info = client.upload_model(_external_at(8, WEIGHT_BYTES).SerializeToString(), side_files={"w.bin": weights.tobytes()})
    assert info.id in {model.id for model in client.list_models()}
    client.delete_model(info.id)


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_side_file_that_is_a_link_is_refused(tmp_path: Path, link: str) -> None:
    """Uploads write side files themselves, so a link can only appear by tampering on disk:
    onnxruntime would follow even a hard link out of the folder, so the check refuses both."""
    outside = tmp_path / "secret.bin"
    outside.write_bytes(b"\0" * WEIGHT_BYTES)
    folder = tmp_path / "upload"
    folder.mkdir()
    (folder / "w.bin").symlink_to(outside) if link == "symlink" else os.link(outside, folder / "w.bin")
    with pytest.raises(InvalidModel, match="not a plain file"):
        check_external_extents(_external_at(0, WEIGHT_BYTES), folder)


def test_model_at_the_node_limit_loads(client: Client) -> None:
    model = onnx.load_from_string(_identity_chain(50))
    info = client.upload_model(model.SerializeToString())
    x = np.random.default_rng(4).random((1, 3, 8, 8), dtype=np.float32)
    np.testing.assert_array_equal(client.activations(info.id, x, layers=["y"])["y"], x)
    client.delete_model(info.id)
