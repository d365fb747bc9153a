"""Dataset jobs end to end: a real server with a data root, the real client, scikit-learn's digits
and a small CNN trained on them; onnxruntime on the unmodified model is the oracle."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from sklearn.neighbors import KNeighborsClassifier

from convscope.graph.expose import expose
from convscope.rpc.server import RunningServer
from convscope_client import Client, ConvscopeError, Progress, ServerFolder, ServerPath
from convscope_client import cli as client_cli
from tests import digits
from tests.conftest import start_server


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    _, _, test_x, _ = digits.digits()
    digits.write_pngs(root / "digits", test_x)
    return root


@pytest.fixture(scope="module")
def job_server(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("store"), data_roots=(data_root,))
    yield running
    running.stop(grace=1)


@pytest.fixture(scope="module")
def jobs(job_server: RunningServer) -> Iterator[Client]:
    with Client(f"127.0.0.1:{job_server.port}", timeout=300) as connected:
        yield connected


@pytest.fixture(scope="module")
def model(jobs: Client):
    data, accuracy = digits.trained_model()
    assert accuracy > 0.9, f"the fixture CNN only reaches {accuracy:.3f} on held-out digits"
    info = jobs.upload_model(data, name="digits", preprocessing=digits.PREPROCESSING)
    relus = [layer for layer in info.layers if layer.op_type == "Relu"]
    return {
        "onnx": onnx.load_from_string(data),
        "info": info,
        "last_conv": relus[2].tensor,  # the third Relu: after the last conv layer
        "code": relus[3].tensor,  # fc-relu: the penultimate codes
    }


def _oracle(model_proto: onnx.ModelProto, tensor: str, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(expose(model_proto, [tensor]).SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run([tensor], {"input": x})[0]


def _brute_force_top(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per channel: the k (value, image, flat position) with the largest spatial maximum; ties → earlier image."""
    flat = values.reshape(values.shape[0], values.shape[1], -1)
    positions = flat.argmax(axis=2)
    scores = flat.max(axis=2)  # [N, C]
    images = np.arange(len(values))
    order = np.stack([np.lexsort((images, -scores[:, c]))[:k] for c in range(values.shape[1])])
    return np.take_along_axis(scores.T, order, 1), order, np.take_along_axis(positions.T, order, 1)


# ------------------------------------------------------------------------------ receptive fields


def test_layer_table_has_receptive_fields(model):
    info = model["info"]
    by_tensor = {layer.tensor: layer for layer in info.layers}
    last = by_tensor[model["last_conv"]].receptive_field
    # conv3 p1 → pool2 → conv3 p1 → pool2 → conv3 p1: size 3+1+4+2+8 = 18, stride 4, start −1−2−4
    assert last.stride == (4, 4) and last.size == (18, 18) and last.offset == (-7 + 17 / 2,) * 2
    assert not last.global_context
    assert by_tensor[model["code"]].receptive_field is None  # after the dense layer: not derivable


# ------------------------------------------------------------------------------ top activations


def test_top_k_equals_brute_force_with_onnxruntime(jobs, model):
    _, _, test_x, _ = digits.digits()
    images = [digits.png(image) for image in test_x]
    layer = model["last_conv"]
    result = jobs.top_activations(model["info"].id, images, layer=layer, k=5)
    expected_values, expected_images, expected_positions = _brute_force_top(
        _oracle(model["onnx"], layer, digits.tensors(test_x)), 5
    )
    rf = next(l for l in model["info"].layers if l.tensor == layer).receptive_field
    assert sorted(result) == list(range(32)) and result.images == len(images) and not result.skipped
    for channel, hits in result.items():
        got_values = np.array([hit.value for hit in hits], np.float32)
        np.testing.assert_allclose(got_values, expected_values[channel], rtol=1e-5, atol=1e-6)
        distinct = np.abs(np.diff(np.concatenate([expected_values[channel], [-np.inf]]))) > 1e-4
        for slot, hit in enumerate(hits):
            if distinct[slot] and (slot == 0 or distinct[slot - 1]):
                assert hit.image == expected_images[channel, slot]
                assert hit.location == divmod(int(expected_positions[channel, slot]), 4)
            y, x = hit.location
            centre = (rf.offset[0] + y * rf.stride[0], rf.offset[1] + x * rf.stride[1])
            half = ((rf.size[0] - 1) / 2, (rf.size[1] - 1) / 2)
            clipped = (
                max(0, round(centre[0] - half[0])),
                max(0, round(centre[1] - half[1])),
                min(16, round(centre[0] + half[0]) + 1),
                min(16, round(centre[1] + half[1]) + 1),
            )
            assert hit.box == clipped
        assert result.pngs[channel].startswith(b"\x89PNG")


