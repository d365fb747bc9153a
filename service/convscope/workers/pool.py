"""A pool of sandboxed worker processes (``child.py``) and how requests reach them.

Routing: a model prefers the worker its id hashes to, so its sessions are built once; when
that worker is busy, a request goes to an idle worker that has run the model before, then to
any idle worker (it builds the session there too), else it waits for the preferred one. Among
idle workers, one whose last results are no longer held comes first (``shm.ReadBlocks.lent``).

Failures, each of which costs the worker its life (a new one is spawned at once):
- the process dies (a signal, an abort in onnxruntime): INTERNAL naming the model; after
  ``quarantine_after`` such deaths the model is refused with FAILED_PRECONDITION until it is
  uploaded again or the server restarts;
- an allocation fails under the memory cap: RESOURCE_EXHAUSTED;
- the call's deadline, its cancellation or the pool's time budget passes: the worker is told to
  stop (``RunOptions.terminate``, checked by onnxruntime between kernels) and killed if it has
  not answered ``grace_s`` later: DEADLINE_EXCEEDED (or CANCELLED). A worker that stops in time
  is kept.
"""

from __future__ import annotations

import collections
import itertools
import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convscope import errors, logs
from convscope.errors import DeadlineExceeded, FailedPrecondition, OutOfMemory, ServiceError, WorkerCrashed
from convscope.runtime.budget import current_budget, run_options
from convscope.workers import child, shm
from convscope.workers.slot import WorkerSlot

log = logging.getLogger(__name__)

POLL_S = 0.02  # how often a waiting call looks at its budget; a reply wakes it at once
STARTUP_TIMEOUT_S = 120.0  # spawn + importing onnxruntime: ~0.2 s idle, seconds on a loaded machine
DEFAULT_GRACE_S = 1.0
DEFAULT_LOAD_BUDGET_S = 120.0
DEFAULT_MEMORY_MB = 8192
QUARANTINE_AFTER = 3


@dataclass(frozen=True)
class SandboxSettings:
    """How models are sandboxed: ``workers`` processes (``--workers``), each capped at
    ``memory_mb`` of address space (``--worker-memory-mb``); a run may take ``run_budget_s``
    (``--worker-run-seconds``, None: the call's deadline only), validating and probing an upload
    ``load_budget_s`` (``--worker-load-seconds``); a worker told to stop is killed ``grace_s`` later."""

    workers: int = 2
    memory_mb: int | None = DEFAULT_MEMORY_MB
    run_budget_s: float | None = None
    load_budget_s: float | None = DEFAULT_LOAD_BUDGET_S
    grace_s: float = DEFAULT_GRACE_S


@dataclass(frozen=True)
class _Call:
    model_id: str
    kind: str  # the child's handler: "run", "layer_table" or "describe"
    what: str  # for messages: "running the model", "checking and loading the upload"
    budget_s: float | None
    budget_flag: str
    memory_advice: str


