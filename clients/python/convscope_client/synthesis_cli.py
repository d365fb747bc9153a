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

from convscope_client.choices import AdversarialMethod, AdversarialNorm, InversionStart
from convscope_client.client import Client
from convscope_client.synthesis import StepCallback

MODEL_ID_HELP = "a model id from `upload` or `models` (any unique prefix of 8+ characters)"
OUT_HELP = "output folder"


def _common(parser: argparse.ArgumentParser, *, image: bool = True) -> None:
    parser.add_argument("model_id", help=MODEL_ID_HELP)
    if image:
        parser.add_argument("input", help="an image file, or a .npy array used as given")
    parser.add_argument("--out", type=Path, default=Path("convscope-out"), help=OUT_HELP)


def invert_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--layer", required=True, help="the code to match: any tensor of the layer table")
    parser.add_argument("--steps", type=int, default=200, help="optimization steps")
    parser.add_argument("--lr", type=float, help="Adam's step size (default: the server's heuristic)")
    parser.add_argument("--tv-weight", type=float, help="total-variation regularizer weight (0: none)")
    parser.add_argument("--norm-weight", type=float, help="alpha-norm bound weight")
    parser.add_argument("--jitter", type=int, default=0, help="random shift in pixels each step")
    parser.add_argument("--init", choices=InversionStart.values(), default=InversionStart.NOISE.value, help="starting image")
    parser.add_argument("--seed", type=int, default=0, help="random seed")


def invert(args: argparse.Namespace, client: Client, bar: StepCallback) -> dict[str, Any]:
    result = client.invert(
        args.model_id,
        args.input,
        layer=args.layer,
        steps=args.steps,
        lr=args.lr,
        tv_weight=args.tv_weight,
        norm_weight=args.norm_weight,
        jitter=args.jitter,
        init=args.init,
        seed=args.seed,
        progress=bar,
    )
    summary = {"layer": result.layer, "code_error": result.code_error, "history": result.history.tolist()}
    return write_outputs(args.out, "invert", result.png, result.array, result.image, summary)


def visualize_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser, image=False)
    parser.add_argument("--target", type=int, action="append", dest="targets", help="class index (repeat for several)")
    parser.add_argument("--layer", help="with --channel: maximize a unit's mean activation")
    parser.add_argument("--channel", type=int, help="the unit's channel in --layer")
    parser.add_argument("--steps", type=int, default=200, help="optimization steps")
    parser.add_argument("--lr", type=float, help="step size (default: the server's heuristic)")
    parser.add_argument("--l2", type=float, help="L2 decay per step")
    parser.add_argument("--blur-every", type=int, help="Gaussian blur every k steps")
    parser.add_argument("--blur-sigma", type=float, help="the blur's sigma in pixels")
    parser.add_argument("--jitter", type=int, help="random shift in pixels each step")
    parser.add_argument("--norm-percentile", type=float, help="each step, pixels of smaller norm go grey")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--batch", type=int, default=1, help="random starts per target")


def visualize(args: argparse.Namespace, client: Client, bar: StepCallback) -> dict[str, Any]:
    result = client.visualize(
        args.model_id,
        target=args.targets,
        layer=args.layer,
        channel=args.channel,
        steps=args.steps,
        lr=args.lr,
        l2=args.l2,
        blur_every=args.blur_every,
        blur_sigma=args.blur_sigma,
        jitter=args.jitter,
        norm_percentile=args.norm_percentile,
        seed=args.seed,
        batch=args.batch,
        progress=bar,
    )
    summary = {name: getattr(result, name) for name in ("tensor", "targets", "target_labels", "scores", "probabilities")}
    return write_outputs(args.out, "visualize", result.png, result.array, result.images, summary)


def adversarial_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument(
        "--method",
        choices=AdversarialMethod.values(),
        default=AdversarialMethod.FGSM.value,
        help="one signed step, or projected steps",
    )
    parser.add_argument("--epsilon", type=float, default=2 / 255, help="pixels in [0, 1] for images, else input units")
    parser.add_argument("--step-size", type=float, help="PGD's step (default: 2.5 epsilon / steps)")
    parser.add_argument("--steps", type=int, default=10, help="PGD's steps")
    parser.add_argument("--target", type=int, help="make it be classified as this class")
    parser.add_argument(
        "--norm", choices=AdversarialNorm.values(), default=AdversarialNorm.LINF.value, help="the ball PGD projects onto"
    )
    parser.add_argument("--random-start", action="store_true", help="PGD starts at a random point of the ball")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--bounds", type=float, nargs=2, metavar=("LOW", "HIGH"), help="array inputs: the valid range")


def adversarial(args: argparse.Namespace, client: Client, bar: StepCallback) -> dict[str, Any]:
    result = client.adversarial(
        args.model_id,
        args.input,
        method=args.method,
        epsilon=args.epsilon,
        step_size=args.step_size,
        steps=args.steps,
        target=args.target,
        norm=args.norm,
        random_start=args.random_start,
        seed=args.seed,
        bounds=tuple(args.bounds) if args.bounds else None,
        progress=bar,
    )
    summary = {name: getattr(result, name) for name in ("success", "label", "linf", "l2", "prediction", "adversarial_prediction")}
    return write_outputs(args.out, "adversarial", result.png, result.array, result.image, summary)


def correspondence_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser, image=False)
    parser.add_argument("image_a", help="the image whose points are matched")
    parser.add_argument("image_b", help="the image searched for matches")
    parser.add_argument("--layer", action="append", dest="layers", required=True, help="repeat with --hypercolumn")
    parser.add_argument("--hypercolumn", action="store_true", help="match on the layers' features stacked")
    parser.add_argument("--points", type=Path, help="a .npy of [N, 2] (y, x) pixels of image A (default: a grid)")
    parser.add_argument(
        "--no-reflections",
        dest="reflections",
        action="store_false",
        help="search image B only as it is, not also mirrored left-right",
    )


def correspondence(args: argparse.Namespace, client: Client) -> dict[str, Any]:
    result = client.correspondence(
        args.model_id,
        args.image_a,
        args.image_b,
        layer=args.layers,
        hypercolumn=args.hypercolumn,
        reflections=args.reflections,
        points=np.load(args.points) if args.points else None,
    )
    summary = {
        "layers": result.layers,
        "points": result.points.tolist(),
        "matches": result.matches.tolist(),
        "similarity": result.similarity.tolist(),
        "mirrored": result.mirrored.tolist(),
    }
    pairs = np.stack([result.points, result.matches], axis=1)
    return write_outputs(args.out, "correspondence", result.png, pairs, None, summary)


def write_outputs(
    out: Path, stem: str, png: bytes, array: np.ndarray, images: np.ndarray | None, summary: dict[str, Any]
) -> dict[str, Any]:
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