def test_direction_ranks_by_projection(jobs, model):
    _, _, test_x, _ = digits.digits()
    layer = model["last_conv"]
    directions = np.random.default_rng(3).standard_normal((2, 32)).astype(np.float32)
    result = jobs.top_activations(model["info"].id, digits.tensors(test_x[:200]), layer=layer, k=4, direction=directions)
    values = _oracle(model["onnx"], layer, digits.tensors(test_x[:200]))
    unit = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    projected = np.einsum("nchw,dc->ndhw", values, unit)
    expected_values, expected_images, _ = _brute_force_top(projected, 4)
    assert sorted(result) == [0, 1]
    for row, hits in result.items():
        np.testing.assert_allclose([h.value for h in hits], expected_values[row], rtol=1e-4, atol=1e-5)
        assert [h.image for h in hits] == list(expected_images[row])


def test_folder_job_equals_streamed_job_and_tensors(jobs, model, data_root):
    layer, channels = model["last_conv"], [0, 5, 17]
    folder = jobs.top_activations(model["info"].id, ServerFolder("digits"), layer=layer, channels=channels, k=6)
    local = jobs.top_activations(model["info"].id, str(data_root / "digits"), layer=layer, channels=channels, k=6)
    _, _, test_x, _ = digits.digits()
    raw = jobs.top_activations(model["info"].id, digits.tensors(test_x), layer=layer, channels=channels, k=6, render=False)
    assert sorted(folder) == sorted(local) == sorted(raw) == channels
    for channel in channels:
        assert [Path(str(h.image)).name for h in folder[channel]] == [Path(str(h.image)).name for h in local[channel]]
        assert [f"{h.image:04d}.png" for h in raw[channel]] == [Path(str(h.image)).name for h in folder[channel]]
        assert str(folder[channel][0].image).startswith("digits/")
        for a, b, c in zip(folder[channel], local[channel], raw[channel]):
            assert a.value == b.value == c.value and a.location == b.location == c.location and a.box == b.box == c.box
    assert not raw.pngs and folder.pngs[0] == local.pngs[0]


def test_the_most_class_selective_unit_prefers_one_digit(jobs, model):
    train_x, train_y, _, test_y = digits.digits()
    layer = model["last_conv"]
    scores = _oracle(model["onnx"], layer, digits.tensors(train_x)).max(axis=(2, 3))  # [N, C]
    means = np.stack([scores[train_y == digit].mean(axis=0) for digit in range(10)])  # [10, C]
    best, rest = means.max(axis=0), (means.sum(axis=0) - means.max(axis=0)) / 9
    selectivity = (best - rest) / (best + rest + 1e-6)
    unit = int(np.argmax(selectivity))
    hits = jobs.top_activations(model["info"].id, ServerFolder("digits"), layer=layer, channels=[unit], k=9)[unit]
    labels = [int(test_y[int(Path(str(h.image)).stem)]) for h in hits]
    digit, count = Counter(labels).most_common(1)[0]
    assert count >= 7, f"unit {unit} (preferring {int(np.argmax(means[:, unit]))}): top-9 labels {labels}"
    assert digit == int(np.argmax(means[:, unit]))


# ------------------------------------------------------------------------------ embedding