class WorkerPool:
    def __init__(
        self,
        settings: SandboxSettings,
        *,
        session_budget_bytes: int,
        providers: Sequence[str] | None = None,
        quarantine_after: int = QUARANTINE_AFTER,
    ) -> None:
        size = settings.workers
        if size < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.memory_mb = settings.memory_mb
        self.run_budget_s = settings.run_budget_s
        self.load_budget_s = settings.load_budget_s
        self.grace_s = settings.grace_s
        self.quarantine_after = quarantine_after
        self._settings = child.WorkerSettings(
            memory_bytes=settings.memory_mb << 20 if settings.memory_mb else None,
            # Each worker caches its own sessions: the server's budget is shared out.
            session_budget_bytes=max(1, session_budget_bytes // size),
            providers=tuple(providers) if providers else None,
            logging=logs.configured(),
        )
        self._cond = threading.Condition()
        orphans = shm.remove_orphans()
        if orphans:
            log.info("removed %d shared memory blocks left by servers that were killed", len(orphans))
        spawn, prefix, serial = multiprocessing.get_context("spawn"), shm.server_prefix(), itertools.count()
        self._slots = [WorkerSlot(spawn, self._settings, prefix, serial) for _ in range(size)]
        self._crashes: collections.Counter[str] = collections.Counter()
        self._quarantined: dict[str, str] = {}
        self.replaced: collections.Counter[str] = collections.Counter()  # workers replaced, by cause
        self.providers: tuple[str, ...] | None = None  # what loaded in the workers, once one has started
        self.peak_address_space = 0  # the most any worker reported holding (bytes): at most the cap
        self.on_replace: list[Callable[[str], None]] = []  # metrics hook: called with the cause

    # -- processes

    def _replace(self, slot: WorkerSlot, cause: str) -> None:
        """Kill ``slot``'s process (if alive) and start a fresh one in its place; the caller
        still holds the slot."""
        old_pid = slot.restart()
        with self._cond:
            self.replaced[cause] += 1
        log.warning("worker pid %s replaced by pid %s: %s", old_pid, slot.process.pid, cause)
        for hook in self.on_replace:
            hook(cause)

    def _await_ready(self, slot: WorkerSlot) -> None:
        if slot.ready:
            return
        if not slot.wait(STARTUP_TIMEOUT_S):
            self._replace(slot, "crashed")
            raise WorkerCrashed(f"a worker process did not start within {STARTUP_TIMEOUT_S:g} s; the server is overloaded")
        try:
            _, _, providers = slot.receive()
        except (EOFError, OSError):
            code = slot.process.exitcode
            self._replace(slot, "crashed")
            raise WorkerCrashed(f"a worker process died while starting (exit code {code}); it was replaced") from None
        slot.ready = True
        self.providers = tuple(providers)

    @property
    def size(self) -> int:
        return len(self._slots)

    def worker_providers(self) -> tuple[str, ...]:
        """The execution providers the workers run on (waits for the first worker to start)."""
        if self.providers is None:
            slot = self._checkout_slot(0)
            try:
                self._await_ready(slot)
            finally:
                self._checkin(slot)
        assert self.providers is not None
        return self.providers

    def wait_ready(self) -> None:
        """Block until every worker has started (benchmarks and tests measure warm workers)."""
        for index in range(len(self._slots)):
            slot = self._checkout_slot(index)
            try:
                self._await_ready(slot)
            finally:
                self._checkin(slot)

    def close(self) -> None:
        for slot in self._slots:
            slot.close()

    # -- routing

    def _checkout(self, model_id: str) -> WorkerSlot:
        preferred = int(model_id[:8], 16) % len(self._slots) if model_id[:8].isalnum() else 0
        with self._cond:
            while True:
                slots = self._slots
                order = [slots[preferred]]
                order += [s for s in slots if model_id in s.models and s is not slots[preferred]]
                order += [s for s in slots if s not in order]
                # A worker whose last results the caller still holds would need a fresh block.
                idle = next((s for s in order if not s.busy and not s.outputs.lent), None)
                idle = idle or next((s for s in order if not s.busy), None)
                if idle is not None:
                    idle.busy = True
                    idle.models.add(model_id)
                    return idle
                self._cond.wait()

    def _checkout_slot(self, index: int) -> WorkerSlot:
        with self._cond:
            while self._slots[index].busy:
                self._cond.wait()
            self._slots[index].busy = True
            return self._slots[index]

    def _checkin(self, slot: WorkerSlot) -> None:
        with self._cond:
            slot.busy = False
            self._cond.notify_all()

    # -- calls

    def run(
        self,
        model_id: str,
        folder: Path,
        spec: object,
        feeds: Mapping[str, np.ndarray],
        outputs: Sequence[str],
        *,
        dynamic_batch: bool,
        threads: int,
        batch_size: int | None = None,
        fixed: Mapping[str, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """One run; or, with ``batch_size``, the worker's ``Runtime.run_batched`` over the batch
        (``fixed`` feeds go whole to each of its runs): one exchange for all of them."""
        self._refuse_quarantined(model_id)
        call = self._running(model_id, "run")

        def exchange(slot: WorkerSlot) -> dict[str, np.ndarray]:
            inputs, layout = slot.write_inputs({**feeds, **(fixed or {})})
            spec_number, new_spec, forget_specs = slot.spec_number(spec)
            results, result_layout = self._exchange(
                slot,
                call,
                dict(
                    model_id=model_id,
                    folder=str(folder),
                    spec_number=spec_number,
                    spec=new_spec,
                    forget_specs=forget_specs,
                    inputs=inputs,
                    layout=layout,
                    outputs=list(outputs),
                    fresh_outputs=slot.outputs.lent,
                    dynamic_batch=dynamic_batch,
                    threads=threads,
                    batch_size=batch_size,
                    fixed=list(fixed or ()),
                ),
            )
            return slot.read_outputs(results, result_layout)

        return self._holding_slot(model_id, exchange)

    def layer_table(
        self,
        model_id: str,
        folder: Path,
        shape: tuple[int, ...],
        dtype: str,
        *,
        dynamic_batch: bool,
        layout: str,
        others: Mapping[str, np.ndarray],
    ) -> Any:
        """``Runtime.layer_table`` in a worker: the model runs once at ``shape`` with every tensor
        exposed. ``others`` (one sample of the model's other inputs, small) travel pickled."""
        self._refuse_quarantined(model_id)
        return self._call(
            self._running(model_id, "layer_table"),
            dict(
                model_id=model_id,
                folder=str(folder),
                shape=shape,
                dtype=dtype,
                dynamic_batch=dynamic_batch,
                layout=layout,
                others=dict(others),
            ),
        )

    def _running(self, model_id: str, kind: str) -> _Call:
        return _Call(
            model_id,
            kind,
            "running the model",
            self.run_budget_s,
            "--worker-run-seconds",
            "send a smaller input or batch, or ask the operator for a larger --worker-memory-mb",
        )

    def describe(
        self, model_id: str, folder: Path, side_names: Mapping[str, str], received: int, options: Mapping[str, Any]
    ) -> Any:
        """``runtime.ingest.describe_upload`` on the upload's files, in a worker."""
        call = _Call(
            model_id,
            "describe",
            "checking and loading the upload",
            self.load_budget_s,
            "--worker-load-seconds",
            "the model is refused unless the operator raises --worker-memory-mb",
        )
        return self._call(
            call,
            dict(model_id=model_id, folder=str(folder), side_names=dict(side_names), received=received, options=dict(options)),
        )

    def _call(self, call: _Call, body: dict[str, Any]) -> Any:
        return self._holding_slot(call.model_id, lambda slot: self._exchange(slot, call, body))

    def _holding_slot(self, model_id: str, work: Callable[[WorkerSlot], Any]) -> Any:
        slot = self._checkout(model_id)
        try:
            if not slot.process.is_alive():  # died while idle (the OOM killer, an operator): not this model's doing
                self._replace(slot, "crashed")
            self._await_ready(slot)
            return work(slot)
        finally:
            self._checkin(slot)

    def _exchange(self, slot: WorkerSlot, call: _Call, body: dict[str, Any]) -> Any:
        budget = current_budget()
        deadlines = [time.monotonic() + call.budget_s] if call.budget_s else []
        if budget is not None and budget.deadline is not None:
            deadlines.append(budget.deadline)
        deadline = min(deadlines) if deadlines else None
        seconds = None if deadline is None else max(0.0, deadline - time.monotonic())
        slot.send(call.kind, seconds, f"{call.what} of model {call.model_id[:12]}", body)
        stop_sent: float | None = None
        with run_options() as options:  # the call's budget sets .terminate: its deadline or a cancellation
            while not slot.wait(POLL_S):
                now = time.monotonic()
                if stop_sent is None and (
                    (options is not None and options.terminate) or (deadline is not None and now >= deadline)
                ):
                    slot.stop.set()
                    stop_sent = now
                elif stop_sent is not None and now - stop_sent > self.grace_s:
                    self._replace(
                        slot, "cancelled" if budget is not None and budget.stopped and not budget.expired else "deadline"
                    )
                    raise self._stopped(call)
        try:
            reply = slot.receive()
        except (EOFError, OSError):
            raise self._died(slot, call) from None
        status, *payload, slot.sessions, slot.session_bytes, peak = reply
        self.peak_address_space = max(self.peak_address_space, peak)
        if status == "ok":
            return payload[0]
        if stop_sent is not None:  # onnxruntime obeyed the terminate flag: the worker is fine
            raise self._stopped(call)
        if status == "memory":
            self._replace(slot, "memory")
            raise OutOfMemory(
                f"model {call.model_id[:12]} needs more memory than a worker may use ({self.memory_mb} MiB, "
                f"--worker-memory-mb) while {call.what}: {payload[0]}; {call.memory_advice}"
            )
        if status == "refused":
            raise _rebuilt(*payload)
        raise RuntimeError(f"worker failed while {call.what} of model {call.model_id}: {payload[0]}")

    def _stopped(self, call: _Call) -> ServiceError:
        budget = current_budget()
        if budget is not None and budget.stopped:
            return budget.stopped_error()
        return DeadlineExceeded(
            f"{call.what} of model {call.model_id[:12]} ran past the server's time budget of {call.budget_s:g} s "
            f"({call.budget_flag}) and was stopped; ask for less work, or the operator for a larger {call.budget_flag}"
        )

    def _died(self, slot: WorkerSlot, call: _Call) -> WorkerCrashed:
        slot.process.join(timeout=10)
        code = slot.process.exitcode
        how = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exited with code {code}"
        with self._cond:
            self._crashes[call.model_id] += 1
            crashes = self._crashes[call.model_id]
            if crashes >= self.quarantine_after:
                self._quarantined[call.model_id] = f"the worker {how} while {call.what}"
        self._replace(slot, "crashed")
        log.error("worker running model %s %s while %s (%d crashes)", call.model_id[:12], how, call.what, crashes)
        quarantine = (
            f"; the model is quarantined after {crashes} crashes"
            if crashes >= self.quarantine_after
            else f"; {self.quarantine_after - crashes} more and the model is quarantined"
        )
        return WorkerCrashed(
            f"the worker process {how} while {call.what} of model {call.model_id[:12]}: the model crashes onnxruntime"
            f"{quarantine}. The worker was replaced and the server keeps serving"
        )

    # -- quarantine

    def _refuse_quarantined(self, model_id: str) -> None:
        with self._cond:
            reason = self._quarantined.get(model_id)
        if reason is not None:
            raise FailedPrecondition(
                f"model {model_id[:12]} is quarantined: it crashed {self.quarantine_after} worker processes "
                f"(last: {reason}); upload it again to retry it, or ask the operator to restart the server"
            )

    def release(self, model_id: str) -> None:
        """Forget a model's crashes (it was uploaded again)."""
        with self._cond:
            self._crashes.pop(model_id, None)
            self._quarantined.pop(model_id, None)

    # -- what metrics and tests read

    def session_count(self) -> int:
        return sum(slot.sessions for slot in self._slots)

    def cache_bytes(self) -> int:
        return sum(slot.session_bytes for slot in self._slots)

    def pids(self) -> list[int]:
        return [slot.process.pid for slot in self._slots if slot.process.pid is not None]


def _rebuilt(class_name: str, message: str) -> ServiceError:
    """The worker's ServiceError as the same class here (constructors differ: set the message)."""
    cls = getattr(errors, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, ServiceError)):
        cls = ServiceError
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    return error
