"""Command-line client: each subcommand calls one Client method and writes .npy/.png files."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

from convscope_client.client import Client
from convscope_client.errors import ConvscopeError


def safe_name(tensor: str) -> str:
    """A tensor name as a file name: '/_blocks.0/Conv_output_0' → '_blocks.0_Conv_output_0'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", tensor).strip("_") or "tensor"


def _write(out: Path, stem: str, array: np.ndarray | None = None, png: bytes = b"") -> None:
    out.mkdir(parents=True, exist_ok=True)
    if array is not None:
        np.save(out / f"{stem}.npy", array)
    if png:
        (out / f"{stem}.png").write_bytes(png)


def _model_summary(info: object) -> dict[str, object]:
    return {
        "id": info.id,  # type: ignore[attr-defined]
        "name": info.name,  # type: ignore[attr-defined]
        "inputs": [vars(i) for i in info.inputs],  # type: ignore[attr-defined]
        "outputs": [vars(o) for o in info.outputs],  # type: ignore[attr-defined]
        "layers": len(info.layers),  # type: ignore[attr-defined]
    }


def build_parser(prog: str, extra_commands: dict[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Inspect ONNX vision models through a convscope server.")
    parser.add_argument("--address", default="localhost:50051", help="server host:port")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per call")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in extra_commands.items():
        commands.add_parser(name, help=help_text)

    upload = commands.add_parser("upload", help="upload a model; prints its id")
    upload.add_argument("model", type=Path)
    upload.add_argument("--name")
    upload.add_argument("--preprocessing", type=json.loads, help='JSON, e.g. \'{"size": [224, 224]}\'')
    upload.add_argument("--labels", type=Path, help="text file, one class name per line")

    commands.add_parser("models", help="list stored models")
    get = commands.add_parser("model", help="show one model with its layer table")
    get.add_argument("model_id")
    delete = commands.add_parser("delete", help="delete a model")
    delete.add_argument("model_id")

    activations = commands.add_parser("activations", help="activations of layers for an image or .npy tensor")
    activations.add_argument("model_id")
    activations.add_argument("input", nargs="+", help="image files, or one .npy array used as given")
    activations.add_argument("--layer", action="append", dest="layers", help="tensor name (repeat); default: all")
    activations.add_argument("--out", type=Path, default=Path("convscope-out"))

    filters = commands.add_parser("filters", help="weights of a Conv layer as .npy and a PNG grid")
    filters.add_argument("model_id")
    filters.add_argument("layer")
    filters.add_argument("--out", type=Path, default=Path("convscope-out"))

    dead = commands.add_parser("dead-filters", help="channels that are zero on every input")
    dead.add_argument("model_id")
    dead.add_argument("input", nargs="+", help="image files (each one sample)")
    dead.add_argument("--layer", action="append", dest="layers")
    dead.add_argument("--threshold", type=float, default=1.0)
    return parser


def run(args: argparse.Namespace, client: Client) -> object:
    if args.command == "upload":
        labels = args.labels.read_text().splitlines() if args.labels else None
        info = client.upload_model(args.model, name=args.name, preprocessing=args.preprocessing, labels=labels)
        return _model_summary(info)
    if args.command == "models":
        return [_model_summary(info) for info in client.list_models()]
    if args.command == "model":
        info = client.get_model(args.model_id)
        return {**_model_summary(info), "layers": [vars(layer) for layer in info.layers]}
    if args.command == "delete":
        client.delete_model(args.model_id)
        return {"deleted": args.model_id}
    if args.command == "activations":
        source = args.input[0] if len(args.input) == 1 else args.input
        details = client.activation_details(args.model_id, source, layers=args.layers, render=True)
        for item in details:
            _write(args.out, safe_name(item.tensor), item.value, item.png)
        return {"out": str(args.out), "tensors": {d.tensor: list(d.value.shape) for d in details if d.value is not None}}
    if args.command == "filters":
        result = client.filters(args.model_id, args.layer)
        stem = f"filters_{safe_name(result.node)}"
        _write(args.out, stem, result.weights, result.png)
        return {"node": result.node, "shape": list(result.weights.shape), "mean_smoothness": result.mean_smoothness,
                "files": [str(args.out / f"{stem}.npy"), str(args.out / f"{stem}.png")]}
    if args.command == "dead-filters":
        reports = client.dead_filters(args.model_id, [[path] for path in args.input], layers=args.layers, threshold=args.threshold)
        return {tensor: list(report.dead) for tensor, report in reports.items() if report.dead}
    raise SystemExit(f"unknown command {args.command}")


def main(argv: list[str] | None = None, *, prog: str = "convscope-client", extra_commands: dict[str, str] | None = None) -> int:
    args = build_parser(prog, extra_commands or {}).parse_args(argv)
    try:
        with Client(args.address, timeout=args.timeout) as client:
            print(json.dumps(run(args, client), indent=2, default=str))
    except ConvscopeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
