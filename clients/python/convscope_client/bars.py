"""Progress bars of the command-line client: one status line on stderr each."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from convscope_client.types import Progress


class _StderrBar:
    """One status line on stderr, redrawn in place, with the rate and the time left;
    ``close`` ends it with a newline."""

    def __init__(self, width: int, unit: str, rate_unit: str, stream: TextIO | None = None) -> None:
        self.width = width
        self.unit = unit
        self.rate_unit = rate_unit
        self.stream = stream or sys.stderr
        self.drawn = False

    def _draw(self, done: int, total: int | None, rate: float, eta: float | None, extra: str = "") -> None:
        if total:
            filled = self.width * min(done, total) // total
            bar = f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total}"
        else:
            bar = f"{done}"
        eta_text = f", ETA {eta:.0f} s" if eta is not None else ""
        self.stream.write(f"\r{bar} {self.unit}, {rate:.1f} {self.rate_unit}{eta_text}{extra}   ")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


class _TimedBar(_StderrBar):
    """A bar whose rate and ETA it measures itself, from its first callback."""

    def __init__(self, width: int, unit: str, stream: TextIO | None, clock: Callable[[], float]) -> None:
        super().__init__(width, unit, f"{unit}/s", stream)
        self.clock = clock
        self.started: float | None = None

    def _pace(self, done: int, total: int) -> tuple[float, float | None]:
        now = self.clock()
        if self.started is None:
            self.started = now
        elapsed = now - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        return rate, ((total - done) / rate if rate > 0 else None)


class ProgressBar(_TimedBar):
    """``progress(done, total)`` callbacks (occlusion positions) redraw the bar."""

    def __init__(self, width: int = 40, stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(width, "positions", stream, clock)

    def __call__(self, done: int, total: int) -> None:
        rate, eta = self._pace(done, total)
        self._draw(done, total, rate, eta)


class StepBar(_TimedBar):
    """``progress(step, steps, loss)`` callbacks of optimization loops (invert, visualize,
    adversarial) redraw the bar with the loss."""

    def __init__(self, width: int = 40, stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(width, "steps", stream, clock)

    def __call__(self, step: int, steps: int, loss: float) -> None:
        rate, eta = self._pace(step, steps)
        self._draw(step, steps, rate, eta, f", loss {loss:.4g}")


class JobProgressBar(_StderrBar):
    """A one-line text bar on stderr for dataset jobs: images done, rate and ETA."""

    def __init__(self, width: int = 30, stream: TextIO | None = None) -> None:
        super().__init__(width, "images", "img/s", stream)

    def __call__(self, progress: Progress) -> None:
        skipped = f", {progress.skipped} skipped" if progress.skipped else ""
        self._draw(progress.done + progress.skipped, progress.total, progress.rate, progress.eta, skipped)
