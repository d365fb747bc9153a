"""Thin typed client for the convscope gRPC service: numpy arrays and small dataclasses in and out."""

from convscope_client.client import Client
from convscope_client.errors import ConvscopeError
from convscope_client.types import (
    Activation,
    ChannelStats,
    DeadFilters,
    Filters,
    LayerInfo,
    ModelInfo,
    TensorInfo,
)

__all__ = [
    "Activation",
    "ChannelStats",
    "Client",
    "ConvscopeError",
    "DeadFilters",
    "Filters",
    "LayerInfo",
    "ModelInfo",
    "TensorInfo",
]
