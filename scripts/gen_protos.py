"""Regenerate the Python stubs (and .pyi) from protos/ into the client package.

The stubs live in ``convscope_client._proto`` because both the server and the
stand-alone client need them and the client must install without the server.
Run from anywhere: ``python scripts/gen_protos.py [--out DIR]``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
PROTO_DIR = ROOT / "protos" / "convscope" / "v1"
STUB_DIR = ROOT / "clients" / "python" / "convscope_client" / "_proto"


def generate(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    protos = sorted(PROTO_DIR.glob("*.proto"))
    grpc_include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{grpc_include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *map(str, protos),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # protoc writes absolute imports between generated modules; inside a package they must be relative.
    for generated in out.glob("*_pb2*.py*"):
        text = generated.read_text()
        fixed = re.sub(r"^import (\w+_pb2) as", r"from . import \1 as", text, flags=re.M)
        generated.write_text(fixed)
    (out / "__init__.py").write_text('"""Generated from protos/convscope/v1 by scripts/gen_protos.py; do not edit."""\n')
    return sorted(out.iterdir())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=STUB_DIR)
    generate(parser.parse_args(argv).out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
