"""Dataset jobs on Ray equal the local engine's, on 2,000 images with a local Ray of 2 CPUs.

The digits CNN (tests/digits.py) over scikit-learn's 1,797 digits and 203 of them transposed,
read from a server folder by a Ray Data pipeline (methods/ray_data_jobs.py): top activations
(hits: images, values, locations, boxes, and the figures drawn from the pictures the workers
decoded), dead filters (zero counts per channel) and embedding codes (their PCA, bit-equal) from
``engine="ray"`` are the local engine's exactly; progress is reported, cancellation stops the
pipeline and releases its actors, unreadable files are skipped alike, the byte limit holds
across workers, and streamed images (decoded by the server) run on Ray actors too.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import convscope.core
from convscope.core import Convscope
from convscope.data.streams import EncodedItem, Skipped
from convscope.errors import Cancelled, ResourceExhausted
from convscope.limits import RequestLimits
from convscope.methods.dataset_jobs import DeadFiltersJob, EmbeddingJob, Progress, TopActivationsJob
from convscope.model.types import Preprocessing
from tests import digits

ray = pytest.importorskip("ray", reason="Ray is not installed: `bash scripts/bootstrap.sh test` installs it")

pytestmark = pytest.mark.slow  # each Ray job starts its actors (a process each): about a minute in all

IMAGES = 2000
CPUS = 2
MIXED_GOOD = 40
# How long a cancelled job's actors may take to give their CPUs back (they are killed, not drained).
RELEASE_SECONDS = 60


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``digits/``: 2,000 PNGs; ``mixed/``: a few digits beside a corrupt file, a link out of the
    data root, a FIFO and links to a file and a folder inside the root, each of which a job skips."""
    root = tmp_path_factory.mktemp("ray-data")
    train_x, _, test_x, _ = digits.digits()
    pixels = np.concatenate([train_x, test_x])
    digits.write_pngs(root / "digits", np.concatenate([pixels, pixels[: IMAGES - len(pixels)].transpose(0, 2, 1)]))
    digits.write_pngs(root / "mixed", pixels[:MIXED_GOOD])
    (root / "mixed" / "0_broken.png").write_bytes(b"not a png")
    outside = tmp_path_factory.mktemp("outside") / "secret.png"
    outside.write_bytes(digits.png(pixels[0]))
    (root / "mixed" / "1_link.png").symlink_to(outside)
    os.mkfifo(root / "mixed" / "2_fifo.png")
    (root / "mixed" / "3_inner_link.png").symlink_to(root / "digits" / "0000.png")
    (root / "mixed" / "4_folder_link").symlink_to(root / "digits", target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def core(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Convscope, str]]:
    # Ray kills workers when the whole node's memory is over 95 % used, which on a machine shared
    # with other jobs says nothing about this test: its workers take tens of MB.
    os.environ["RAY_memory_monitor_refresh_ms"] = "0"
    ray.init(num_cpus=CPUS, include_dashboard=False, object_store_memory=256 << 20, log_to_driver=False)
    convscope = Convscope(tmp_path_factory.mktemp("ray-store"), data_roots=[root], ray_workers=CPUS)
    record = convscope.upload(
        [("", digits.trained_model()[0])], name="digits", preprocessing=Preprocessing.from_dict(digits.PREPROCESSING)
    )
    yield convscope, record.id
    convscope.close()
    ray.shutdown()


