"""Datasets for long jobs: where images come from, and a decoder that works beside inference.

A dataset is a stream of items — encoded image bytes, a path under one of the operator's data
roots, or a raw tensor used exactly as given — or a folder under a data root. Items are decoded
and preprocessed by a small thread pool (Pillow and numpy release the GIL) that runs ahead of
inference through a bounded queue, so decoding overlaps the model and at most ``depth`` items
are held at once, whatever the dataset's size. Decode threads run below inference's scheduling
priority, so they fill the cycles the model leaves idle instead of stalling it. An item that
cannot be read becomes a
:class:`Skipped` entry, reported and never fatal; only a path outside every data root stops the
job (``PERMISSION_DENIED``).
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import queue
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convscope.errors import Cancelled, InvalidArgument, NotFound, PermissionDenied, ResourceExhausted, ServiceError
from convscope.limits import DEFAULT_MAX_IMAGE_PIXELS, RequestLimits
from convscope.model.preprocessing import ImageSample, decode_sample, input_from_tensor
from convscope.model.types import ModelRecord
from convscope.render.images import to_unit
from convscope.runtime.context import available_cores

log = logging.getLogger(__name__)

# A file larger than this is skipped, not read: no image a vision model needs is this big.
MAX_FILE_BYTES = 64 << 20
# Longer paths are refused before touching the file system (Linux's PATH_MAX is 4096).
MAX_PATH_CHARS = 1024
DEFAULT_DECODE_WORKERS = max(1, min(4, available_cores()))
# Items decoded ahead of inference, per decode worker.
PREFETCH_PER_WORKER = 16
# Scheduling priority of decode threads (nice value, Linux): below inference.
DECODE_NICE = 10
# How long blocking queue operations wait before looking at the stop flag again (seconds).
POLL_SECONDS = 0.1

Ref = int | str  # how results name an item: its index in the stream, a path, or a client-given name


@dataclass(frozen=True)
class EncodedItem:
    data: bytes
    name: str = ""


@dataclass(frozen=True)
class PathItem:
    """A file under a data root; ``path`` is how the client named it (and how results name it)."""

    path: str
    name: str = ""
    found_at: Path | None = None  # set by a folder walk: the file, not yet checked for links out


@dataclass(frozen=True)
class TensorItem:
    """A raw tensor used exactly as given: one sample, or a batch of them (one item each)."""

    array: np.ndarray
    name: str = ""


@dataclass(frozen=True)
class UnreadableItem:
    """An item the transport could not even parse (a malformed tensor message)."""

    reason: str
    name: str = ""


Item = EncodedItem | PathItem | TensorItem | UnreadableItem


@dataclass(frozen=True)
class Sample:
    index: int  # position in the stream, counting every sample of a batched tensor item
    ref: Ref
    value: np.ndarray | ImageSample  # the model input for this sample, without the batch axis
    picture: np.ndarray | None  # what the model saw, H×W×3 uint8 (None unless asked for)


@dataclass(frozen=True)
class Skipped:
    index: int
    ref: Ref
    reason: str


# ---------------------------------------------------------------------------------- data roots


class DataRoots:
    """The folders an operator exposed with ``convscope serve --data-root``.

    A path is resolved with ``realpath`` (every symlink followed) and must land inside a root;
    a relative path is tried against each root in order.
    """

    def __init__(self, roots: Sequence[str | os.PathLike[str]] = ()) -> None:
        self.roots = tuple(Path(os.path.realpath(root)) for root in roots)

    def __bool__(self) -> bool:
        return bool(self.roots)

    def inside(self, real: Path) -> bool:
        return any(real == root or root in real.parents for root in self.roots)

    def resolve(self, path: str) -> Path:
        """The real path of ``path``; PermissionDenied if it escapes every root, NotFound if absent."""
        if not self.roots:
            raise PermissionDenied("this server has no data roots; the operator starts it with --data-root DIR")
        if len(path) > MAX_PATH_CHARS:
            raise InvalidArgument(f"a path of {len(path)} characters is longer than the {MAX_PATH_CHARS} the server accepts")
        if not path or "\x00" in path:
            raise PermissionDenied(f"path {path!r} is not under a data root")
        given = Path(path)
        candidates = [given] if given.is_absolute() else [root / given for root in self.roots]
        allowed = [real for real in (Path(os.path.realpath(c)) for c in candidates) if self.inside(real)]
        if not allowed:
            raise PermissionDenied(f"path {path!r} is outside the server's data roots")
        for real in allowed:
            if real.exists():
                return real
        raise NotFound(f"no file or folder {path!r} under the server's data roots")

    def folder(self, folder: str, max_files: int = RequestLimits().max_dataset_files) -> tuple[int, Iterator[PathItem]]:
        """How many files ``folder`` holds, and the files as items, in sorted order (walked lazily)."""
        real = self.resolve(folder)
        if not real.is_dir():
            raise NotFound(f"{folder!r} is not a folder under the server's data roots")
        prefix = folder.rstrip("/\\")
        count = sum(1 for _ in itertools.islice(_walk(real), max_files + 1))  # stop counting past the cap
        if count > max_files:
            raise ResourceExhausted(f"{folder!r} holds more than {max_files} files, the server's limit (--max-dataset-files); name a subfolder")
        return count, (
            PathItem(path=f"{prefix}/{relative}", found_at=found) for relative, found in _walk(real)
        )


def _walk(folder: Path) -> Iterator[tuple[str, Path]]:
    """(relative name, path) of every file, depth first in sorted order; directory links not followed."""
    for current, directories, files in os.walk(folder, followlinks=False):
        directories.sort()
        base = Path(current)
        for name in sorted(files):
            found = base / name
            yield found.relative_to(folder).as_posix(), found


# ---------------------------------------------------------------------------------- decoding


def samples_in(item: Item, record: ModelRecord) -> int:
    """How many samples an item carries: a tensor with the batch axis may hold several."""
    if isinstance(item, TensorItem) and item.array.ndim == len(record.input.shape) and item.array.shape[0] > 1:
        return int(item.array.shape[0])
    return 1


class Decoder:
    """Turns items into samples with the model's preprocessing; thread-safe, no shared state."""

    def __init__(
        self, record: ModelRecord, roots: DataRoots, *, pictures: bool, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
        max_bytes: int = RequestLimits().max_dataset_bytes,
    ) -> None:
        self.record = record
        self.roots = roots
        self.pictures = pictures
        self.max_pixels = max_pixels
        self.max_bytes = max_bytes
        self._read_bytes = 0
        self._count_lock = threading.Lock()

    def __call__(self, item: Item, index: int) -> list[Sample | Skipped]:
        if isinstance(item, TensorItem):
            return self._tensor(item, index)
        ref = _ref(item, index)
        try:
            data = self._read(item)
            image = decode_sample(self.record, data, index, max_pixels=self.max_pixels)
        except (PermissionDenied, DatasetTooLarge):
            raise
        except ServiceError as error:
            return [Skipped(index, ref, str(error))]
        except OSError as error:
            return [Skipped(index, ref, f"cannot be read ({error.strerror or type(error).__name__})")]
        return [Sample(index, ref, image, image.picture if self.pictures else None)]

    def _read(self, item: Item) -> bytes:
        if isinstance(item, EncodedItem):
            return item.data
        if isinstance(item, UnreadableItem):
            raise _Unreadable(item.reason)
        if not isinstance(item, PathItem):
            raise TypeError(type(item).__name__)
        if item.found_at is not None:  # found by a folder walk: a link out is skipped, not fatal
            real = Path(os.path.realpath(item.found_at))
            if not self.roots.inside(real):
                raise _Unreadable("links outside the server's data roots")
        else:
            try:
                real = self.roots.resolve(item.path)
            except NotFound as error:
                raise _Unreadable(str(error)) from None
        data = read_regular_file(real)
        with self._count_lock:
            self._read_bytes += len(data)
            if self._read_bytes > self.max_bytes:
                raise DatasetTooLarge(
                    f"the job read more than {self.max_bytes} bytes from server folders, the server's limit (--max-dataset-gb); "
                    "split it into smaller folders"
                )
        return data

    def _tensor(self, item: TensorItem, index: int) -> list[Sample | Skipped]:
        array = item.array
        count = samples_in(item, self.record)
        parts = [array[i : i + 1] for i in range(count)] if count > 1 else [array]
        entries: list[Sample | Skipped] = []
        for offset, part in enumerate(parts):
            ref: Ref = (f"{item.name}[{offset}]" if count > 1 else item.name) if item.name else index + offset
            try:
                value = input_from_tensor(self.record, part).batch
            except ServiceError as error:
                entries.append(Skipped(index + offset, ref, str(error)))
                continue
            picture = picture_from_sample(self.record, value[0]) if self.pictures else None
            entries.append(Sample(index + offset, ref, value[0], picture))
        return entries


