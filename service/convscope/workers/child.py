"""The worker process: validates, loads and runs stored models for the server, under a hard
memory cap, one request at a time.

It is a plain in-process ``Runtime`` (sessions cached per model, graph spec and thread count)
behind a pipe. Requests name the model's folder in the store; the worker reads the files
itself. Tensors come and go in shared memory (``shm.py``). A stop event set by the server
terminates the run in progress (``RunOptions.terminate``, through the call's ``CallBudget``);
if onnxruntime does not stop within the grace period the server kills the process.
"""

from __future__ import annotations

import os
import resource
import signal
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import onnx

from convscope.errors import OutOfMemory, ServiceError
from convscope.logs import LogSettings, configure_logging, request_id
from convscope.model.store import MODEL_FILE, Upload
from convscope.runtime.budget import CallBudget
from convscope.runtime.ingest import describe_upload
from convscope.runtime.sessions import Runtime
from convscope.workers import shm
from convscope.workers.placement import PlacedRuns

# Test hook: a worker asked to run a model whose graph has this name kills itself with SIGSEGV,
# as fuzzed models have made onnxruntime do. Set only by the tests, in the server's environment.
CRASH_GRAPH_ENV = "CONVSCOPE_TEST_CRASH_GRAPH"


@dataclass(frozen=True)
class WorkerSettings:
    memory_bytes: int | None  # RLIMIT_AS; None: no cap
    session_budget_bytes: int
    providers: tuple[str, ...] | None  # None: what loads in the worker
    logging: LogSettings | None = None  # the server's level and format (None: Python's defaults)


def cap_memory(limit: int | None) -> None:
    """Cap the address space: an allocation past it fails (MemoryError, onnxruntime's
    "Failed to allocate memory") instead of growing until the kernel's OOM killer picks a victim."""
    if limit is not None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


class PeakAddressSpace:
    """The most address space this process has held (VmPeak): what RLIMIT_AS bounds. Read with
    every answer, so the file stays open and is read again from its start (opening it each time
    cost as much as the rest of the answer)."""

    def __init__(self) -> None:
        self._status = os.open("/proc/self/status", os.O_RDONLY)

    def __call__(self) -> int:
        status = os.pread(self._status, 1 << 16, 0)
        start = status.find(b"VmPeak:")
        return int(status[start + 7 : status.index(b"kB", start)]) << 10 if start >= 0 else 0


class _Worker:
    def __init__(self, conn: Connection, stop: Event, settings: WorkerSettings, block_prefix: str) -> None:
        self.conn = conn
        self.stop = stop
        self.inputs = shm.ReadBlocks()
        self.outputs = shm.WrittenBlock(block_prefix)
        self.folders: dict[str, Path] = {}
        self.specs: dict[int, Any] = {}  # graph specs by the number the server sends them by
        self.runtime = Runtime(self._load, budget_bytes=settings.session_budget_bytes, providers=settings.providers)
        self.placed = PlacedRuns(self.runtime, self.outputs)
        self.crash_graph = os.environ.get(CRASH_GRAPH_ENV)
        self.peak_address_space = PeakAddressSpace()
        self._budget: CallBudget | None = None
        threading.Thread(target=self._watch_stop, name="convscope-worker-stop", daemon=True).start()

    def _load(self, model_id: str) -> onnx.ModelProto:
        return onnx.load(str(self.folders[model_id] / MODEL_FILE), load_external_data=True)

    def _watch_stop(self) -> None:
        while True:
            self.stop.wait()
            budget = self._budget
            if budget is not None:
                budget.stop(expired=True)
            self.stop.clear()

    def serve(self) -> None:
        try:
            self.conn.send(("ready", os.getpid(), self.runtime.providers))  # the server sizes batches by them
            while True:
                kind, seconds, what, call_id, body = self.conn.recv()
                request_id.set(call_id)  # the lines this request makes carry the call's id
                self.conn.send(
                    (
                        *self._handle(kind, seconds, what, body),
                        self.runtime.session_count(),
                        self.runtime.cache_bytes(),
                        self.peak_address_space(),
                    )
                )
        except (EOFError, OSError):  # the server closed the pipe (it is stopping, or gone): so do we
            self.outputs.release()

    def _handle(self, kind: str, seconds: float | None, what: str, body: dict[str, Any]) -> tuple[Any, ...]:
        self.stop.clear()
        self._budget = CallBudget(seconds, what)
        try:
            with self._budget.bound():
                return ("ok", getattr(self, f"_{kind}")(**body))
        except MemoryError:
            return ("memory", "a Python allocation failed")
        except OutOfMemory as error:
            return ("memory", str(error))
        except ServiceError as error:
            return ("refused", type(error).__name__, str(error))
        except Exception as error:  # noqa: BLE001  the server logs it as an incident
            return ("internal", f"{type(error).__name__}: {str(error)[:2000]}")
        finally:
            self._budget = None

    def _run(
        self,
        model_id: str,
        folder: str,
        spec_number: int,
        spec: Any,
        forget_specs: bool,
        inputs: str,
        layout: shm.ArrayLayout,
        outputs: list[str],
        fresh_outputs: bool,
        dynamic_batch: bool,
        threads: int,
        batch_size: int | None,
        fixed: list[str],
    ) -> tuple[str, shm.ArrayLayout]:
        """``spec`` comes once per worker (None afterwards: ``spec_number`` names it);
        ``fresh_outputs``: the server still holds views of the last results' block;
        ``batch_size``: run the batch in runs of that many samples, the ``fixed`` inputs whole
        to each, and return the results joined."""
        if forget_specs:
            self.specs.clear()
        if spec is not None:
            self.specs[spec_number] = spec
        if model_id not in self.folders:
            self.folders[model_id] = Path(folder)
        if self.crash_graph and self.runtime.base_graph(model_id, dynamic_batch=dynamic_batch).graph.name == self.crash_graph:
            os.kill(os.getpid(), signal.SIGSEGV)
        feeds = self.inputs.views(inputs, layout)
        if batch_size is not None:
            whole = {name: feeds.pop(name) for name in fixed}
            values = self.runtime.run_batched(
                model_id,
                self.specs[spec_number],
                feeds,
                outputs,
                dynamic_batch=dynamic_batch,
                batch_size=batch_size,
                threads=threads,
                fixed=whole,
            )
            return self.outputs.write(values, fresh=fresh_outputs)
        return self.placed.run(
            model_id, self.specs[spec_number], feeds, outputs, dynamic_batch=dynamic_batch, threads=threads, fresh=fresh_outputs
        )

    def _layer_table(
        self,
        model_id: str,
        folder: str,
        shape: tuple[int, ...],
        dtype: str,
        dynamic_batch: bool,
        layout: str,
        others: dict[str, Any],
    ) -> Any:
        self.folders[model_id] = Path(folder)
        return self.runtime.layer_table(model_id, shape, dtype, dynamic_batch=dynamic_batch, layout=layout, others=others)

    def _describe(self, model_id: str, folder: str, side_names: dict[str, str], received: int, options: dict[str, Any]) -> Any:
        upload = Upload(Path(folder), max_bytes=received, received=received, side_names=side_names)
        return describe_upload(model_id, upload, **options)


def main(conn: Connection, stop: Event, settings: WorkerSettings, block_prefix: str) -> None:
    """The process's entry point (multiprocessing ``spawn``); ``block_prefix`` names the shared
    memory it writes results into."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle: it stops us
    if settings.logging is not None:
        configure_logging(settings.logging.level, settings.logging.format)
    cap_memory(settings.memory_bytes)
    _Worker(conn, stop, settings, block_prefix).serve()
