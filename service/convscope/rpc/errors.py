"""The one place where exceptions become gRPC statuses."""

from __future__ import annotations

import functools
import inspect
import logging
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from convscope.errors import ServiceError

log = logging.getLogger(__name__)

Handler = TypeVar("Handler", bound=Callable[..., Any])


def _abort(context: grpc.ServicerContext, error: BaseException) -> None:
    if isinstance(error, ServiceError):
        context.abort(error.status, str(error))
    # Internals (paths, stack frames, library text) stay in the server log, tagged for lookup.
    incident = uuid.uuid4().hex[:8]
    log.exception("internal error %s", incident, exc_info=error)
    context.abort(grpc.StatusCode.INTERNAL, f"internal server error (incident {incident}; see the server log)")


def _is_abort(error: BaseException, context: grpc.ServicerContext) -> bool:
    # context.abort raises a bare Exception after setting the status: let it through untouched.
    return type(error) is Exception and context.code() is not None


def translate_errors(handler: Handler) -> Handler:
    """Wrap a servicer method (unary or streaming) so every failure becomes the right status."""
    if inspect.isgeneratorfunction(handler):

        @functools.wraps(handler)
        def streaming(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            try:
                yield from handler(self, request, context)
            except BaseException as error:
                if isinstance(error, GeneratorExit) or _is_abort(error, context):
                    raise
                _abort(context, error)

        return streaming  # type: ignore[return-value]

    @functools.wraps(handler)
    def unary(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return handler(self, request, context)
        except Exception as error:
            if _is_abort(error, context):
                raise
            _abort(context, error)

    return unary  # type: ignore[return-value]
