"""One worker process as the server holds it: its pipe, its stop event, the shared memory both
ways and the graph specs it already has. ``pool.py`` decides which slot serves a call and what
a failure means; a slot only starts, talks to and stops its process.

A request costs one small pipe write and one read: arrays travel in shared memory (``shm.py``),
a graph spec crosses once per worker and then by a number, the results are views into the
worker's block (no copy here), and the reply is awaited on a ``poll`` object made once per
process.
"""

from __future__ import annotations

import itertools
import select
from collections.abc import Mapping
from multiprocessing.context import SpawnContext
from typing import Any

import numpy as np

from convscope import logs
from convscope.workers import child, shm

# A spec's number stays valid in the worker until this many have been sent; then both sides
# start over (a long-running server sees a bounded variety of layer sets).
MAX_SPECS = 1024


class WorkerSlot:
    """A worker process and the server's side of its channel (restarted in place by ``restart``)."""

    def __init__(self, spawn: SpawnContext, settings: child.WorkerSettings, prefix: str, serial: itertools.count) -> None:
        self._spawn, self._settings, self._prefix, self._serial = spawn, settings, prefix, serial
        self.inputs = shm.WrittenBlock(self._new_prefix())
        self.busy = False
        self.models: set[str] = set()
        self._start()

    def _new_prefix(self) -> str:
        return f"{self._prefix}{next(self._serial)}_"

    def _start(self) -> None:
        self.worker_blocks = self._new_prefix()  # the blocks the worker writes results into
        parent, worker = self._spawn.Pipe()
        self.stop = self._spawn.Event()
        self.process = self._spawn.Process(
            target=child.main, args=(worker, self.stop, self._settings, self.worker_blocks), name="convscope-worker", daemon=True
        )
        self.process.start()
        worker.close()
        self.conn = parent
        self._poller = select.poll()
        self._poller.register(parent.fileno(), select.POLLIN)
        self.outputs = shm.ReadBlocks()
        self.output_generation = 0  # of the worker's newest block seen
        self.specs: dict[object, int] = {}
        self.ready = False
        self.sessions = 0
        self.session_bytes = 0
        self.models.clear()

    def restart(self) -> int | None:
        """Kill the process (if alive) and start a fresh one; returns the old one's pid."""
        old = self.process
        old.kill()
        old.join(timeout=10)
        self.conn.close()
        self._forget_worker_blocks()
        self._start()
        return old.pid

    def close(self) -> None:
        self.conn.close()  # the worker reads EOF, unlinks its block and returns
        self.process.join(timeout=2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=2)
        self._forget_worker_blocks()
        self.inputs.release()

    def _forget_worker_blocks(self) -> None:
        """Unlink what a dead or retired worker wrote (the next block too: it may have made it
        before it could say so). Views handed out keep their pages until they go."""
        self.outputs.close()
        for generation in (self.output_generation, self.output_generation + 1):
            shm.unlink(shm.block_name(self.worker_blocks, generation))

    # -- messages

    def send(self, kind: str, seconds: float | None, what: str, body: dict[str, Any]) -> None:
        self.conn.send((kind, seconds, what, logs.request_id.get(), body))

    def wait(self, seconds: float) -> bool:
        """Whether the worker answered (or hung up) within ``seconds``."""
        return bool(self._poller.poll(seconds * 1000))

    def receive(self) -> Any:
        return self.conn.recv()

    def spec_number(self, spec: object) -> tuple[int, object | None, bool]:
        """(the number the worker knows ``spec`` by, the spec itself if the worker has not seen
        it yet, whether the worker should forget the specs it has)."""
        number = self.specs.get(spec)
        if number is not None:
            return number, None, False
        restart = len(self.specs) >= MAX_SPECS
        if restart:
            self.specs.clear()
        self.specs[spec] = number = len(self.specs)
        return number, spec, restart

    def write_inputs(self, feeds: Mapping[str, np.ndarray]) -> tuple[str, shm.ArrayLayout]:
        return self.inputs.write(feeds)

    def read_outputs(self, name: str, layout: shm.ArrayLayout) -> dict[str, np.ndarray]:
        """The worker's results, as views into its block (see ``shm.ReadBlocks``)."""
        self.output_generation = int(name[len(self.worker_blocks) :])
        return self.outputs.views(name, layout)