@pytest.fixture
def ray_data_jobs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the folder jobs that went through the Ray Data pipeline (not the server's decoder)."""
    started: list[int] = []
    pipeline = convscope.core.run_folder_job

    def counted(*args: object, **kwargs: object) -> object:
        started.append(1)
        return pipeline(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(convscope.core, "run_folder_job", counted)
    return started


def _run(core: tuple[Convscope, str], job: object, engine: str, folder: str = "digits") -> tuple[object, list[object]]:
    convscope, model_id = core
    events = list(convscope.dataset_job(model_id, job, folder=folder, engine=engine))  # type: ignore[arg-type]
    return events[-1], events[:-1]


def _feature_map(core: tuple[Convscope, str]) -> str:
    convscope, model_id = core
    return next(layer.tensor for layer in convscope.model(model_id).layers if len(layer.shape) == 4 and layer.op_type == "Relu")


def _assert_dead_filters_equal(ours: object, theirs: object) -> None:
    assert ours.samples == theirs.samples  # type: ignore[attr-defined]
    for mine, local in zip(ours.reports, theirs.reports, strict=True):  # type: ignore[attr-defined]
        assert mine.tensor == local.tensor
        np.testing.assert_array_equal(mine.zero_fraction, local.zero_fraction)
        np.testing.assert_array_equal(mine.dead, local.dead)


def test_top_activations_on_ray_equal_local(core: tuple[Convscope, str], ray_data_jobs: list[int]) -> None:
    job = TopActivationsJob(layer=_feature_map(core), k=9, render=True)
    local, _ = _run(core, job, "local")
    remote, events = _run(core, job, "ray")
    assert ray_data_jobs == [1]
    progress = [event for event in events if isinstance(event, Progress)]
    assert progress[-1].done == IMAGES and progress[-1].total == IMAGES
    assert [p.done for p in progress] == sorted(p.done for p in progress)
    assert remote.rows == local.rows  # type: ignore[attr-defined]  # hits, values, boxes and each row's figure
    assert all(hit.box is not None for row in local.rows for hit in row.hits)  # type: ignore[attr-defined]
    assert all(row.png for row in local.rows)  # type: ignore[attr-defined]


def test_dead_filters_on_ray_equal_local(core: tuple[Convscope, str], ray_data_jobs: list[int]) -> None:
    local, _ = _run(core, DeadFiltersJob(), "local")
    remote, _ = _run(core, DeadFiltersJob(), "ray")
    assert ray_data_jobs == [1]
    assert remote.samples == IMAGES  # type: ignore[attr-defined]
    _assert_dead_filters_equal(remote, local)


def test_embedding_codes_on_ray_equal_local(core: tuple[Convscope, str], ray_data_jobs: list[int]) -> None:
    job = EmbeddingJob(method="pca", render=False)
    local, _ = _run(core, job, "local")
    remote, _ = _run(core, job, "ray")
    assert ray_data_jobs == [1]
    np.testing.assert_array_equal(remote.coords, local.coords)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(remote.indices, local.indices)  # type: ignore[attr-defined]
    assert remote.images == local.images  # type: ignore[attr-defined]


def test_unreadable_files_are_skipped_alike(core: tuple[Convscope, str], ray_data_jobs: list[int]) -> None:
    local, local_events = _run(core, DeadFiltersJob(), "local", folder="mixed")
    remote, remote_events = _run(core, DeadFiltersJob(), "ray", folder="mixed")
    assert ray_data_jobs == [1]
    skipped = sorted((event.index, event.ref, event.reason) for event in remote_events if isinstance(event, Skipped))
    assert skipped == sorted((event.index, event.ref, event.reason) for event in local_events if isinstance(event, Skipped))
    assert [ref for _, ref, _ in skipped] == [
        "mixed/0_broken.png",
        "mixed/1_link.png",
        "mixed/2_fifo.png",
        "mixed/3_inner_link.png",
        "mixed/4_folder_link",
    ]
    assert all("symbolic link" in reason for _, _, reason in skipped[3:])
    assert remote.samples == MIXED_GOOD  # type: ignore[attr-defined]
    _assert_dead_filters_equal(remote, local)


def test_byte_limit_holds_across_workers(
    core: tuple[Convscope, str], root: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder_bytes = sum(path.stat().st_size for path in (root / "digits").iterdir())
    limited = Convscope(
        tmp_path_factory.mktemp("limited-store"),
        data_roots=[root],
        ray_workers=CPUS,
        limits=RequestLimits(max_dataset_bytes=folder_bytes // 2),
    )
    try:
        record = limited.upload(
            [("", digits.trained_model()[0])], name="digits", preprocessing=Preprocessing.from_dict(digits.PREPROCESSING)
        )
        for engine in ("local", "ray"):
            with pytest.raises(ResourceExhausted, match="--max-dataset-gb"):
                list(limited.dataset_job(record.id, DeadFiltersJob(), folder="digits", engine=engine))
    finally:
        limited.close()


def test_cancelling_a_ray_job_stops_it(core: tuple[Convscope, str]) -> None:
    convscope, model_id = core
    cancelled = threading.Event()
    done = []
    events = convscope.dataset_job(model_id, DeadFiltersJob(), folder="digits", engine="ray", cancelled=cancelled)
    with pytest.raises(Cancelled):
        for event in events:
            if isinstance(event, Progress):
                done.append(event.done)
                cancelled.set()
    assert done and done[-1] < IMAGES
    # The pipeline is shut down: its actors are killed and give their CPUs back.
    deadline = time.monotonic() + RELEASE_SECONDS
    while ray.available_resources().get("CPU", 0) < CPUS and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray.available_resources().get("CPU", 0) == CPUS


def test_streamed_images_run_on_ray_actors(core: tuple[Convscope, str], root: Path, ray_data_jobs: list[int]) -> None:
    convscope, model_id = core
    items = [EncodedItem(path.read_bytes(), name=path.name) for path in sorted((root / "digits").iterdir())[:200]]
    local = list(convscope.dataset_job(model_id, DeadFiltersJob(), items=items, engine="local"))[-1]
    remote = list(convscope.dataset_job(model_id, DeadFiltersJob(), items=items, engine="ray"))[-1]
    assert ray_data_jobs == []  # the server decoded them: there is no folder for Ray to read
    assert remote.samples == 200  # type: ignore[union-attr]
    _assert_dead_filters_equal(remote, local)
