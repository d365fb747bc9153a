"""The pieces of dataset jobs without gRPC: data roots, decoding, the prefetching pipeline,
the top-k accumulator, grid snapping, the default embedding layer, and the job pass."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from convscope.core import Convscope
from convscope.data.prefetch import Prefetcher
from convscope.data.streams import (
    DataRoots,
    DecodedBatch,
    Decoder,
    EncodedItem,
    PathItem,
    Sample,
    Skipped,
    TensorItem,
    UnreadableItem,
)
from convscope.errors import Cancelled, InvalidArgument, NotFound, PermissionDenied
from convscope.methods import dataset_jobs
from convscope.methods.embedding import code_layer
from convscope.methods.top_activations import TopActivations
from convscope.model.types import Preprocessing
from convscope.render.dataset_figures import snap_to_grid
from convscope.runtime.context import INFERENCE_WORKERS
from tests import digits
from tests.nets import exported


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("root")
    engine = Convscope(tmp_path_factory.mktemp("store"), data_roots=[root])
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def resnet(core):
    return core.upload([("", exported("ResNetStyle", "torchscript").SerializeToString())], name="resnet")


# ------------------------------------------------------------------------------ data roots


def test_data_roots_resolve_inside_and_refuse_outside(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "sub" / "a.png").write_bytes(b"x")
    (outside / "b.png").write_bytes(b"x")
    (root / "link").symlink_to(outside, target_is_directory=True)
    roots = DataRoots([root])
    assert roots.resolve("sub/a.png") == (root / "sub" / "a.png").resolve()
    assert roots.resolve(str(root / "sub")) == (root / "sub").resolve()
    for escaping in ("../outside/b.png", str(outside / "b.png"), "link/b.png", "link", "sub/../../outside", "/"):
        with pytest.raises(PermissionDenied):
            roots.resolve(escaping)
    with pytest.raises(NotFound):
        roots.resolve("sub/missing.png")
    with pytest.raises(PermissionDenied):
        DataRoots([]).resolve("sub/a.png")
    count, items = roots.folder("sub")
    assert count == 1 and [item.path for item in items] == ["sub/a.png"]


def test_folder_walk_is_sorted_and_lazy(tmp_path):
    for name in ("b/2.png", "a/1.png", "c.png", "a/0.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    count, items = DataRoots([tmp_path]).folder(str(tmp_path))
    assert count == 4
    assert [Path(item.path).relative_to(tmp_path).as_posix() for item in items] == ["c.png", "a/0.png", "a/1.png", "b/2.png"]


# ------------------------------------------------------------------------------ decoding


def test_decoder_skips_what_it_cannot_read_and_splits_batches(resnet, tmp_path):
    decoder = Decoder(resnet, DataRoots([tmp_path]), pictures=True)
    good = np.random.default_rng(0).standard_normal((3, 32, 32)).astype(np.float32)
    [sample] = decoder(TensorItem(good), 0)
    assert isinstance(sample, Sample) and sample.value.shape == (3, 32, 32) and sample.picture.shape == (32, 32, 3)
    batch = decoder(TensorItem(np.stack([good, good, good]), name="b"), 5)
    assert [s.index for s in batch] == [5, 6, 7] and [s.ref for s in batch] == ["b[0]", "b[1]", "b[2]"]
    for item in (
        EncodedItem(b"not an image"),
        TensorItem(good.astype(np.float64)),
        TensorItem(good[:2]),
        UnreadableItem("bad tensor message"),
        PathItem("missing.png"),
    ):
        [entry] = decoder(item, 9)
        assert isinstance(entry, Skipped) and entry.index == 9 and entry.reason
    with pytest.raises(PermissionDenied):
        decoder(PathItem("../elsewhere.png"), 0)


# ------------------------------------------------------------------------------ prefetch


def _decode_identity(item, index):
    return [Sample(index, index, np.full(1, index), None)]


def test_prefetcher_keeps_order_and_bounded_memory():
    pulled = 0

    def items():
        nonlocal pulled
        for i in itertools.count():
            pulled += 1
            yield i

    stream = Prefetcher(items(), _decode_identity, workers=2, depth=8)
    iterator = iter(stream)
    first = [next(iterator).index for _ in range(20)]
    assert first == list(range(20))
    threading.Event().wait(0.2)
    assert pulled <= 20 + 8 + 2  # consumed + queue + one waiting in the feeder's hands (+ slack)
    stream.close()


def test_prefetcher_raises_stream_errors_and_stops_on_cancel():
    def broken():
        yield 1
        raise PermissionDenied("no")

    with pytest.raises(PermissionDenied):
        list(Prefetcher(broken(), _decode_identity))

    cancelled = threading.Event()
    blocked = threading.Event()

    def stalls():
        yield 1
        blocked.wait(5)  # a client that sends nothing more
        yield 2

    stream = Prefetcher(stalls(), _decode_identity, cancelled=cancelled)
    iterator = iter(stream)
    assert next(iterator).index == 0
    cancelled.set()
    with pytest.raises(Cancelled):
        next(iterator)
    blocked.set()


# ------------------------------------------------------------------------------ accumulators


def test_top_k_breaks_ties_by_stream_order_and_keeps_k(resnet):
    layer = next(l.tensor for l in resnet.layers if l.op_type == "Relu")
    top = TopActivations(resnet, layer, channels=[0, 1], k=3, render=False)
    channels = resnet.layer(layer).shape[1]
    values = np.zeros((4, channels, 32, 32), np.float32)
    values[:, 0, 1, 2] = [1, 5, 5, 2]  # a tie between images 1 and 2
    values[:, 1, 3, 3] = [7, 0, 0, 0]
    samples = [Sample(i, f"img{i}", np.zeros(1), None) for i in range(4)]
    top.add(samples[:2], {layer: values[:2]})
    top.add(samples[2:], {layer: values[2:]})
    result = {row.channel: row.hits for row in top.result().rows}
    assert [(h.image, h.value, h.location) for h in result[0]] == [("img1", 5, (1, 2)), ("img2", 5, (1, 2)), ("img3", 2, (1, 2))]
    assert [h.image for h in result[1]] == ["img0", "img1", "img2"]  # zeros tie: stream order
    with pytest.raises(InvalidArgument):
        TopActivations(resnet, layer, channels=[channels], k=3)
    with pytest.raises(InvalidArgument):
        TopActivations(resnet, layer, k=0)
    with pytest.raises(InvalidArgument):
        TopActivations(resnet, layer, directions=np.zeros(channels))


def test_snap_to_grid_is_a_bijection_that_keeps_a_grid_in_place():
    side = 5
    rows, columns = np.divmod(np.arange(side * side), side)
    coords = np.stack([columns, side - 1 - rows], axis=1).astype(np.float32)  # already a grid, y up
    permutation = np.random.default_rng(0).permutation(len(coords))
    cells = snap_to_grid(coords[permutation], side)
    assert sorted(cells) == list(range(side * side))
    assert np.array_equal(cells, np.arange(side * side)[permutation])
    fewer = snap_to_grid(np.random.default_rng(1).random((7, 2)), 3)
    assert len(set(fewer.tolist())) == 7 and fewer.max() < 9


@pytest.mark.parametrize("name", ["ResNetStyle", "SqueezeNetStyle", "MobileNetV3Style"])
@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_the_code_layer_feeds_the_classifier(core, name, exporter):
    model = exported(name, exporter)
    record = core.upload([("", model.SerializeToString())], name=name)
    layer = code_layer(core.runtime.base_graph(record.id, dynamic_batch=record.dynamic_batch), record)
    info = record.layer(layer)
    consumers = [n for n in model.graph.node if layer in n.input]
    assert any(n.op_type in ("Gemm", "MatMul", "Conv") for n in consumers), (layer, [n.op_type for n in consumers])
    assert info.shape[0] == 1


# ------------------------------------------------------------------------------ the pass


def test_job_events_come_in_order_and_cancel_between_batches(core):
    data, _ = digits.trained_model()
    record = core.upload([("", data)], name="digits", preprocessing=Preprocessing.from_dict(digits.PREPROCESSING))
    images = [EncodedItem(digits.png(image)) for image in digits.digits()[2][:70]]
    events = list(
        core.dataset_job(record.id, dataset_jobs.DeadFiltersJob(), items=iter(images + [EncodedItem(b"?")]), expected=71)
    )
    kinds = [type(event).__name__ for event in events]
    assert kinds[-1] == "DeadFiltersResult" and kinds[-2] == "Progress" and "Skipped" in kinds
    assert events[-2].done == 70 and events[-2].skipped == 1 and events[-1].samples == 70

    cancelled = threading.Event()
    job = core.dataset_job(record.id, dataset_jobs.DeadFiltersJob(), items=itertools.cycle(images), cancelled=cancelled)
    first = next(job)
    assert isinstance(first, dataset_jobs.Progress)
    cancelled.set()
    with pytest.raises(Cancelled):
        next(job)


class _SlowOddBatches:
    """A context whose forward finishes batches out of order (odd ones take longer)."""

    batch_budget_bytes = 1 << 30
    runtime = SimpleNamespace(concurrent_runs=INFERENCE_WORKERS)  # runs side by side, as in process

    def forward(self, record, batch, tensors, **options):  # type: ignore[no-untyped-def]
        if int(batch[0, 0]) // 4 % 2:
            time.sleep(0.05)
        return {"t": batch.copy()}


class _Layer:
    sample_bytes = 4


class _Record:
    layers = (_Layer(),)

    def layer(self, name):  # type: ignore[no-untyped-def]
        return _Layer()


class _Arrivals:
    tensors = ("t",)
    needs_pictures = False

    def __init__(self) -> None:
        self.order: list[int] = []

    def reduce(self, values):  # type: ignore[no-untyped-def]
        return values

    def add_reduced(self, samples, reduced):  # type: ignore[no-untyped-def]
        assert [s.index for s in samples] == [int(v[0]) for v in reduced["t"]]
        self.order.extend(s.index for s in samples)

    def result(self):  # type: ignore[no-untyped-def]
        return self.order


def test_batches_run_side_by_side_but_reach_the_accumulator_in_stream_order():
    stream = [Sample(i, i, np.full(1, i, np.float32), None) for i in range(40)]
    arrivals = _Arrivals()
    *events, order = dataset_jobs.run_job(_SlowOddBatches(), _Record(), arrivals, iter(stream), total=40, batch_size=4)
    assert order == list(range(40))
    assert events[-1].done == 40


def test_job_batches_leave_room_for_the_runs_working_memory():
    """Batches shrink where the model's largest tensors, three at once, would pass a run's share
    of the budget, however little the job fetches."""

    class Wide(_Layer):
        sample_bytes = (1 << 30) // dataset_jobs.INFERENCE_WORKERS // (dataset_jobs.WORKING_TENSORS * 8)

    class WideRecord(_Record):
        layers = (_Layer(), Wide())

    assert dataset_jobs.job_batch_size(_SlowOddBatches(), _Record(), ["t"]) == dataset_jobs.JOB_BATCH
    assert dataset_jobs.job_batch_size(_SlowOddBatches(), WideRecord(), ["t"]) == 8


def test_decoded_batches_pass_through_cut_to_the_batch_size_in_stream_order():
    """A decode task's ready batch keeps its rows; samples pending before it go first."""
    sample = lambda i: Sample(i, i, np.full(1, i, np.float32), None)
    stream = [
        sample(0),
        sample(1),
        Skipped(2, 2, "unreadable"),
        DecodedBatch([sample(i) for i in range(3, 13)], np.arange(3, 13, dtype=np.float32)[:, None]),
        sample(13),
    ]
    arrivals = _Arrivals()
    events = list(dataset_jobs.run_job(_SlowOddBatches(), _Record(), arrivals, iter(stream), total=14, batch_size=4))
    assert [e.index for e in events if isinstance(e, Skipped)] == [2]
    assert events[-1] == [0, 1, *range(3, 14)]  # _Arrivals checks each batch's rows against its samples
    assert events[-2].done == 13