class _Unreadable(ServiceError):
    pass


class DatasetTooLarge(ResourceExhausted):
    """Ends the job: unlike one bad file, which is skipped."""


def read_regular_file(path: Path) -> bytes:
    """The file's bytes, refusing FIFOs (reading one blocks forever), devices (/dev/zero never
    ends) and anything swapped for a link since it was resolved: opened without following links
    and without blocking, then checked on the open descriptor."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise _Unreadable("was replaced by a link") from None
        raise
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _Unreadable("is not a regular file (a FIFO, device or socket)")
        if info.st_size > MAX_FILE_BYTES:
            raise _Unreadable(f"is larger than {MAX_FILE_BYTES >> 20} MiB")
        return file.read(MAX_FILE_BYTES + 1)


def _ref(item: Item, index: int) -> Ref:
    if item.name:
        return item.name
    if isinstance(item, PathItem):
        return item.path
    return index


def picture_from_sample(record: ModelRecord, value: np.ndarray) -> np.ndarray | None:
    """A tensor sample drawn as an image: the model's preprocessing undone (scale, mean, std);
    min–max scaled when that does not land in 0..255. None when it is not image-shaped."""
    spec = record.preprocessing
    if value.ndim != 3 or not np.issubdtype(value.dtype, np.number):
        return None
    pixels = value.transpose(1, 2, 0) if spec.layout == "NCHW" else value
    if pixels.shape[2] not in (1, 3):
        return None
    pixels = pixels.astype(np.float32)
    if spec.std:
        pixels = pixels * np.asarray(spec.std, np.float32)[: pixels.shape[2]]
    if spec.mean:
        pixels = pixels + np.asarray(spec.mean, np.float32)[: pixels.shape[2]]
    pixels = pixels / np.float32(spec.scale)
    if spec.channel_order == "BGR":
        pixels = pixels[..., ::-1]
    finite = np.nan_to_num(pixels)
    if finite.min() < -1 or finite.max() > 256:
        finite = to_unit(finite) * 255
    picture = finite.round().clip(0, 255).astype(np.uint8)
    return np.repeat(picture, 3, axis=2) if picture.shape[2] == 1 else np.ascontiguousarray(picture)


# ---------------------------------------------------------------------------------- prefetch


def _lower_priority() -> None:
    """Decode in the cycles inference leaves idle: a decoder that preempts one of onnxruntime's
    intra-op threads stalls the whole parallel op (the others wait for it), which on a 2-core
    machine cost 10–25 % of the job's throughput. Linux sets the nice value per thread; elsewhere
    this is a no-op."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), DECODE_NICE)
    except (AttributeError, OSError):
        pass