def test_tsne_of_penultimate_codes_separates_the_digits(jobs, model, data_root):
    _, _, _, test_y = digits.digits()
    embedding = jobs.embedding(model["info"].id, ServerFolder("digits"), seed=0)
    assert embedding.layer == model["code"]  # the default: what feeds the classifier, after its ReLU
    assert embedding.coords.shape == (len(test_y), 2) and embedding.method == "tsne"
    labels = np.array([test_y[int(Path(str(image)).stem)] for image in embedding.images])
    rng = np.random.default_rng(0)
    held_out = rng.permutation(len(labels))[: len(labels) // 2]
    fit = np.setdiff1d(np.arange(len(labels)), held_out)
    knn = KNeighborsClassifier(5).fit(embedding.coords[fit], labels[fit])
    accuracy = knn.score(embedding.coords[held_out], labels[held_out])
    assert accuracy >= 0.9, f"k-NN accuracy in the t-SNE plane: {accuracy:.3f}"
    assert embedding.png.startswith(b"\x89PNG") and embedding.scatter_png.startswith(b"\x89PNG")


def test_pca_embedding_of_a_named_spatial_layer(jobs, model):
    _, _, test_x, _ = digits.digits()
    layer = model["last_conv"]
    embedding = jobs.embedding(model["info"].id, digits.tensors(test_x[:100]), layer=layer, method="pca", render=False)
    codes = _oracle(model["onnx"], layer, digits.tensors(test_x[:100])).mean(axis=(2, 3))
    centred = codes - codes.mean(axis=0)
    first = np.linalg.svd(centred, full_matrices=False)[2][0]
    # the first coordinate is the projection on the first principal axis (up to sign)
    np.testing.assert_allclose(np.abs(embedding.coords[:, 0]), np.abs(centred @ first), rtol=1e-3, atol=1e-3)
    assert embedding.images == list(range(100)) and embedding.png == b""


# ------------------------------------------------------------------------------ dead filters


def test_dead_filters_over_a_dataset(jobs, model):
    _, _, test_x, _ = digits.digits()
    relus = [layer.tensor for layer in model["info"].layers if layer.op_type == "Relu"]
    fractions = jobs.dead_filters(model["info"].id, ServerFolder("digits"), layers=relus)
    assert fractions.samples == len(test_x) and sorted(fractions) == sorted(relus)
    for tensor in relus:
        values = _oracle(model["onnx"], tensor, digits.tensors(test_x))
        expected = (~values.reshape(len(values), values.shape[1], -1).any(axis=2)).mean(axis=0)
        np.testing.assert_allclose(fractions[tensor], expected, atol=1e-6)


# ------------------------------------------------------------------------------ refusals, skips


def test_paths_outside_the_data_roots_are_refused(jobs, model, data_root, tmp_path):
    outside = tmp_path / "outside"
    digits.write_pngs(outside, digits.digits()[2][:3])
    (data_root / "escape").symlink_to(outside, target_is_directory=True)
    job = {"layer": model["last_conv"], "k": 1}
    for dataset in (
        ServerFolder("../"),
        ServerFolder(str(outside)),
        ServerFolder("escape"),  # a symlink inside the root that points out
        ServerFolder("digits/../../"),
        [ServerPath("../outside/0000.png")],
        [ServerPath(str(outside / "0000.png"))],
    ):
        with pytest.raises(ConvscopeError) as caught:
            jobs.top_activations(model["info"].id, dataset, **job)
        assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED, dataset
        assert str(data_root) not in caught.value.message  # the server's own folders stay private


def test_a_server_without_data_roots_refuses_folders(client, model):
    info = client.upload_model(model["onnx"].SerializeToString(), name="digits", preprocessing=digits.PREPROCESSING)
    with pytest.raises(ConvscopeError) as caught:
        client.dead_filters(info.id, ServerFolder("digits"))
    assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED


def test_unreadable_items_are_reported_and_skipped(jobs, model, data_root, tmp_path):
    mixed = data_root / "mixed"
    digits.write_pngs(mixed, digits.digits()[2][:4])
    (mixed / "0001.png").write_bytes((mixed / "0001.png").read_bytes()[:30])  # truncated
    (mixed / "notes.txt").write_text("not an image")
    (mixed / "link-out.png").symlink_to(tmp_path / "secret.png")
    (tmp_path / "secret.png").write_bytes(digits.png(digits.digits()[2][0]))
    result = jobs.dead_filters(model["info"].id, ServerFolder("mixed"))
    assert result.samples == 3
    reasons = {Path(str(item.image)).name: item.reason for item in result.skipped}
    assert set(reasons) == {"0001.png", "link-out.png", "notes.txt"}
    assert "outside" in reasons["link-out.png"] and str(tmp_path) not in reasons["link-out.png"]

    stream = [
        digits.png(digits.digits()[2][0]),
        b"\x89PNG garbage",
        np.zeros((3, 16, 16), np.float32),
        ServerPath("mixed/0002.png"),
        ServerPath("mixed/missing.png"),
    ]
    result = jobs.top_activations(model["info"].id, stream, layer=model["last_conv"], channels=[0], k=3)
    assert result.images == 2 and sorted(str(item.image) for item in result.skipped) == ["1", "2", "mixed/missing.png"]
    assert {h.image for h in result[0]} == {0, "mixed/0002.png"}


# ------------------------------------------------------------------------------ cancellation


def _job_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(("convscope-feed", "convscope-decode", "convscope-batch"))]


