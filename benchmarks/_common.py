"""Timing helpers shared by the benchmarks (torch-free): median of repeats, interleaved peers, JSON output next to the script."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

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


def write_results(name: str, results: dict[str, object]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"machine": {"python": platform.python_version(), "processor": platform.processor(), "cpus": _cpus()}, **results}
    path.write_text(json.dumps(payload, indent=2))
    print(f"wrote {path}")
    return path


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def interleaved(works: dict[str, Callable[[], object]], *, repeats: int,
                warmup: int = 2) -> dict[str, dict[str, float]]:
    """Seconds per work (min and median), the works run in turn within every repeat.

    The machine is shared: interleaving puts every peer under the same background load, so
    the ratios stay meaningful even when the absolute times drift.
    """
    for _ in range(warmup):
        for work in works.values():
            work()
    samples: dict[str, list[float]] = {name: [] for name in works}
    for _ in range(repeats):
        for name, work in works.items():
            start = time.perf_counter()
            work()
            samples[name].append(time.perf_counter() - start)
    return {name: {"min": min(s), "median": statistics.median(s)} for name, s in samples.items()}


def interleaved_medians(works: dict[str, Callable[[], object]], *, repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each work, timed as :func:`interleaved` does."""
    return {name: t["median"] for name, t in interleaved(works, repeats=repeats, warmup=warmup).items()}
