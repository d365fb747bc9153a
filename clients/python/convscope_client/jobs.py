"""Dataset jobs on the wire: a dataset becomes a lazy stream of requests, events become results.

A dataset is any of:

* :class:`ServerFolder` — a folder on the server, under one of its ``--data-root`` folders;
* a local folder (``str`` / ``os.PathLike``) — its files are streamed, sorted, read one at a time;
* an iterable of items: local image paths, image bytes, PIL images, :class:`ServerPath` (a file
  the server reads from its data roots), or numpy arrays used exactly as given (one model input,
  with or without the batch axis; an array with a batch of N counts as N images). Nested lists
  are flattened, so the old "list of batches" form still works;
* a numpy array: one image per entry of its first axis.

Nothing is read before it is sent, so a dataset of any size streams in bounded memory.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import grpc
import numpy as np

from convscope_client._proto import convscope_pb2 as pb
from convscope_client.errors import ConvscopeError, streaming
from convscope_client.inputs import _image_bytes, fill_tensor, input_array
from convscope_client.types import Progress, SkippedItem

# Items per request message, and bytes: well under the server's request limit.
ITEMS_PER_MESSAGE = 64
BYTES_PER_MESSAGE = 4 << 20


@dataclass(frozen=True)
class ServerFolder:
    """A folder on the server, absolute or relative to one of its data roots."""

    path: str


@dataclass(frozen=True)
class ServerPath:
    """A file on the server, absolute or relative to one of its data roots."""

    path: str


Dataset = Union[ServerFolder, str, os.PathLike, np.ndarray, Iterable[Any]]
ProgressCallback = Callable[[Progress], Any]


def local_files(folder: Path) -> Iterator[Path]:
    for current, directories, files in os.walk(folder):
        directories.sort()
        for name in sorted(files):
            yield Path(current) / name


def _tensor_item(array: np.ndarray, name: str = "") -> pb.DatasetItem:
    item = pb.DatasetItem(name=name)
    fill_tensor(item.tensor, array)  # in place: a built Tensor would be copied into the item
    return item


def _items(dataset: Any) -> Iterator[pb.DatasetItem]:
    if isinstance(dataset, np.ndarray):
        for sample in dataset:
            yield _tensor_item(sample)
        return
    if isinstance(dataset, (str, os.PathLike)) and Path(dataset).is_dir():
        for path in local_files(Path(dataset)):
            yield pb.DatasetItem(encoded=path.read_bytes(), name=str(path))
        return
    if isinstance(dataset, (str, os.PathLike, bytes, ServerPath)) or hasattr(dataset, "save"):
        dataset = [dataset]
    for item in dataset:
        if isinstance(item, (list, tuple)):
            yield from _items(item)
        elif isinstance(item, ServerPath):
            yield pb.DatasetItem(path=item.path)
        elif (array := input_array(item)) is not None:
            yield _tensor_item(array, "" if item is array else str(item))  # a .npy file is named
        elif isinstance(item, (str, os.PathLike)):
            yield pb.DatasetItem(encoded=Path(item).read_bytes(), name=str(item))
        else:
            yield pb.DatasetItem(encoded=_image_bytes(item))


def expected_count(dataset: Any) -> int:
    """How many items the dataset will send, if that is cheap to know (0: unknown)."""
    if isinstance(dataset, ServerFolder):
        return 0
    if isinstance(dataset, np.ndarray):
        return len(dataset)
    if isinstance(dataset, (str, os.PathLike)) and Path(dataset).is_dir():
        return sum(1 for _ in local_files(Path(dataset)))
    if isinstance(dataset, Sized) and not isinstance(dataset, (str, bytes)):
        return len(dataset) if all(not isinstance(i, (list, tuple, np.ndarray)) for i in dataset) else 0  # type: ignore[attr-defined]
    return 0


def check_local_paths(dataset: Any) -> None:
    """Raise FileNotFoundError for a local path in ``dataset`` (a path, or a list of them) that
    does not exist: found once the request stream runs, it would abort the call with UNKNOWN."""
    if isinstance(dataset, (str, os.PathLike)):
        if not Path(dataset).exists():
            raise FileNotFoundError(f"no such file: {os.fspath(dataset)}")
    elif isinstance(dataset, (list, tuple)):
        for item in dataset:
            check_local_paths(item)


def requests(start: pb.DatasetJobStart, dataset: Any) -> Iterator[pb.DatasetJobRequest]:
    if isinstance(dataset, ServerFolder):
        start.folder = dataset.path
        yield pb.DatasetJobRequest(start=start)
        return
    start.expected = expected_count(dataset)
    yield pb.DatasetJobRequest(start=start)
    batch: list[pb.DatasetItem] = []
    size = 0
    for item in _items(dataset):
        batch.append(item)
        size += item.ByteSize()
        if len(batch) >= ITEMS_PER_MESSAGE or size >= BYTES_PER_MESSAGE:
            yield pb.DatasetJobRequest(items=pb.DatasetItems(items=batch))
            batch, size = [], 0
    if batch:
        yield pb.DatasetJobRequest(items=pb.DatasetItems(items=batch))


def image_ref(ref: pb.ItemRef) -> int | str:
    return ref.name or int(ref.index)


def progress_of(message: pb.JobProgress) -> Progress:
    return Progress(
        done=int(message.done),
        skipped=int(message.skipped),
        total=int(message.total) or None,
        seconds=float(message.seconds),
        rate=float(message.rate),
        eta=None if message.eta < 0 else float(message.eta),
    )


@dataclass
class JobEvents:
    """What a finished job sent: its result events, the skipped items, the final counts."""

    results: list[pb.DatasetJobEvent]
    skipped: list[SkippedItem]
    progress: Progress | None


def run(
    method: Callable[..., Iterator[pb.DatasetJobEvent]],
    start: pb.DatasetJobStart,
    dataset: Any,
    *,
    progress: ProgressCallback | None,
    timeout: float | None,
    metadata: tuple[tuple[str, str], ...],
) -> JobEvents:
    """Run one job; ``progress`` gets each Progress and may return False to cancel the job."""
    check_local_paths(dataset)
    events = JobEvents([], [], None)
    with streaming(method(requests(start, dataset), timeout=timeout, metadata=metadata)) as call:
        for event in call:
            kind = event.WhichOneof("event")
            if kind in ("progress", "done"):
                events.progress = progress_of(getattr(event, kind))
                if progress is not None and progress(events.progress) is False:
                    raise ConvscopeError(grpc.StatusCode.CANCELLED, "the job was cancelled by the progress callback")
            elif kind == "skipped":
                events.skipped.append(SkippedItem(image_ref(event.skipped.item), event.skipped.reason))
            else:
                events.results.append(event)
    return events
