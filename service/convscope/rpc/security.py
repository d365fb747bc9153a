"""Who may call: bearer tokens with a role, checked in a server interceptor, and TLS credentials.

The token file has one token per line: ``NAME ROLE TOKEN`` (whitespace-separated; ``#`` starts
a comment). ``read`` tokens may call every method that changes nothing; uploads and deletes
need ``write``. The health service stays open, so load balancers probe without a token.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path

import grpc

from convscope.rpc.handlers import Behaviour, method_name, wrap_handler

log = logging.getLogger(__name__)

ROLES = ("read", "write")
WRITE_METHODS = frozenset({"UploadModel", "DeleteModel"})
OPEN_SERVICES = ("/grpc.health.v1.Health/",)
# Shorter tokens are guessable; 16 random bytes in hex or base64 are over this.
MIN_TOKEN_CHARS = 16


class TokenFileError(ValueError):
    """The token file is malformed; the message names the line."""


@dataclass(frozen=True)
class Caller:
    name: str
    role: str


def load_tokens(path: Path) -> dict[str, Caller]:
    """Parse the token file, refusing what would silently weaken it (short or repeated tokens)."""
    tokens: dict[str, Caller] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        where = f"{path}, line {number}"
        if len(fields) != 3:
            raise TokenFileError(f"{where}: expected 'NAME ROLE TOKEN', got {len(fields)} field(s)")
        name, role, token = fields
        if role not in ROLES:
            raise TokenFileError(f"{where}: role {role!r} is neither of {ROLES}")
        if len(token) < MIN_TOKEN_CHARS:
            raise TokenFileError(f"{where}: the token of {name!r} is shorter than {MIN_TOKEN_CHARS} characters")
        if token in tokens:
            raise TokenFileError(f"{where}: the token of {name!r} is also {tokens[token].name!r}'s")
        tokens[token] = Caller(name, role)
    if not tokens:
        raise TokenFileError(f"{path}: no tokens (one 'NAME ROLE TOKEN' per line)")
    return tokens


def _bearer(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


class TokenInterceptor(grpc.ServerInterceptor):
    """UNAUTHENTICATED without a known token, PERMISSION_DENIED when its role is too weak."""

    def __init__(self, tokens: dict[str, Caller]) -> None:
        self._tokens = tokens

    def _caller(self, presented: str) -> Caller | None:
        # Compare against every token in constant time, so timing reveals no prefix.
        found = None
        for token, caller in self._tokens.items():
            if hmac.compare_digest(token.encode(), presented.encode()):
                found = caller
        return found

    def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(OPEN_SERVICES):
            return handler
        presented = _bearer(handler_call_details.invocation_metadata)
        caller = self._caller(presented) if presented else None
        if caller is None:
            why = "no bearer token" if presented is None else "an unknown token"
            return _refusal(
                handler,
                grpc.StatusCode.UNAUTHENTICATED,
                f"{method} needs 'authorization: Bearer TOKEN' metadata; the call came with {why} "
                "(Client(token=...), CLI --token or CONVSCOPE_TOKEN)",
            )
        if method_name(method) in WRITE_METHODS and caller.role != "write":
            return _refusal(
                handler,
                grpc.StatusCode.PERMISSION_DENIED,
                f"{method_name(method)} needs a 'write' token; {caller.name!r} has a {caller.role!r} one",
            )
        return handler


def _refusal(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    def refuse(behaviour: Behaviour) -> Behaviour:
        def refused(request: object, context: grpc.ServicerContext) -> object:
            context.abort(code, message)

        return refused

    return wrap_handler(handler, behaviour=refuse)


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    client_ca: Path | None = None  # set: mutual TLS, clients must present a certificate it signed


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    root = files.client_ca.read_bytes() if files.client_ca else None
    return grpc.ssl_server_credentials(
        [(files.key.read_bytes(), files.cert.read_bytes())],
        root_certificates=root,
        require_client_auth=root is not None,
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def warn_if_exposed(host: str, *, tokens: bool, tls: bool) -> None:
    if is_loopback(host) or (tokens and tls):
        return
    missing = " and ".join(
        what for what, there in (("tokens (--token-file)", tokens), ("TLS (--tls-cert/--tls-key)", tls)) if not there
    )
    log.warning("listening on %s without %s: anyone who can reach the port can call the service", host, missing)
