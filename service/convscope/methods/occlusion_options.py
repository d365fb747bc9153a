"""What an occlusion request may ask for (see ``methods/occlusion.py``): its choices and
numbers, each checked once with a message for the caller, before any image is read."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from convscope.choices import parse
from convscope.errors import InvalidArgument
from convscope_client.choices import OcclusionEngine, OcclusionFill, OcclusionScore

MAX_TARGETS = 1000


def _pair(values: Sequence[int], default: tuple[int, int], what: str) -> tuple[int, int]:
    values = list(values) or list(default)
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise InvalidArgument(f"{what} must be one or two positive integers [height, width], got {values}")
    return int(values[0]), int(values[1])


@dataclass(frozen=True)
class OcclusionOptions:
    targets: tuple[int, ...] = ()
    output: str = ""
    window: tuple[int, int] = (32, 32)
    stride: tuple[int, int] = (16, 16)
    fill: float | OcclusionFill = 0.0
    score: OcclusionScore = OcclusionScore.PROBABILITY
    engine: OcclusionEngine = OcclusionEngine.AUTO
    batch_size: int = 0  # 0: sized to the memory budget
    occluded: str = ""  # the input the box slides over; "": the image input
    tolerance: float = 0.0  # engine "approximate": the error allowed per position, in score units

    @classmethod
    def parse(
        cls,
        *,
        targets: Sequence[int] = (),
        output: str = "",
        window: Sequence[int] = (),
        stride: Sequence[int] = (),
        fill: float | str = 0.0,
        score: str = "",
        engine: str = "",
        batch_size: int = 0,
        occluded: str = "",
        tolerance: float = 0.0,
    ) -> OcclusionOptions:
        """Options from a request's plain values, each checked, with a message for the caller."""
        if isinstance(fill, str):
            parsed_fill: float | OcclusionFill = parse(OcclusionFill, fill)
        elif math.isfinite(fill):
            parsed_fill = float(fill)
        else:
            raise InvalidArgument(f"fill must be a finite number, 'mean' or 'blur', not {fill}")
        if len(targets) > MAX_TARGETS:
            raise InvalidArgument(f"ask for at most {MAX_TARGETS} targets, not {len(targets)}")
        if batch_size < 0:
            raise InvalidArgument(f"batch_size must be ≥ 0, got {batch_size}")
        parsed_engine = parse(OcclusionEngine, engine or OcclusionEngine.AUTO)
        if not (math.isfinite(tolerance) and tolerance >= 0):
            raise InvalidArgument(f"tolerance must be a finite number ≥ 0 (an error in score units), not {tolerance}")
        if tolerance and parsed_engine is not OcclusionEngine.APPROXIMATE:
            raise InvalidArgument(f"tolerance applies to engine 'approximate' only, not {parsed_engine.value!r}")
        return cls(
            targets=tuple(dict.fromkeys(int(t) for t in targets)),
            output=output,
            window=_pair(window, cls.window, "window"),
            stride=_pair(stride, cls.stride, "stride"),
            fill=parsed_fill,
            score=parse(OcclusionScore, score or OcclusionScore.PROBABILITY),
            engine=parsed_engine,
            batch_size=batch_size,
            occluded=occluded,
            tolerance=float(tolerance),
        )
