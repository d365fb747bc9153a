"""The model store: survives restarts, deduplicates, leaves nothing behind, handles side files
and the ways exporters hold weights."""

from __future__ import annotations

import json
import threading
import time
import types
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from convscope.core import Convscope
from convscope.errors import NotFound
from convscope.model.store import ModelStore
from convscope.rpc.server import RunningServer
from convscope_client import Client, ConvscopeError
from convscope_client._proto import convscope_pb2 as pb
from convscope_client._proto import convscope_pb2_grpc as pb_grpc
from tests.conftest import BUNDLED_MODEL, start_server

RNG = np.random.default_rng(11)
# How long to wait for the server to notice something (a deadline for polling, not a timing assertion).
NOTICE_SECONDS = 30


def conv_model(
    tag: str, *, weights_in_constant: bool = False, initializers_as_inputs: bool = False
) -> tuple[onnx.ModelProto, np.ndarray]:
    """x[N,3,8,8] → Conv(4, 3×3) + bias → Relu → GlobalAveragePool → Flatten; returns (model, conv weight).

    ``weights_in_constant``: weight and bias come from ``Constant`` nodes (PaddlePaddle's export).
    ``initializers_as_inputs``: initializers also listed in ``graph.input``, ahead of the real
    input (pre-IR-4 exporters), which onnxruntime treats as overridable inputs.
    """
    weight = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
    bias = RNG.standard_normal(4).astype(np.float32)
    nodes = []
    initializers = []
    if weights_in_constant:
        nodes += [
            helper.make_node("Constant", [], ["w"], name="w_const", value=numpy_helper.from_array(weight, "w")),
            helper.make_node("Constant", [], ["b"], name="b_const", value=numpy_helper.from_array(bias, "b")),
        ]
    else:
        initializers += [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")]
    nodes += [
        helper.make_node("Conv", ["x", "w", "b"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["y"], name="flatten"),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])]
    if initializers_as_inputs:
        inputs[:0] = [helper.make_tensor_value_info(i.name, i.data_type, list(i.dims)) for i in initializers]
    graph = helper.make_graph(
        nodes,
        f"conv_{tag}",
        inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model, weight


def ort_reference(model: onnx.ModelProto | str, x: np.ndarray, tensors: list[str]) -> dict[str, np.ndarray]:
    """onnxruntime on the model as given (a path keeps its side files), ``tensors`` added as outputs."""
    proto = onnx.load(model, load_external_data=True) if isinstance(model, str) else model
    exposed = onnx.ModelProto()
    exposed.CopyFrom(proto)
    present = {o.name for o in exposed.graph.output}
    exposed.graph.output.extend(onnx.ValueInfoProto(name=t) for t in tensors if t not in present)
    session = ort.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = next(i.name for i in session.get_inputs())
    return dict(zip(tensors, session.run(tensors, {feed: x})))


def assert_activations_match(client: Client, model_id: str, reference: onnx.ModelProto | str, x: np.ndarray) -> None:
    tensors = [layer.tensor for layer in client.get_model(model_id).layers]
    got = client.activations(model_id, x)
    expected = ort_reference(reference, x, tensors)
    assert sorted(got) == sorted(expected)
    for name in tensors:
        scale = float(np.abs(expected[name]).max()) or 1.0
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-5 * scale, err_msg=name)


