"""How the client reaches a server: plaintext or TLS (mutual when it holds a certificate), and
the bearer token a server started with ``--token-file`` asks for."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Tls:
    """``ca``: the certificate that signed the server's (default: the system's roots);
    ``cert``/``key``: this client's certificate, for servers that require one (mutual TLS)."""

    ca: PathLike | None = None
    cert: PathLike | None = None
    key: PathLike | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        if (self.cert is None) != (self.key is None):
            raise ValueError("mutual TLS needs both the client certificate and its key")

        def read(path: PathLike | None) -> bytes | None:
            return Path(path).read_bytes() if path is not None else None

        return grpc.ssl_channel_credentials(read(self.ca), read(self.key), read(self.cert))


def open_channel(address: str, tls: bool | Tls | None, options: Sequence[tuple[str, int]]) -> grpc.Channel:
    """``tls``: ``None``/``False`` plaintext, ``True`` TLS trusting the system's roots, or a :class:`Tls`."""
    if not tls:
        return grpc.insecure_channel(address, options=list(options))
    settings = tls if isinstance(tls, Tls) else Tls()
    return grpc.secure_channel(address, settings.credentials(), options=list(options))


def auth_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()
