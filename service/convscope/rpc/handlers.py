"""Rebuild a gRPC method handler with its behaviour or (de)serializers wrapped, keeping its kind.

Server interceptors (tokens, limits, metrics) only get the handler grpc chose; to act around the
call they return a copy built by the factory of the same kind (unary/streaming each way).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import grpc

Behaviour = Callable[[Any, grpc.ServicerContext], Any]
Coder = Callable[[Any], Any] | None

_FACTORIES = {
    (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
    (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
    (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
    (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
}


def method_name(full_method: str) -> str:
    """``/convscope.v1.Convscope/UploadModel`` → ``UploadModel``."""
    return full_method.rsplit("/", 1)[-1]


def wrap_handler(
    handler: grpc.RpcMethodHandler,
    *,
    behaviour: Callable[[Behaviour], Behaviour] | None = None,
    deserializer: Callable[[Coder], Coder] | None = None,
    serializer: Callable[[Coder], Coder] | None = None,
) -> grpc.RpcMethodHandler:
    attribute, factory = _FACTORIES[(handler.request_streaming, handler.response_streaming)]
    inner = getattr(handler, attribute)
    return factory(
        behaviour(inner) if behaviour else inner,
        request_deserializer=deserializer(handler.request_deserializer) if deserializer else handler.request_deserializer,
        response_serializer=serializer(handler.response_serializer) if serializer else handler.response_serializer,
    )


CallScope = Callable[[grpc.ServicerContext], AbstractContextManager[grpc.ServicerContext]]


def around(handler: grpc.RpcMethodHandler, scope: CallScope, **coders: Callable[[Coder], Coder]) -> grpc.RpcMethodHandler:
    """``handler`` run inside ``scope(context)``, which yields the context the handler gets; for
    a streaming response the scope spans the whole stream, not just the call that returns it."""

    def unary(inner: Behaviour) -> Behaviour:
        def scoped(request: Any, context: grpc.ServicerContext) -> Any:
            with scope(context) as inner_context:
                return inner(request, inner_context)

        return scoped

    def streaming(inner: Behaviour) -> Behaviour:
        def scoped(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            with scope(context) as inner_context:
                yield from inner(request, inner_context)

        return scoped

    return wrap_handler(handler, behaviour=streaming if handler.response_streaming else unary, **coders)