class _End:
    pass


@dataclass(frozen=True)
class _Failure:
    error: BaseException


class _Handoff:
    """One producer thread handing entries to the consumer through a bounded queue.

    ``_put`` gives up once the consumer has stopped; ``_entries`` yields until the producer's
    end marker, re-raises its failure (as Cancelled when the job was cancelled meanwhile), and
    notices cancellation while waiting.
    """

    _queue: queue.Queue[Any]
    _stop: threading.Event
    _cancelled: threading.Event

    def _put(self, entry: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _entries(self) -> Iterator[Any]:
        while True:
            try:
                entry = self._queue.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if self._cancelled.is_set():
                    raise Cancelled("the job was cancelled") from None
                continue
            if isinstance(entry, _End):
                return
            if isinstance(entry, _Failure):
                if self._cancelled.is_set():
                    raise Cancelled("the job was cancelled") from None
                raise entry.error
            yield entry


class Prefetcher(_Handoff):
    """Decode ``items`` in a thread pool, ahead of the consumer, in order, with bounded memory.

    A feeder thread pulls items (from a gRPC request stream or a folder walk) and submits them;
    the bounded queue of pending decodes is the back-pressure. Iterating yields samples and
    skips in stream order; an exception while reading the stream, or a fatal decode error, is
    raised in the consumer. ``close`` (or leaving the iteration) stops the feeder and the pool.
    """

    def __init__(
        self,
        items: Iterable[Item],
        decode: Callable[[Item, int], list[Sample | Skipped]],
        *,
        count: Callable[[Item], int] = lambda item: 1,
        workers: int | None = None,
        depth: int | None = None,
        cancelled: threading.Event | None = None,
    ) -> None:
        workers = workers or DEFAULT_DECODE_WORKERS
        self._items = items
        self._decode = decode
        self._count = count
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, workers), thread_name_prefix="convscope-decode", initializer=_lower_priority
        )
        self._queue: queue.Queue[Future[list[Sample | Skipped]] | _End | _Failure] = queue.Queue(
            maxsize=depth or workers * PREFETCH_PER_WORKER
        )
        self._stop = threading.Event()
        self._cancelled = cancelled or threading.Event()
        self._feeder = threading.Thread(target=self._feed, name="convscope-feed", daemon=True)
        self._feeder.start()

    def _feed(self) -> None:
        index = 0
        try:
            for item in self._items:
                if self._stop.is_set():
                    return
                future = self._pool.submit(self._decode, item, index)
                index += self._count(item)
                if not self._put(future):
                    future.cancel()
                    return
            self._put(_End())
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
            self._put(_Failure(error))

    def __iter__(self) -> Iterator[Sample | Skipped]:
        try:
            for future in self._entries():
                yield from future.result()
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
        while True:
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(entry, Future):
                entry.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)


class RunAhead(_Handoff):
    """Iterate ``source`` on a helper thread, at most ``depth`` entries ahead of the consumer.

    Exceptions from the source are raised in the consumer; ``close`` (or leaving the iteration)
    stops the helper at its next entry.
    """

    def __init__(self, source: Iterable[object], *, depth: int = 2, cancelled: threading.Event | None = None) -> None:
        self._source = source
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._cancelled = cancelled or threading.Event()
        self._thread = threading.Thread(target=self._run, name="convscope-batch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for entry in self._source:
                if not self._put(entry):
                    break
            else:
                self._put(_End())
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
            self._put(_Failure(error))
        finally:
            close = getattr(self._source, "close", None)
            if close is not None:
                close()  # a generator source runs its cleanup (a Prefetcher stops its pool)

    def __iter__(self) -> Iterator[Any]:
        try:
            yield from self._entries()
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
