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
# convscope's own API, and the Open Inference Protocol it also serves (and calls as a client).
PROTO_DIRS = (ROOT / "protos" / "convscope" / "v1", ROOT / "protos" / "inference")
STUB_DIR = ROOT / "clients" / "python" / "convscope_client" / "_proto"


def generate(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    grpc_include = Path(protoc.__file__).parent / "_proto"
    for proto_dir in PROTO_DIRS:
        args = [
            "protoc",
            f"-I{proto_dir}",
            f"-I{grpc_include}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            *map(str, sorted(proto_dir.glob("*.proto"))),
        ]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {proto_dir}")
    # protoc writes absolute imports between generated modules; inside a package they must be relative.
    for generated in out.glob("*_pb2*.py*"):
        text = generated.read_text()
        fixed = re.sub(r"^import (\w+_pb2) as", r"from . import \1 as", text, flags=re.M)
        generated.write_text(fixed)
    (out / "__init__.py").write_text(
        '"""Generated from protos/convscope/v1 and protos/inference by scripts/gen_protos.py; do not edit."""\n'
    )
    return sorted(out.iterdir())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=STUB_DIR)
    generate(parser.parse_args(argv).out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
