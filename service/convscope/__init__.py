"""convscope: make any ONNX vision model inspectable over gRPC.

The package tree reads like the pipeline: ``model`` (store) → ``graph`` (passes) →
``runtime`` (onnxruntime sessions) → ``methods`` (techniques) → ``rpc`` (gRPC); ``render``
draws arrays and stands apart. ``core.Convscope`` is the data plane all front ends call.
"""

from convscope.core import Convscope
from convscope.errors import ConvscopeError
from convscope.rpc.server import ServerConfig, create_server

__all__ = ["Convscope", "ConvscopeError", "ServerConfig", "create_server"]
