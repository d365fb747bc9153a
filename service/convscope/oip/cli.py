"""``convscope remote-occlusion URL MODEL INPUT``: occlusion of a model served elsewhere, over
the Open Inference Protocol (gRPC). Nothing is uploaded; the occluded batches go to that server.
Writes remote_occlusion.png and remote_occlusion_{positions,attribution}.npy like `occlusion`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from convscope.errors import ServiceError
from convscope.methods.occlusion import OcclusionOptions, OcclusionProgress, OcclusionResult
from convscope.model.preprocessing import from_images, input_from_tensor
from convscope.model.types import Preprocessing
from convscope.oip.remote import DEFAULT_TIMEOUT_SECONDS, RemoteModel, remote_occlusion
from convscope_client.bars import ProgressBar
from convscope_client.cli import DEFAULT_OUT, EXIT_CANCELLED, EXIT_REFUSED, EXIT_USAGE, UsageError, _fill, _write, existing


def parser() -> argparse.ArgumentParser:
    made = argparse.ArgumentParser(
        prog="convscope remote-occlusion", description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    made.add_argument("url", help="the inference server's gRPC endpoint, host:port or grpc://host:port")
    made.add_argument("model", help="the model's name on that server")
    made.add_argument("input", help="an image file (preprocessed as --preprocessing says), or a .npy array used as given")
    made.add_argument("--model-version", default="", help="default: the server's choice")
    made.add_argument(
        "--preprocessing",
        type=json.loads,
        help='for images, JSON as upload takes it, e.g. \'{"resize": 256, "size": [224, 224]}\'',
    )
    made.add_argument("--output", help="output to score (default: the model's first)")
    made.add_argument("--target", type=int, action="append", dest="targets", help="flat output index (repeat; default: top-1)")
    made.add_argument("--window", type=int, nargs=2, default=(32, 32), metavar=("H", "W"), help="occluding box, input pixels")
    made.add_argument("--stride", type=int, nargs=2, default=(16, 16), metavar=("Y", "X"), help="step between boxes")
    made.add_argument("--fill", type=_fill, default=0.0, help="a number in the model's input space, 'mean' or 'blur'")
    made.add_argument(
        "--score", choices=["probability", "raw"], default="probability", help="softmax probability or the raw output"
    )
    made.add_argument("--batch-size", type=int, default=0, help="occluded copies per request (0: 32)")
    made.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS, help="seconds per request")
    made.add_argument(
        "--token",
        default=os.environ.get("CONVSCOPE_TOKEN"),
        help="bearer token for a server that asks for one (default: $CONVSCOPE_TOKEN)",
    )
    made.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    return made


def run(args: argparse.Namespace) -> dict[str, object]:
    source = existing(args.input)
    options = OcclusionOptions.parse(
        targets=args.targets or (),
        output=args.output or "",
        window=args.window,
        stride=args.stride,
        fill=args.fill,
        score=args.score,
        engine="batched",
        batch_size=args.batch_size,
    )
    with RemoteModel(args.url, args.model, version=args.model_version, timeout=args.timeout, token=args.token) as remote:
        record = remote.record(Preprocessing.from_dict(args.preprocessing) if args.preprocessing else None)
        if source.suffix == ".npy":
            model_input = input_from_tensor(record, np.load(source))
        else:
            model_input = from_images(record, [source.read_bytes()])
        bar = ProgressBar()
        try:
            for event in remote_occlusion(remote, model_input, options, record):
                if isinstance(event, OcclusionProgress):
                    bar(event.done, event.total)
                else:
                    result: OcclusionResult = event
        finally:
            bar.close()
    files = _write(args.out, "remote_occlusion", png=result.png)
    for name in ("positions", "attribution"):
        files += _write(args.out, f"remote_occlusion_{name}", getattr(result, name))
    return {
        "target": list(result.targets),
        "baseline_score": result.baseline_scores.tolist(),
        "output": result.output,
        "positions": list(result.positions.shape),
        "files": files,
    }


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        summary = run(args)
    except ServiceError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_REFUSED
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\ncancelled", file=sys.stderr)
        return EXIT_CANCELLED
    print(json.dumps(summary, indent=2))
    return 0
