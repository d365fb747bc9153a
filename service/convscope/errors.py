"""Errors a client can act on, each carrying the gRPC status it maps to.

Every layer raises these; only ``rpc`` turns them into statuses (one place, see
``rpc/errors.py``).  Anything else that escapes becomes ``INTERNAL`` without its
text, so server internals never leak to clients.
"""

from __future__ import annotations

import grpc


class ServiceError(Exception):
    """Base class: a failure whose message is written for the person who sent the request."""

    status: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidArgument(ServiceError):
    status = grpc.StatusCode.INVALID_ARGUMENT


class InvalidModel(InvalidArgument):
    """The uploaded bytes are not a model we can load (malformed, truncated, unsafe)."""


class NotFound(ServiceError):
    status = grpc.StatusCode.NOT_FOUND


class ResourceExhausted(ServiceError):
    status = grpc.StatusCode.RESOURCE_EXHAUSTED


class PermissionDenied(ServiceError):
    status = grpc.StatusCode.PERMISSION_DENIED


class Unimplemented(ServiceError):
    status = grpc.StatusCode.UNIMPLEMENTED


class Cancelled(ServiceError):
    status = grpc.StatusCode.CANCELLED


class DeadlineExceeded(Cancelled):
    """Work stopped because the call's deadline passed: a cancellation to the code that cleans
    up after one, DEADLINE_EXCEEDED to the client."""

    status = grpc.StatusCode.DEADLINE_EXCEEDED


class UnsupportedOp(Unimplemented):
    """A node whose gradient (or other rule) we do not know; names the op and the node."""

    def __init__(self, op_type: str, node_name: str, why: str = "") -> None:
        self.op_type = op_type
        self.node_name = node_name
        detail = f": {why}" if why else ""
        super().__init__(f"op {op_type!r} (node {node_name!r}) is not supported here{detail}")


class RemoteFailed(ServiceError):
    """A remote inference server refused or failed a call: its status, passed on to our caller."""

    def __init__(self, status: grpc.StatusCode, message: str) -> None:
        self.status = status
        super().__init__(message)


class OutOfMemory(ResourceExhausted):
    """An allocation failed: the model needs more memory than the process may use."""


class FailedPrecondition(ServiceError):
    status = grpc.StatusCode.FAILED_PRECONDITION


class WorkerCrashed(ServiceError):
    """A worker process died while validating or running a model; the message names the model.
    INTERNAL: the server failed, though the model is to blame."""

    status = grpc.StatusCode.INTERNAL