def wait_until(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + NOTICE_SECONDS
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def tmp_server(tmp_path: Path) -> Iterator[Callable[[], tuple[RunningServer, Client]]]:
    """Starts servers on one tmp store; stops whatever is still running at the end."""
    started: list[tuple[RunningServer, Client]] = []

    def start() -> tuple[RunningServer, Client]:
        running = start_server(tmp_path / "store")
        started.append((running, Client(f"127.0.0.1:{running.port}", timeout=60)))
        return started[-1]

    yield start
    for running, client in started:
        client.close()
        running.stop(grace=0)


# ------------------------------------------------------------------------------ (a) restarts


@pytest.mark.parametrize("side_file", [False, True], ids=["one-file", "side-file"])
def test_models_survive_a_restart(
    tmp_server: Callable[[], tuple[RunningServer, Client]], tmp_path: Path, side_file: bool
) -> None:
    model, _ = conv_model(f"restart_{side_file}")
    path = tmp_path / "upload" / "net.onnx"
    path.parent.mkdir()
    onnx.save(model, str(path), save_as_external_data=side_file, location="net.onnx.data", size_threshold=0)
    assert (tmp_path / "upload" / "net.onnx.data").exists() == side_file
    x = RNG.random((2, 3, 8, 8), dtype=np.float32)

    first, client = tmp_server()
    model_id = client.upload_model(path).id
    info = client.get_model(model_id)
    values = client.activations(model_id, x)
    listed = client.list_models()
    client.close()
    first.stop(grace=1)

    second, client = tmp_server()
    assert client.list_models() == listed
    assert client.get_model(model_id) == info
    again = client.activations(model_id, x)
    assert sorted(again) == sorted(values) == sorted(layer.tensor for layer in info.layers)
    for name, value in values.items():
        np.testing.assert_array_equal(again[name], value, err_msg=name)
    assert_activations_match(client, model_id, str(path), x)


# ------------------------------------------------------------------------------ (b) dedup


def test_same_bytes_twice_give_one_model(client: Client, server: RunningServer, bundled_model_id: str) -> None:
    root = server.core.store.root
    again = client.upload_model(BUNDLED_MODEL.read_bytes(), name="another name")
    assert again.id == bundled_model_id
    listed = [info.id for info in client.list_models()]
    assert listed.count(bundled_model_id) == 1
    assert sorted(p.name for p in (root / "models").iterdir()) == sorted(listed)
    assert sorted(p.name for p in (root / "models" / bundled_model_id).iterdir()) == ["model.onnx"]
    assert list((root / "incoming").iterdir()) == []


def test_same_model_with_another_side_file_is_another_model(client: Client) -> None:
    """The id covers the side files: same model.onnx, different weights → different ids."""
    model, _ = conv_model("side_dedup")
    ids = set()
    for seed in (1, 2):
        weights = np.random.default_rng(seed).standard_normal((4, 3, 3, 3)).astype(np.float32)
        external = onnx.ModelProto()
        external.CopyFrom(model)
        target = next(t for t in external.graph.initializer if t.name == "w")
        target.ClearField("raw_data")
        target.data_location = TensorProto.EXTERNAL
        for key, value in (("location", "w.bin"), ("offset", "0"), ("length", str(weights.nbytes))):
            entry = target.external_data.add()
            entry.key, entry.value = key, value
        info = client.upload_model(external.SerializeToString(), side_files={"w.bin": weights.tobytes()})
        filters = client.filters(info.id, "conv")
        np.testing.assert_array_equal(filters.weights, weights)
        ids.add(info.id)
    assert len(ids) == 2
    for model_id in ids:
        client.delete_model(model_id)


# ------------------------------------------------------------------------------ (c) interrupted uploads


def test_cancelled_upload_leaves_nothing(client: Client, server: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    incoming = server.core.store.root / "incoming"
    before_models = sorted(info.id for info in client.list_models())
    before_incoming = set(incoming.iterdir())
    release = threading.Event()

    def requests() -> Iterator[pb.UploadModelRequest]:
        yield pb.UploadModelRequest(header=pb.UploadHeader(name="interrupted"))
        data = BUNDLED_MODEL.read_bytes()
        for start in range(0, 3 << 20, 1 << 20):
            yield pb.UploadModelRequest(chunk=pb.FileChunk(file="", data=data[start : start + (1 << 20)]))
        release.wait(NOTICE_SECONDS)

    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        future = pb_grpc.ConvscopeStub(channel).UploadModel.future(requests(), timeout=120)
        try:
            assert wait_until(lambda: set(incoming.iterdir()) - before_incoming), "the upload never started"
            started = (set(incoming.iterdir()) - before_incoming).pop()
            assert wait_until(lambda: any(p.stat().st_size > 0 for p in started.iterdir())), "no chunk arrived"
            future.cancel()
        finally:
            release.set()
        assert future.cancelled()
        assert wait_until(lambda: not started.exists()), "the cancelled upload's folder was not removed"
    assert set(incoming.iterdir()) == before_incoming
    assert sorted(info.id for info in client.list_models()) == before_models
    # A client going away is not a server fault: no "internal error" in the server log.
    assert not [r for r in caplog.records if r.name == "convscope.rpc.errors"], caplog.text


def test_crash_leftovers_are_swept_on_open(tmp_path: Path) -> None:
    root = tmp_path / "store"
    core = Convscope(root)
    model, _ = conv_model("sweep")
    record = core.upload([("", model.SerializeToString())])
    core.close()
    # What a crash leaves: a model folder moved into place without its index row, a half upload.
    orphan = root / "models" / ("f" * 64)
    orphan.mkdir()
    (orphan / "model.onnx").write_bytes(b"half")
    half_upload = root / "incoming" / "0123abcd"
    half_upload.mkdir()
    (half_upload / "model.onnx").write_bytes(b"half")

    store = ModelStore(root)
    try:
        assert not orphan.exists()
        assert list((root / "incoming").iterdir()) == []
        assert [r.id for r in store.list()] == [record.id]
        assert sorted(p.name for p in (root / "models").iterdir()) == [record.id]
        assert store.get(record.id) == record
        assert onnx.load(str(store.folder(record.id) / "model.onnx")).graph.name == "conv_sweep"
    finally:
        store.close()


# ------------------------------------------------------------------------------ (d) side files from the dynamo exporter


def test_dynamo_export_with_side_file(client: Client, server: RunningServer, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from tests.nets import reference_net

    net = reference_net("DepthwiseReLU6Net")
    path = tmp_path / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            net,
            (torch.zeros(1, 3, 32, 32),),
            dynamo=True,
            input_names=["input"],
            output_names=["output"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            verbose=False,
        )
        program.save(path, external_data=True)
    side = tmp_path / "model.onnx.data"
    assert side.is_file()
    on_disk = onnx.load(str(path), load_external_data=False)
    assert any(t.data_location == TensorProto.EXTERNAL for t in on_disk.graph.initializer)

    info = client.upload_model(path)  # sends model.onnx.data along
    folder = server.core.store.folder(info.id)
    assert sorted(p.name for p in folder.iterdir()) == ["data-0.bin", "model.onnx"]
    assert (folder / "data-0.bin").read_bytes() == side.read_bytes()
    stored = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    locations = {
        entry.value
        for tensor in stored.graph.initializer
        if tensor.data_location == TensorProto.EXTERNAL
        for entry in tensor.external_data
        if entry.key == "location"
    }
    assert locations == {"data-0.bin"}

    x = np.random.default_rng(3).standard_normal((2, 3, 32, 32)).astype(np.float32)
    assert_activations_match(client, info.id, str(path), x)
    reference = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["output"], {"input": x})[0]
    served = client.activations(info.id, x, layers=["output"])["output"]
    np.testing.assert_allclose(served, reference, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------ (e) delete


def test_delete_removes_row_and_folder(client: Client, server: RunningServer) -> None:
    model, _ = conv_model("delete")
    data = model.SerializeToString()
    x = RNG.random((1, 3, 8, 8), dtype=np.float32)
    model_id = client.upload_model(data).id
    folder = server.core.store.folder(model_id)
    before = client.activations(model_id, x)
    assert folder.is_dir()

    client.delete_model(model_id)
    assert model_id not in [info.id for info in client.list_models()]
    assert not folder.exists()
    for call in (
        lambda: client.get_model(model_id),
        lambda: client.activations(model_id, x),
        lambda: client.delete_model(model_id),
    ):
        with pytest.raises(ConvscopeError) as caught:
            call()
        assert caught.value.code == grpc.StatusCode.NOT_FOUND
        assert model_id in caught.value.message

    # The same bytes can come back, and nothing stale from the deleted copy is served.
    assert client.upload_model(data).id == model_id
    again = client.activations(model_id, x)
    for name, value in before.items():
        np.testing.assert_array_equal(again[name], value)
    client.delete_model(model_id)


def test_a_delete_during_a_lookup_leaves_no_stale_record(tmp_server: Callable[[], tuple[RunningServer, Client]]) -> None:
    """A lookup that misses the record cache reads the index; a delete arriving meanwhile must
    not let that read put the deleted record back into the cache."""
    running, client = tmp_server()
    model_id = client.upload_model(conv_model("delete_race")[0].SerializeToString()).id
    client.close()
    running.stop(grace=1)
    store = ModelStore(running.core.store.root)  # a fresh cache: the next lookup reads the index
    index = store._db
    deleter = threading.Thread(target=store.delete, args=(model_id,))

    class DeleteAfterRead:
        """The index, with a delete started (and given time to finish) right after the first
        read of a record: between the lookup's read and its caching."""

        def execute(self, sql: str, *args: object) -> object:
            result = index.execute(sql, *args)
            if not sql.startswith("SELECT record") or deleter.ident is not None:
                return result
            row = result.fetchone()
            deleter.start()
            deleter.join(timeout=0.5)
            return types.SimpleNamespace(fetchone=lambda: row)

    store._db = DeleteAfterRead()  # type: ignore[assignment]
    try:
        store._find(model_id)
        deleter.join(timeout=30)
        assert not deleter.is_alive()
        with pytest.raises(NotFound):
            store.get(model_id)
    finally:
        store._db = index
        store.close()


# ------------------------------------------------------------------------------ (f) how exporters hold weights


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"weights_in_constant": True}, id="constant-nodes"),
        pytest.param({"initializers_as_inputs": True}, id="initializers-in-graph-input"),
    ],
)
def test_weight_holding_styles(client: Client, options: dict[str, bool]) -> None:
    model, weight = conv_model(f"style_{sorted(options)}", **options)
    info = client.upload_model(model.SerializeToString())
    assert [(i.name, i.shape) for i in info.inputs] == [("x", (-1, 3, 8, 8))]
    assert info.dynamic_batch
    assert [layer.tensor for layer in info.layers] == ["conv", "relu", "pool", "y"]
    assert [layer.shape for layer in info.layers] == [(1, 4, 8, 8), (1, 4, 8, 8), (1, 4, 1, 1), (1, 4)]
    x = RNG.random((3, 3, 8, 8), dtype=np.float32)
    assert_activations_match(client, info.id, model, x)
    filters = client.filters(info.id, "conv")
    assert filters.node == "conv"
    np.testing.assert_array_equal(filters.weights, weight)
    client.delete_model(info.id)