def test_cancelling_a_job_stops_it_on_the_server(jobs, model):
    image = digits.png(digits.digits()[2][0])
    sent = 0

    def endless() -> Iterator[bytes]:
        nonlocal sent
        while True:
            sent += 1
            yield image

    seen: list[Progress] = []

    def stop_at_first(progress: Progress) -> bool:
        seen.append(progress)
        return False

    with pytest.raises(ConvscopeError) as caught:
        jobs.top_activations(model["info"].id, endless(), layer=model["last_conv"], progress=stop_at_first)
    assert caught.value.code == grpc.StatusCode.CANCELLED
    assert len(seen) == 1 and seen[0].done > 0 and seen[0].total is None
    # The server's feeder and decoders end (the job does not read the endless stream on).
    for _ in range(100):
        if not _job_threads():
            break
        threading.Event().wait(0.1)
    assert not _job_threads()
    stopped_at = sent
    threading.Event().wait(0.3)
    assert sent == stopped_at
    # and the server still serves jobs
    assert jobs.dead_filters(model["info"].id, [image]).samples == 1


def test_progress_reports_rate_and_eta_for_folders(jobs, model):
    seen: list[Progress] = []
    jobs.dead_filters(model["info"].id, ServerFolder("digits"), progress=seen.append)
    assert seen[0].total == digits.TEST_SIZE and seen[0].eta is not None and seen[0].rate > 0
    assert seen[-1].done == digits.TEST_SIZE and seen[-1].eta == 0


# ------------------------------------------------------------------------------ CLI


def test_cli_writes_pngs_and_numbers(job_server, model, data_root, tmp_path, capsys):
    address = f"127.0.0.1:{job_server.port}"
    out = tmp_path / "out"
    code = client_cli.main(
        [
            "--address",
            address,
            "top-activations",
            model["info"].id,
            "--server-folder",
            "digits",
            "--layer",
            model["last_conv"],
            "--channel",
            "3",
            "--channel",
            "4",
            "-k",
            "4",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    numbers = json.loads((out / "top_activations.json").read_text())
    assert sorted(numbers["hits"]) == ["3", "4"] and len(numbers["hits"]["3"]) == 4
    assert len(list(out.glob("top_*_c3.png"))) == 1
    assert "img/s" in capsys.readouterr().err  # the progress bar

    code = client_cli.main(
        [
            "--address",
            address,
            "dead-filters",
            model["info"].id,
            str(data_root / "digits" / "0000.png"),
            str(data_root / "digits" / "0001.png"),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert json.loads((out / "dead_filters.json").read_text())["samples"] == 2
    code = client_cli.main(
        ["--address", address, "embedding", model["info"].id, str(data_root / "digits"), "--method", "pca", "--out", str(out)]
    )
    assert (
        code == 0 and (out / "pca_grid.png").exists() and len(json.loads((out / "embedding.json").read_text())["coords"]) == 600
    )


def test_serve_command_takes_data_roots(tmp_path, data_root):
    import signal
    import subprocess
    import sys
    import time

    port_file = tmp_path / "port"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "convscope",
            "serve",
            "--port",
            "0",
            "--store",
            str(tmp_path / "store"),
            "--port-file",
            str(port_file),
            "--data-root",
            str(tmp_path / "elsewhere"),
            "--data-root",
            str(data_root),
            "--log-level",
            "WARNING",
        ],
    )
    try:
        for _ in range(600):  # the interpreter and onnxruntime start: up to a minute on a loaded machine
            if port_file.exists() and port_file.read_text().strip() or process.poll() is not None:
                break
            time.sleep(0.1)
        with Client(f"127.0.0.1:{int(port_file.read_text())}", timeout=120) as remote:
            data, _ = digits.trained_model()
            info = remote.upload_model(data, name="digits", preprocessing=digits.PREPROCESSING)
            assert remote.dead_filters(info.id, ServerFolder("digits")).samples == digits.TEST_SIZE
            with pytest.raises(ConvscopeError) as caught:
                remote.dead_filters(info.id, ServerFolder(str(tmp_path)))
            assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
