"""CLI subcommands of images made by gradients: invert, visualize, adversarial, correspondence.

Each writes ``<command>.png``, ``<command>.npy`` (the model input it found, or for
correspondence [N, 2, 2]: each point of A and its match in B; the uint8 pictures as
``<command>_images.npy``) and ``<command>.json`` under ``--out``; the loops draw a step bar.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from convscope_client.client import Client
from convscope_client.synthesis import StepCallback

COMMANDS = ("invert", "visualize", "adversarial", "correspondence")


def add_commands(commands: Any) -> None:
    invert = commands.add_parser("invert", help="an image whose code at a layer matches the input's (Mahendran & Vedaldi)")
    invert.add_argument("model_id")
    invert.add_argument("input", help="an image file, or a .npy array used as given")
    invert.add_argument("--layer", required=True, help="any tensor of the layer table")
    invert.add_argument("--steps", type=int, default=200)
    invert.add_argument("--lr", type=float)
    invert.add_argument("--tv-weight", type=float)
    invert.add_argument("--norm-weight", type=float)
    invert.add_argument("--jitter", type=int, default=0)
    invert.add_argument("--init", choices=["noise", "grey"], default="noise")
    invert.add_argument("--seed", type=int, default=0)
    invert.add_argument("--out", type=Path, default=Path("convscope-out"))
    visualize = commands.add_parser("visualize", help="class models or a unit's visualization by gradient ascent")
    visualize.add_argument("model_id")
    visualize.add_argument("--target", type=int, action="append", dest="targets", help="class index (repeat for several)")
    visualize.add_argument("--layer", help="with --channel: maximize a unit's mean activation")
    visualize.add_argument("--channel", type=int)
    visualize.add_argument("--steps", type=int, default=200)
    visualize.add_argument("--lr", type=float)
    visualize.add_argument("--l2", type=float)
    visualize.add_argument("--blur-every", type=int)
    visualize.add_argument("--blur-sigma", type=float)
    visualize.add_argument("--jitter", type=int)
    visualize.add_argument("--norm-percentile", type=float, help="each step, pixels of smaller norm go grey")
    visualize.add_argument("--seed", type=int, default=0)
    visualize.add_argument("--batch", type=int, default=1, help="random starts per target")
    visualize.add_argument("--out", type=Path, default=Path("convscope-out"))
    attack = commands.add_parser("adversarial", help="an FGSM or PGD adversarial example")
    attack.add_argument("model_id")
    attack.add_argument("input", help="an image file, or a .npy array used as given")
    attack.add_argument("--method", choices=["fgsm", "pgd"], default="fgsm")
    attack.add_argument("--epsilon", type=float, default=2 / 255, help="pixels in [0, 1] for images, else input units")
    attack.add_argument("--step-size", type=float)
    attack.add_argument("--steps", type=int, default=10)
    attack.add_argument("--target", type=int, help="make it be classified as this class")
    attack.add_argument("--norm", choices=["linf", "l2"], default="linf")
    attack.add_argument("--random-start", action="store_true")
    attack.add_argument("--seed", type=int, default=0)
    attack.add_argument("--bounds", type=float, nargs=2, metavar=("LOW", "HIGH"), help="array inputs: the valid range")
    attack.add_argument("--out", type=Path, default=Path("convscope-out"))
    matching = commands.add_parser("correspondence", help="matches in image B for a grid of points of image A")
    matching.add_argument("model_id")
    matching.add_argument("image_a")
    matching.add_argument("image_b")
    matching.add_argument("--layer", action="append", dest="layers", required=True, help="repeat with --hypercolumn")
    matching.add_argument("--hypercolumn", action="store_true")
    matching.add_argument("--points", type=Path, help="a .npy of [N, 2] (y, x) pixels of image A (default: a grid)")
    matching.add_argument("--out", type=Path, default=Path("convscope-out"))


def run_command(args: argparse.Namespace, client: Client, bar: StepCallback) -> dict[str, Any]:
    result: Any
    if args.command == "invert":
        result = client.invert(
            args.model_id, args.input, layer=args.layer, steps=args.steps, lr=args.lr, tv_weight=args.tv_weight,
            norm_weight=args.norm_weight, jitter=args.jitter, init=args.init, seed=args.seed, progress=bar,
        )
        summary = {"layer": result.layer, "code_error": result.code_error, "history": result.history.tolist()}
        return write_outputs(args.out, args.command, result.png, result.array, result.image, summary)
    if args.command == "visualize":
        result = client.visualize(
            args.model_id, target=args.targets, layer=args.layer, channel=args.channel, steps=args.steps, lr=args.lr,
            l2=args.l2, blur_every=args.blur_every, blur_sigma=args.blur_sigma, jitter=args.jitter,
            norm_percentile=args.norm_percentile, seed=args.seed,
            batch=args.batch, progress=bar,
        )
        summary = {name: getattr(result, name) for name in ("tensor", "targets", "target_labels", "scores", "probabilities")}
        return write_outputs(args.out, args.command, result.png, result.array, result.images, summary)
    if args.command == "correspondence":
        result = client.correspondence(
            args.model_id, args.image_a, args.image_b, layer=args.layers, hypercolumn=args.hypercolumn,
            points=np.load(args.points) if args.points else None,
        )
        summary = {"layers": result.layers, "points": result.points.tolist(), "matches": result.matches.tolist(),
                   "similarity": result.similarity.tolist()}
        return write_outputs(args.out, args.command, result.png, np.stack([result.points, result.matches], axis=1), None, summary)
    result = client.adversarial(
        args.model_id, args.input, method=args.method, epsilon=args.epsilon, step_size=args.step_size, steps=args.steps,
        target=args.target, norm=args.norm, random_start=args.random_start, seed=args.seed,
        bounds=tuple(args.bounds) if args.bounds else None, progress=bar,
    )
    summary = {name: getattr(result, name) for name in ("success", "label", "linf", "l2", "prediction", "adversarial_prediction")}
    return write_outputs(args.out, args.command, result.png, result.array, result.image, summary)


def write_outputs(out: Path, stem: str, png: bytes, array: np.ndarray, images: np.ndarray | None, summary: dict[str, Any]) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    files = [out / f"{stem}.npy", out / f"{stem}.json"]
    np.save(files[0], array)
    if images is not None:
        files.append(out / f"{stem}_images.npy")
        np.save(files[-1], images)
    if png:
        files.append(out / f"{stem}.png")
        files[-1].write_bytes(png)
    summary = json.loads(json.dumps(summary, default=_plain))
    files[1].write_text(json.dumps(summary, indent=2))
    return {**{k: v for k, v in summary.items() if k != "history"}, "files": [str(f) for f in files]}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)  # type: ignore[arg-type]
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")
