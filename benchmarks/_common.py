"""Timing helpers shared by the benchmarks (torch-free): median of repeats, interleaved peers,
onnxruntime's per-op profile, JSON output next to the script."""

from __future__ import annotations

import contextlib
import json
import platform
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from convscope.core import Convscope
from convscope.runtime.context import available_cores
from convscope.runtime.providers import provider_settings, session_options, usable_providers
from convscope.workers.pool import SandboxSettings
from convscope.workers.runtime import SandboxedRuntime

RESULTS = Path(__file__).resolve().parent / "results"


def median_seconds(work: Callable[[], object], *, repeats: int = 7, warmup: int = 2) -> float:
    for _ in range(warmup):
        work()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


@contextlib.contextmanager
def sandboxed_core() -> Iterator[Convscope]:
    """A data plane whose models run in worker processes as ``convscope serve`` runs them (its
    default settings, so as many workers), on a store of its own, its workers started: the peer
    that prices the sandbox against in-process runs."""
    with tempfile.TemporaryDirectory() as store:
        core = Convscope(Path(store), sandbox=SandboxSettings())
        try:
            assert isinstance(core.runtime, SandboxedRuntime)
            core.runtime.pool.wait_ready()
            yield core
        finally:
            core.close()


def processes_cpu_seconds(pids: Callable[[], Sequence[int]]) -> Callable[[], float]:
    """A clock of the CPU seconds the processes ``pids()`` (all their threads) have used, in
    nanoseconds' resolution (``/proc/PID/task/*/schedstat``; ``/proc/PID/stat`` counts 10 ms ticks)."""

    def seconds() -> float:
        total = 0
        for pid in pids():
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError):
                    total += int((task / "schedstat").read_text().split()[0])
        return total / 1e9

    return seconds


def write_results(name: str, results: dict[str, object]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {
        "machine": {"python": platform.python_version(), "processor": platform.processor(), "cpus": available_cores()},
        **results,
    }
    path.write_text(json.dumps(payload, indent=2))
    print(f"wrote {path}")
    return path


def interleaved(
    works: dict[str, Callable[[], object]],
    *,
    repeats: int,
    warmup: int = 2,
    other_cpu: Mapping[str, Callable[[], float]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Seconds per work (min and median wall clock; ``cpu_median``: the process's CPU
    seconds, plus ``other_cpu[name]``'s clock read around the work when given: the CPU a work
    spends in other processes, e.g. sandbox workers; ``rounds`` and ``cpu_rounds``: every
    repeat's), the works run in turn within every repeat.

    The machine is shared: interleaving puts every peer under the same background load, so
    the ratios stay meaningful even when the absolute times drift.  Under heavy load the
    scheduler's share decides wall clock (a peer with more threads gets more of it); CPU time
    is the work each peer did, whatever its share.
    """
    for _ in range(warmup):
        for work in works.values():
            work()
    samples: dict[str, list[float]] = {name: [] for name in works}
    cpu: dict[str, list[float]] = {name: [] for name in works}
    other_cpu = other_cpu or {}
    for _ in range(repeats):
        for name, work in works.items():
            clock = other_cpu.get(name)
            start_other = clock() if clock else 0.0
            start, start_cpu = time.perf_counter(), time.process_time()
            work()
            samples[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu + (clock() - start_other if clock else 0.0))
    return {
        name: {
            "min": min(s),
            "median": statistics.median(s),
            "cpu_median": statistics.median(cpu[name]),
            "rounds": s,
            "cpu_rounds": cpu[name],
        }
        for name, s in samples.items()
    }


def interleaved_medians(works: dict[str, Callable[[], object]], *, repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each work, timed as :func:`interleaved` does."""
    return {name: t["median"] for name, t in interleaved(works, repeats=repeats, warmup=warmup).items()}


def op_profile(
    session_bytes: bytes, feeds: dict[str, np.ndarray], *, runs: int = 5, providers: Sequence[object] | None = None
) -> dict[str, float]:
    """Milliseconds per run spent in each op type (onnxruntime's profiler), largest first;
    ``providers`` as onnxruntime takes them (default: ours, with our options)."""
    options = session_options()
    with tempfile.TemporaryDirectory() as tmp:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        chosen = list(providers) if providers is not None else provider_settings(usable_providers())
        session = ort.InferenceSession(session_bytes, options, providers=chosen)
        session.run(None, feeds)
        for _ in range(runs):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    per_op: Counter[str] = Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"]
    return {op: round(us / (runs + 1) / 1e3, 2) for op, us in per_op.most_common(12)}
