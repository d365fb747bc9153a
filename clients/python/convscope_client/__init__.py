"""Thin typed client for the convscope gRPC service: numpy arrays and small dataclasses in and out."""

from convscope_client.client import Client
from convscope_client.errors import ConvscopeError
from convscope_client.jobs import ServerFolder, ServerPath
from convscope_client.transport import Tls
from convscope_client.types import (
    Activation,
    Attribution,
    ChannelStats,
    DeadFilterFractions,
    Embedding,
    Filters,
    Hit,
    LayerInfo,
    ModelInfo,
    Occlusion,
    Progress,
    ReceptiveField,
    SkippedItem,
    TensorInfo,
    TopActivations,
)

__all__ = [
    "Activation",
    "Attribution",
    "ChannelStats",
    "Client",
    "ConvscopeError",
    "DeadFilterFractions",
    "Embedding",
    "Filters",
    "Hit",
    "LayerInfo",
    "ModelInfo",
    "Occlusion",
    "Progress",
    "ReceptiveField",
    "ServerFolder",
    "ServerPath",
    "SkippedItem",
    "TensorInfo",
    "Tls",
    "TopActivations",
]
