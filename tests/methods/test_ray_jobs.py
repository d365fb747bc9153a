"""Dataset jobs on Ray equal the local engine's, on 2,000 images with a local Ray of 2 CPUs.

The digits CNN (tests/digits.py) over scikit-learn's 1,797 digits and 203 of them transposed,
read from a server folder: top activations (hits: images, values, locations, boxes), dead
filters (zero counts per channel) and embedding codes (their PCA, bit-equal) from
``engine="ray"`` are the local engine's exactly; progress is reported and cancellation stops
the job the same way.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from convscope.core import Convscope
from convscope.errors import Cancelled
from convscope.methods.dataset_jobs import DeadFiltersJob, EmbeddingJob, Progress, TopActivationsJob
from convscope.model.types import Preprocessing
from tests import digits

ray = pytest.importorskip("ray", reason="Ray is not installed: `bash scripts/bootstrap.sh test` installs it")

IMAGES = 2000
CPUS = 2


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Convscope, str]]:
    root = tmp_path_factory.mktemp("ray-data")
    train_x, _, test_x, _ = digits.digits()
    pixels = np.concatenate([train_x, test_x])
    digits.write_pngs(root / "digits", np.concatenate([pixels, pixels[: IMAGES - len(pixels)].transpose(0, 2, 1)]))
    # Ray kills workers when the whole node's memory is over 95 % used, which on a machine shared
    # with other jobs says nothing about this test: its workers take tens of MB.
    os.environ["RAY_memory_monitor_refresh_ms"] = "0"
    ray.init(num_cpus=CPUS, include_dashboard=False, object_store_memory=256 << 20, log_to_driver=False)
    convscope = Convscope(tmp_path_factory.mktemp("ray-store"), data_roots=[root], ray_workers=CPUS)
    record = convscope.upload([("", digits.trained_model()[0])], name="digits", preprocessing=Preprocessing.from_dict(digits.PREPROCESSING))
    yield convscope, record.id
    convscope.close()
    ray.shutdown()


def _run(core: tuple[Convscope, str], job: object, engine: str, cancelled: threading.Event | None = None) -> tuple[object, list[Progress]]:
    convscope, model_id = core
    events = list(convscope.dataset_job(model_id, job, folder="digits", engine=engine, cancelled=cancelled))  # type: ignore[arg-type]
    progress = [event for event in events if isinstance(event, Progress)]
    return events[-1], progress


def _feature_map(core: tuple[Convscope, str]) -> str:
    convscope, model_id = core
    return next(layer.tensor for layer in convscope.model(model_id).layers if len(layer.shape) == 4 and layer.op_type == "Relu")


def test_top_activations_on_ray_equal_local(core: tuple[Convscope, str]) -> None:
    job = TopActivationsJob(layer=_feature_map(core), k=9, render=False)
    local, _ = _run(core, job, "local")
    remote, progress = _run(core, job, "ray")
    assert progress[-1].done == IMAGES and progress[-1].total == IMAGES
    assert remote.rows == local.rows  # type: ignore[attr-defined]
    assert all(hit.box is not None for row in local.rows for hit in row.hits)  # type: ignore[attr-defined]


def test_dead_filters_on_ray_equal_local(core: tuple[Convscope, str]) -> None:
    local, _ = _run(core, DeadFiltersJob(), "local")
    remote, _ = _run(core, DeadFiltersJob(), "ray")
    assert remote.samples == local.samples == IMAGES  # type: ignore[attr-defined]
    for ours, theirs in zip(remote.reports, local.reports, strict=True):  # type: ignore[attr-defined]
        assert ours.tensor == theirs.tensor
        np.testing.assert_array_equal(ours.zero_fraction, theirs.zero_fraction)
        np.testing.assert_array_equal(ours.dead, theirs.dead)


def test_embedding_codes_on_ray_equal_local(core: tuple[Convscope, str]) -> None:
    job = EmbeddingJob(method="pca", render=False)
    local, _ = _run(core, job, "local")
    remote, _ = _run(core, job, "ray")
    np.testing.assert_array_equal(remote.coords, local.coords)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(remote.indices, local.indices)  # type: ignore[attr-defined]


def test_cancelling_a_ray_job_stops_it(core: tuple[Convscope, str]) -> None:
    convscope, model_id = core
    cancelled = threading.Event()
    events = convscope.dataset_job(model_id, DeadFiltersJob(), folder="digits", engine="ray", cancelled=cancelled)
    with pytest.raises(Cancelled):
        for event in events:
            if isinstance(event, Progress):
                cancelled.set()
