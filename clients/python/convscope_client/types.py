"""Results as small dataclasses holding numpy arrays."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]  # -1 where symbolic


@dataclass(frozen=True)
class LayerInfo:
    name: str  # producing node
    op_type: str
    tensor: str  # what requests refer to
    shape: tuple[int, ...]  # at batch 1
    dtype: str


@dataclass(frozen=True)
class ModelInfo:
    id: str
    name: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    layers: tuple[LayerInfo, ...]
    labels: tuple[str, ...] = ()
    preprocessing: dict[str, object] = field(default_factory=dict)
    dynamic_batch: bool = True
    size_bytes: int = 0


@dataclass(frozen=True)
class ChannelStats:
    mean: np.ndarray
    max: np.ndarray
    zero_fraction: np.ndarray


@dataclass(frozen=True)
class Activation:
    tensor: str
    value: np.ndarray | None
    stats: ChannelStats
    png: bytes


@dataclass(frozen=True)
class Filters:
    node: str
    weights: np.ndarray
    png: bytes
    smoothness: np.ndarray  # per output filter; NaN for 1×1 kernels
    mean_smoothness: float


@dataclass(frozen=True)
class DeadFilters:
    tensor: str
    zero_fraction: np.ndarray
    dead: tuple[int, ...]
