"""Activations of any layer, per-channel statistics, and dead filters (Zeiler & Fergus 2013;
Yosinski et al. 2015 for the per-layer channel grids)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Sized
from dataclasses import dataclass

import numpy as np

from convscope.errors import InvalidArgument
from convscope.model.preprocessing import ModelInput
from convscope.model.types import ModelRecord
from convscope.runtime.context import MethodContext


@dataclass(frozen=True)
class ChannelStats:
    mean: np.ndarray
    max: np.ndarray
    zero_fraction: np.ndarray


@dataclass(frozen=True)
class ActivationResult:
    tensor: str
    value: np.ndarray
    stats: ChannelStats | None
    png: bytes = b""  # added by render/results.py when asked for
    shown_channels: tuple[int, ...] = ()  # what the PNG draws


MAX_DRAWN_CHANNELS = 256  # a grid of more is too small to read


def resolve_layers(record: ModelRecord, layers: Sequence[str] | None) -> list[str]:
    """Requested tensor names, checked against the layer table; None means all of them."""
    if not layers:
        return [layer.tensor for layer in record.layers]
    return list(dict.fromkeys(record.tensor(name) for name in layers))


def channel_view(value: np.ndarray) -> np.ndarray:
    """[N, C, rest...] → [N, C, positions]; vectors [N] count as one channel."""
    if value.ndim == 1:
        return value.reshape(-1, 1, 1)
    return value.reshape(value.shape[0], value.shape[1], -1)


def channel_stats(value: np.ndarray) -> ChannelStats:
    """Reductions straight over (batch, positions): no transposed copy of large maps."""
    view = channel_view(value)
    positions = view.shape[0] * view.shape[2]
    if positions == 0:
        empty = np.zeros(view.shape[1], np.float32)
        return ChannelStats(empty, empty, empty)
    # Reduce the contiguous positions axis first (numpy's pairwise sum keeps float32 accurate).
    return ChannelStats(
        mean=(view.sum(axis=2).sum(axis=0) / positions).astype(np.float32),
        max=view.max(axis=2).max(axis=0).astype(np.float32),
        zero_fraction=(1 - (view != 0).sum(axis=2).sum(axis=0) / positions).astype(np.float32),
    )


def all_zero_per_sample(value: np.ndarray) -> np.ndarray:
    """[N, C] booleans: the channel is zero at every position of that sample."""
    return ~channel_view(value).any(axis=2)


def activations(
    context: MethodContext,
    record: ModelRecord,
    batch: np.ndarray,
    layers: Sequence[str] | None,
    *,
    statistics: bool = True,
    others: Mapping[str, np.ndarray] | None = None,
) -> list[ActivationResult]:
    """``others``: the model's other inputs by name, fed as given."""
    names = resolve_layers(record, layers)
    values = context.forward(record, batch, names, others=others)
    return [ActivationResult(name, values[name], channel_stats(values[name]) if statistics else None) for name in names]


def drawn_channels(sample: np.ndarray, channels: Sequence[int], top: int) -> tuple[int, ...]:
    """The channels a grid draws: those asked for, else the ``top`` of highest mean activation
    on ``sample`` (best first), else the first ``MAX_DRAWN_CHANNELS``."""
    count = sample.shape[0]
    if channels and top:
        raise InvalidArgument("name the channels to draw or ask for the top ones, not both")
    if channels:
        bad = [c for c in channels if not 0 <= c < count]
        if bad:
            raise InvalidArgument(f"channel {bad[0]} is out of range: the tensor has {count} channels (0..{count - 1})")
        return tuple(int(c) for c in channels[:MAX_DRAWN_CHANNELS])
    if top < 0:
        raise InvalidArgument(f"top_channels must be positive, got {top}")
    if top:
        means = sample.reshape(count, -1).mean(axis=1)
        return tuple(int(c) for c in np.argsort(-means, kind="stable")[: min(top, MAX_DRAWN_CHANNELS)])
    return tuple(range(min(count, MAX_DRAWN_CHANNELS)))


@dataclass(frozen=True)
class DeadFilterReport:
    tensor: str
    zero_fraction: np.ndarray  # per channel: share of samples where the channel is zero everywhere
    dead: np.ndarray  # channel indices at or over the threshold


@dataclass(frozen=True)
class DeadFiltersResult:
    reports: list[DeadFilterReport]
    samples: int


class DeadFilterCounts:
    """Per channel of each layer with a channel axis, on how many samples it is zero everywhere
    (dead ReLUs), fed batch by batch: by ``dead_filters`` and, as an accumulator, by dataset jobs."""

    needs_pictures = False

    def __init__(self, record: ModelRecord, layers: Sequence[str] | None, *, threshold: float = 1.0) -> None:
        if not 0 < threshold <= 1:
            raise InvalidArgument(f"threshold must be in (0, 1], got {threshold}")
        names = [name for name in resolve_layers(record, layers) if len(record.layer(name).shape) >= 2]
        self.counts = {name: np.zeros(record.layer(name).shape[1], np.int64) for name in names}
        self.threshold = threshold
        self.samples = 0

    @property
    def tensors(self) -> list[str]:
        return list(self.counts)

    def add(self, samples: Sized, values: dict[str, np.ndarray]) -> None:
        self.add_reduced(samples, self.reduce(values))

    def reduce(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """What ``add`` keeps of a batch's tensors (computed where the batch ran, for Ray)."""
        return {name: all_zero_per_sample(values[name]).sum(axis=0) for name in self.counts}

    def add_reduced(self, samples: Sized, reduced: dict[str, np.ndarray]) -> None:
        for name, count in self.counts.items():
            count += reduced[name]
        self.samples += len(samples)

    def result(self) -> DeadFiltersResult:
        reports = []
        for name, count in self.counts.items():
            fraction = count / max(1, self.samples)
            reports.append(DeadFilterReport(name, fraction, np.flatnonzero(fraction >= self.threshold - 1e-9)))
        return DeadFiltersResult(reports, self.samples)


def dead_filters(
    context: MethodContext,
    record: ModelRecord,
    inputs: Sequence[ModelInput],
    layers: Sequence[str] | None,
    *,
    threshold: float = 1.0,
) -> DeadFiltersResult:
    """Per channel, the fraction of inputs on which it is entirely zero (dead ReLUs); each
    batch with its own values of the model's other inputs."""
    counts = DeadFilterCounts(record, layers, threshold=threshold)
    for model_input in inputs:
        counts.add(model_input.batch, context.forward(record, model_input.batch, counts.tensors, others=model_input.others))
    return counts.result()
