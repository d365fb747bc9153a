"""convscope: make any ONNX vision model inspectable over gRPC.

The package tree reads like the pipeline: ``model`` (store) → ``graph`` (passes) →
``runtime`` (onnxruntime sessions) → ``methods`` (techniques) → ``rpc`` (gRPC); ``render``
draws arrays and stands apart. ``core.Convscope`` is the data plane all front ends call.
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported on first use: `convscope --help` and the client commands must not load onnxruntime.
_EXPORTS = {
    "Convscope": "convscope.core",
    "ServiceError": "convscope.errors",
    "ServerConfig": "convscope.rpc.server",
    "create_server": "convscope.rpc.server",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'convscope' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
