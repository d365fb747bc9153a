"""The threads that let long jobs decode beside inference (``data/streams.py`` says what is
decoded): a small pool (Pillow and numpy release the GIL) runs ahead of inference through a
bounded queue, so decoding overlaps the model and at most ``depth`` items are held at once,
whatever the dataset's size.  Decode threads run below inference's scheduling priority, so they
fill the cycles the model leaves idle instead of stalling it.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from convscope.data.streams import Decoded, Item
from convscope.errors import Cancelled
from convscope.runtime.context import available_cores

DEFAULT_DECODE_WORKERS = max(1, min(4, available_cores()))
# Items decoded ahead of inference, per decode worker.
PREFETCH_PER_WORKER = 16
# Scheduling priority of decode threads (nice value, Linux): below inference.
DECODE_NICE = 10
# How long blocking queue operations wait before looking at the stop flag again (seconds).
POLL_SECONDS = 0.1


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
        decode: Callable[[Item, int], list[Decoded]],
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
        self._queue: queue.Queue[Future[list[Decoded]] | _End | _Failure] = queue.Queue(
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

    def __iter__(self) -> Iterator[Decoded]:
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