def test_reupload_with_new_metadata_updates_the_record(client):
    from tests.conftest import BUNDLED_MODEL

    first = client.upload_model(BUNDLED_MODEL, name="first")
    second = client.upload_model(BUNDLED_MODEL, name="renamed", labels=[f"class {i}" for i in range(1000)])
    assert second.id == first.id
    assert second.name == "renamed" and second.labels[0] == "class 0"
    assert client.get_model(first.id).labels[0] == "class 0"
    restored = client.upload_model(BUNDLED_MODEL, name="first", labels=list(first.labels))
    assert restored.labels == first.labels


# ------------------------------------------------------------------------------ (g) ids by prefix


def test_a_unique_prefix_names_a_model_and_an_ambiguous_one_names_the_candidates(
    tmp_server: Callable[[], tuple[RunningServer, Client]],
) -> None:
    running, client = tmp_server()
    model_id = client.upload_model(conv_model("prefix")[0].SerializeToString()).id
    assert client.get_model(model_id[:12]).id == model_id
    client.delete_model(model_id[:8])
    assert model_id not in [info.id for info in client.list_models()]

    # Two ids sharing their first 8 characters (sha256 makes that rare, not impossible): rows
    # copied under crafted ids, as a second upload would write them.
    model_id = client.upload_model(conv_model("prefix")[0].SerializeToString()).id
    store = running.core.store
    record = store.get(model_id).to_json()
    twins = ["abcdef01" + "1" * 56, "abcdef01" + "2" * 56]
    for twin in twins:
        store._db.execute(
            "INSERT INTO models (id, name, record) VALUES (?, ?, ?)", (twin, "twin", json.dumps({**record, "id": twin}))
        )
    with pytest.raises(ConvscopeError) as caught:
        client.get_model("abcdef01")
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "ambiguous" in caught.value.message and twins[0][:16] in caught.value.message and twins[1][:16] in caught.value.message
    assert client.get_model("abcdef012").id == twins[1]
    with pytest.raises(ConvscopeError) as caught:
        client.get_model(model_id[:7])  # under 8 characters: no prefix match
    assert caught.value.code == grpc.StatusCode.NOT_FOUND
