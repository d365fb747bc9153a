"""A throwaway certificate authority for TLS tests, made with the openssl command line."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Authority:
    ca: Pair
    server: Pair
    client: Pair


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def _signed(folder: Path, name: str, ca: Pair, extensions: str) -> Pair:
    pair = Pair(folder / f"{name}.pem", folder / f"{name}.key")
    request, ext = folder / f"{name}.csr", folder / f"{name}.ext"
    ext.write_text(extensions)
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", pair.key, "-out", request, "-subj", f"/CN={name}")
    _openssl(
        "x509",
        "-req",
        "-in",
        request,
        "-CA",
        ca.cert,
        "-CAkey",
        ca.key,
        "-CAcreateserial",
        "-days",
        "2",
        "-sha256",
        "-out",
        pair.cert,
        "-extfile",
        ext,
    )
    return pair


def make_authority(folder: Path) -> Authority:
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate, all signed by it."""
    ca = Pair(folder / "ca.pem", folder / "ca.key")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        ca.key,
        "-out",
        ca.cert,
        "-days",
        "2",
        "-subj",
        "/CN=convscope test CA",
    )
    server = _signed(folder, "server", ca, "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    client = _signed(folder, "client", ca, "extendedKeyUsage=clientAuth\n")
    return Authority(ca, server, client)
