"""The picture of each method's result. Methods return arrays; the data plane (``core``, and the
remote occlusion in ``oip``) calls these to add the PNG a client asked for."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

from convscope.methods.activations import ActivationResult, drawn_channels
from convscope.methods.filters import FiltersResult
from convscope.methods.occlusion import OcclusionResult, OcclusionScore
from convscope.render.figures import channel_grid, occlusion_figure
from convscope.render.images import encode_png, filter_grid

Event = TypeVar("Event")


def with_channel_grid(result: ActivationResult, channels: Sequence[int] = (), top_channels: int = 0) -> ActivationResult:
    """``result`` with the grid of its first sample's channel maps (``channels``, or the
    ``top_channels`` of highest mean activation, else the first ones): see ``drawn_channels``."""
    value = result.value
    if value.ndim < 2:
        return result
    shown = drawn_channels(value[0], channels, top_channels)
    caption = _channels_caption(shown, value.shape[1], channels, top_channels)
    return dataclasses.replace(result, png=encode_png(channel_grid(value[0], shown, caption=caption)), shown_channels=shown)


def _channels_caption(shown: tuple[int, ...], count: int, channels: Sequence[int], top: int) -> str:
    if top:
        return f"top {len(shown)} of {count} channels by mean activation, best first"
    if channels:
        return f"{len(shown)} chosen of {count} channels"
    return f"all {count} channels" if len(shown) == count else f"channels 0-{len(shown) - 1} of {count}"


def with_filter_grid(result: FiltersResult) -> FiltersResult:
    """``result`` with its Conv filters drawn as a grid (grey = 0); 1-D or 3-D kernels get none."""
    if result.weights.ndim != 4:
        return result
    return dataclasses.replace(result, png=encode_png(filter_grid(result.weights)))


def with_occlusion_figure(events: Iterable[Event]) -> Iterator[Event]:
    """The events of an occlusion run, its result with the figure of each target's map."""
    for event in events:
        yield dataclasses.replace(event, png=occlusion_png(event)) if isinstance(event, OcclusionResult) else event  # type: ignore[misc]


def occlusion_png(result: OcclusionResult) -> bytes:
    quantity = "probability" if result.score is OcclusionScore.PROBABILITY else "score"
    titles = [f"drop in {quantity} of {label or f'entry {target}'}" for target, label in zip(result.targets, result.labels)]
    return encode_png(occlusion_figure(result.maps, result.picture, titles))