def test_images_and_tensors_mix_in_one_job_with_the_numbers_of_either_alone(core):
    """Images (preprocessed by the server) and tensors (used as given) can share a stream: the
    same samples give the same top activations whichever way they came."""
    data, _ = digits.trained_model()
    record = core.upload([("", data)], name="digits", preprocessing=Preprocessing.from_dict(digits.PREPROCESSING))
    pictures = digits.digits()[2][:40]
    images = [EncodedItem(digits.png(image)) for image in pictures]
    tensors = [TensorItem(sample) for sample in digits.tensors(pictures)]
    mixed = [item for pair in zip(images[:20], tensors[20:]) for item in pair]
    layer = code_layer(core.runtime.base_graph(record.id, dynamic_batch=record.dynamic_batch), record)
    job = dataset_jobs.TopActivationsJob(layer=layer, k=3, render=False)

    def top_values(items):
        *_, progress, result = core.dataset_job(record.id, job, items=iter(items))
        assert progress.done == 40 and progress.skipped == 0
        return [sorted(hit.value for hit in row.hits) for row in result.rows]

    together = top_values(mixed)
    assert together == top_values(images[:20] + tensors[20:]) == top_values(tensors)


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},
        {"channel_order": "BGR", "mean": (103.9, 116.8, 123.7), "scale": 1.0},
        {"layout": "NHWC", "std": (0.3, 0.2, 0.1)},
        {"grayscale": True, "mean": (0.5,), "std": (0.25,)},
    ],
)
def test_in_place_normalization_is_the_plain_float32_formula(spec):
    from convscope.model.preprocessing import normalize

    picture = np.random.default_rng(0).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    preprocessing = Preprocessing.from_dict(spec)
    pixels = picture[..., :1] if preprocessing.grayscale else picture
    pixels = pixels[..., ::-1] if preprocessing.channel_order == "BGR" else pixels
    values = pixels.astype(np.float32) * np.float32(preprocessing.scale)
    if preprocessing.mean:
        values = values - np.asarray(preprocessing.mean, np.float32)
    if preprocessing.std:
        values = values / np.asarray(preprocessing.std, np.float32)
    expected = values.transpose(2, 0, 1) if preprocessing.layout == "NCHW" else values
    got = normalize(picture, preprocessing)
    assert got.dtype == np.float32 and np.array_equal(got, expected) and got.flags.c_contiguous


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize(
    "spec", [{"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}, {"layout": "NHWC"}, {"grayscale": True}]
)
def test_a_sample_written_into_its_batch_is_the_sample_normalized_ahead(spec, dtype):
    from convscope.model.preprocessing import ImageSample, batch_of

    rng = np.random.default_rng(1)
    images = [
        ImageSample(rng.integers(0, 256, (9, 11, 3), dtype=np.uint8), Preprocessing.from_dict(spec), np.dtype(dtype))
        for _ in range(3)
    ]
    tensor = images[2].value() + 1  # a raw tensor item in the same batch is copied as it is
    batch = batch_of([images[0], images[1], tensor])
    assert batch.dtype == dtype and batch.shape == (3, *images[0].shape) == (3, *images[0].value().shape)
    assert np.array_equal(batch[0], images[0].value()) and np.array_equal(batch[1], images[1].value())
    assert np.array_equal(batch[2], tensor)
