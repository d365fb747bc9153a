"""Datasets for long jobs: where images come from, and how one item is decoded.

A dataset is a stream of items — encoded image bytes, a path under one of the operator's data
roots, or a raw tensor used exactly as given — or a folder under a data root. Items are decoded
and preprocessed beside inference by the threads of ``data/prefetch.py``. An item that cannot
be read becomes a :class:`Skipped` entry, reported and never fatal; only a path outside every
data root stops the job (``PERMISSION_DENIED``).
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import stat
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convscope.data.pictures import picture_from_sample
from convscope.errors import InvalidArgument, NotFound, PermissionDenied, ResourceExhausted, ServiceError
from convscope.limits import DEFAULT_MAX_IMAGE_PIXELS, RequestLimits
from convscope.model.preprocessing import ImageSample, decode_sample, input_from_tensor
from convscope.model.types import ModelRecord

log = logging.getLogger(__name__)

# A file larger than this is skipped, not read: no image a vision model needs is this big.
MAX_FILE_BYTES = 64 << 20
# Longer paths are refused before touching the file system (Linux's PATH_MAX is 4096).
MAX_PATH_CHARS = 1024

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
    # The model input for this sample, without the batch axis; None for a sample that ran on a
    # Ray worker: only its index, ref and picture come back to the job.
    value: np.ndarray | ImageSample | None
    picture: np.ndarray | None  # what the model saw, H×W×3 uint8 (None unless asked for)


@dataclass(frozen=True)
class Skipped:
    index: int
    ref: Ref
    reason: str


@dataclass(frozen=True)
class DecodedBatch:
    """Samples a decode task has already written into one batch, row by row in stream order: the
    batch is assembled on the decode pool, in parallel, instead of sample by sample on the one
    thread that hands batches to inference."""

    samples: list[Sample]
    values: np.ndarray  # [len(samples), …] model inputs


Decoded = Sample | Skipped | DecodedBatch


# ---------------------------------------------------------------------------------- data roots


class DataRoots:
    """The folders an operator exposed with ``convscope serve --data-root``.

    A path must land inside a root (``realpath``; a relative path is tried against each root in
    order) and may not go through a symbolic link, even one that points inside the root: a link
    out is PermissionDenied, a link within is InvalidArgument (a folder walk skips both, with the
    reason, as it skips FIFOs and devices). The roots themselves may be links (the operator's
    choice); an absolute path names a root as configured or as resolved.
    """

    def __init__(self, roots: Sequence[str | os.PathLike[str]] = ()) -> None:
        self.roots = tuple(Path(os.path.realpath(root)) for root in roots)
        self._spellings = tuple((Path(os.path.abspath(given)), real) for given, real in zip(roots, self.roots))

    def __bool__(self) -> bool:
        return bool(self.roots)

    def inside(self, real: Path) -> bool:
        return any(real == root or root in real.parents for root in self.roots)

    def resolve(self, path: str) -> Path:
        """The real path of ``path``; PermissionDenied if it escapes every root, InvalidArgument if
        it goes through a link, NotFound if absent."""
        if not self.roots:
            raise PermissionDenied("this server has no data roots; the operator starts it with --data-root DIR")
        if len(path) > MAX_PATH_CHARS:
            raise InvalidArgument(f"a path of {len(path)} characters is longer than the {MAX_PATH_CHARS} the server accepts")
        if not path or "\x00" in path:
            raise PermissionDenied(f"path {path!r} is not under a data root")
        given = Path(path)
        candidates = [given] if given.is_absolute() else [root / given for root in self.roots]
        allowed = [(c, real) for c, real in ((c, Path(os.path.realpath(c))) for c in candidates) if self.inside(real)]
        if not allowed:
            raise PermissionDenied(f"path {path!r} is outside the server's data roots")
        for candidate, real in allowed:
            if real.exists():
                link = self._first_link(candidate)
                if link is not None:
                    raise InvalidArgument(
                        f"path {path!r} goes through the symbolic link {link!r}; the server does not follow links "
                        "in its data roots: name the file or folder it points to"
                    )
                return real
        raise NotFound(f"no file or folder {path!r} under the server's data roots")

    def _first_link(self, candidate: Path) -> str | None:
        """The first part of ``candidate`` below its root that is a symbolic link, as the path
        from the root; "(outside the roots)" when the path reaches the root only through one."""
        for given, real in self._spellings:
            for spelling in (real, given):
                if candidate.is_relative_to(spelling):
                    part = real
                    for name in candidate.relative_to(spelling).parts:
                        # Every part so far is a real folder, so ".." means what it says.
                        part = part.parent if name == ".." else part / name
                        if part.is_symlink():
                            return os.path.relpath(part, real)
                    return None
        return "(outside the roots)"

    def folder(self, folder: str, max_files: int = RequestLimits().max_dataset_files) -> tuple[int, Iterator[PathItem]]:
        """How many files ``folder`` holds, and the files as items, in sorted order (walked lazily)."""
        real = self.resolve(folder)
        if not real.is_dir():
            raise NotFound(f"{folder!r} is not a folder under the server's data roots")
        prefix = folder.rstrip("/\\")
        count = sum(1 for _ in itertools.islice(_walk(real), max_files + 1))  # stop counting past the cap
        if count > max_files:
            raise ResourceExhausted(
                f"{folder!r} holds more than {max_files} files, the server's limit (--max-dataset-files); name a subfolder"
            )
        return count, (PathItem(path=f"{prefix}/{relative}", found_at=found) for relative, found in _walk(real))


def _walk(folder: Path) -> Iterator[tuple[str, Path]]:
    """(relative name, path) of every file, depth first in sorted order; links to folders are
    listed as files, not followed (reading them skips them with the reason)."""
    for current, directories, files in os.walk(folder, followlinks=False):
        directories.sort()
        base = Path(current)
        for name in sorted(files + [name for name in directories if (base / name).is_symlink()]):
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
        self,
        record: ModelRecord,
        roots: DataRoots,
        *,
        pictures: bool,
        max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
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
            real = item.found_at  # read without following: a link inside the root is refused too
        else:
            try:
                real = self.roots.resolve(item.path)
            except NotFound as error:
                raise _Unreadable(str(error)) from None
        data = read_regular_file(real)
        with self._count_lock:
            self._read_bytes += len(data)
            if self._read_bytes > self.max_bytes:
                raise DatasetTooLarge.beyond(self.max_bytes)
        return data

    @property
    def read_bytes(self) -> int:
        """Bytes read from server folders so far (decoders on Ray workers report theirs to the job)."""
        return self._read_bytes

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

    @classmethod
    def beyond(cls, max_bytes: int) -> DatasetTooLarge:
        return cls(
            f"the job read more than {max_bytes} bytes from server folders, the server's limit (--max-dataset-gb); "
            "split it into smaller folders"
        )


def read_regular_file(path: Path) -> bytes:
    """The file's bytes, refusing FIFOs (reading one blocks forever), devices (/dev/zero never
    ends) and anything swapped for a link since it was resolved: opened without following links
    and without blocking, then checked on the open descriptor.

    Read with ``os.read`` sized by ``fstat``, not through a file object: on small images
    (8×8 digits) ``fdopen`` and a read sized for the largest file cost 4× the bytes' read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise _Unreadable("is a symbolic link; the server does not follow links in its data roots") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _Unreadable("is not a regular file (a FIFO, device or socket)")
        if info.st_size > MAX_FILE_BYTES:
            raise _Unreadable(f"is larger than {MAX_FILE_BYTES >> 20} MiB")
        parts = []
        left = MAX_FILE_BYTES + 1  # a file that grew since fstat is still cut at the limit
        while left > 0:
            # One byte past the stated size finds the end in the same loop (or a file that grew).
            part = os.read(fd, min(left, info.st_size + 1 if not parts else 1 << 20))
            if not part:
                break
            parts.append(part)
            left -= len(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)
    finally:
        os.close(fd)


def _ref(item: Item, index: int) -> Ref:
    if item.name:
        return item.name
    if isinstance(item, PathItem):
        return item.path
    return index
