from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TypeVar

import grpc

Call = TypeVar("Call", bound=grpc.Future)
UNREACHABLE_HINT = (
    "is the server listening at that address? If it serves TLS, connect with tls= (CLI --tls-ca); "
    "if it requires client certificates, pass Tls(cert=..., key=...) (CLI --tls-cert/--tls-key)"
)


class ConvscopeError(Exception):
    """Every failed call: ``.code`` is the gRPC status, ``.message`` the server's explanation."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> ConvscopeError:
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        details = error.details() if hasattr(error, "details") else str(error)
        if code == grpc.StatusCode.UNAVAILABLE:
            # gRPC says only "Socket closed" when the two ends disagree about TLS.
            details = f"{details} ({UNREACHABLE_HINT})"
        return cls(code or grpc.StatusCode.UNKNOWN, details or "")


@contextlib.contextmanager
def streaming(call: Call) -> Iterator[Call]:
    """Read a server-streaming ``call`` inside this block: a failed call raises ConvscopeError,
    and any other exception there (Ctrl-C, a failing callback) cancels the call, so the server
    stops working on it too."""
    try:
        yield call
    except grpc.RpcError as error:
        raise ConvscopeError.from_rpc_error(error) from None
    except BaseException:
        call.cancel()
        raise
