"""Command-line client: each subcommand calls one Client method and writes .npy/.png files."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import TextIO

import numpy as np

from convscope_client.client import Client
from convscope_client.errors import ConvscopeError
from convscope_client.jobs import Dataset, ServerFolder, local_files
from convscope_client.types import Progress


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
        "probe_shape": list(info.probe_shape),  # type: ignore[attr-defined]
    }


def _input_shape(text: str) -> int | tuple[str, int]:
    """One --input-shape word: a size (``320``) or a dim name and its size (``W=320``)."""
    name, _, size = text.rpartition("=")
    try:
        return (name, int(size)) if name else int(size)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a size nor NAME=SIZE") from None


def _probe_input_shape(words: list[int | tuple[str, int]] | None) -> list[int] | dict[str, int] | None:
    if not words:
        return None
    named = [word for word in words if isinstance(word, tuple)]
    if named and len(named) != len(words):
        raise SystemExit("--input-shape takes either sizes (1 3 48 320) or NAME=SIZE words (W=320), not both")
    return dict(named) if named else [word for word in words if isinstance(word, int)]


def _fill(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        if text not in ("mean", "blur"):
            raise argparse.ArgumentTypeError(f"{text!r} is neither a number nor 'mean' or 'blur'") from None
        return text


class _StderrBar:
    """One status line on stderr, redrawn in place; ``close`` ends it with a newline."""

    def __init__(self, width: int, stream: TextIO | None = None) -> None:
        self.width = width
        self.stream = stream or sys.stderr
        self.drawn = False

    def _bar(self, done: int, total: int) -> str:
        filled = self.width * min(done, total) // max(1, total)
        return f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total}"

    def _draw(self, text: str) -> None:
        self.stream.write(f"\r{text}")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


class ProgressBar(_StderrBar):
    """A one-line text bar on stderr: ``progress(done, total)`` callbacks redraw it."""

    def __init__(self, width: int = 40, stream: TextIO | None = None) -> None:
        super().__init__(width, stream)

    def __call__(self, done: int, total: int) -> None:
        self._draw(f"{self._bar(done, total)} positions")


class JobProgressBar(_StderrBar):
    """A one-line text bar on stderr for dataset jobs: images done, rate and ETA."""

    def __init__(self, width: int = 30, stream: TextIO | None = None) -> None:
        super().__init__(width, stream)

    def __call__(self, progress: Progress) -> None:
        seen = progress.done + progress.skipped
        bar = self._bar(seen, progress.total) if progress.total else f"{seen} images"
        eta = f", ETA {progress.eta:.0f} s" if progress.eta is not None else ""
        skipped = f", {progress.skipped} skipped" if progress.skipped else ""
        self._draw(f"{bar} {progress.rate:.1f} img/s{eta}{skipped}   ")


def _dataset(args: argparse.Namespace) -> Dataset:
    if args.server_folder:
        if args.dataset:
            raise SystemExit("give local images or --server-folder, not both")
        return ServerFolder(args.server_folder)
    if not args.dataset:
        raise SystemExit("no dataset: give local images or folders, or --server-folder")
    paths: list[str] = []
    for entry in args.dataset:
        if Path(entry).is_dir():
            paths.extend(str(p) for p in local_files(Path(entry)))
        else:
            paths.append(entry)
    return paths


def _dataset_command(args: argparse.Namespace, client: Client) -> object:
    """top-activations / embedding / dead-filters: run with a progress bar, write PNGs and a JSON."""
    dataset = _dataset(args)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    bar = JobProgressBar()
    try:
        if args.command == "top-activations":
            direction = np.load(args.direction) if args.direction else None
            result = client.top_activations(
                args.model_id, dataset, layer=args.layer, channels=args.channels, k=args.k, direction=direction, progress=bar
            )
            files = []
            for key, png in result.pngs.items():
                stem = f"top_{safe_name(args.layer)}_{'d' if direction is not None else 'c'}{key}"
                _write(args.out, stem, png=png)
                files.append(str(args.out / f"{stem}.png"))
            numbers = {"layer": args.layer, "images": result.images, "by_direction": direction is not None,
                       "hits": {str(key): [vars(hit) for hit in hits] for key, hits in result.items()},
                       "skipped": [vars(item) for item in result.skipped]}
            summary = {"channels": len(result), "images": result.images, "skipped": len(result.skipped)}
        elif args.command == "embedding":
            embedding = client.embedding(
                args.model_id, dataset, layer=args.layer, method=args.method, perplexity=args.perplexity, seed=args.seed,
                progress=bar,
            )
            _write(args.out, f"{args.method}_grid", png=embedding.png)
            _write(args.out, f"{args.method}_scatter", png=embedding.scatter_png)
            files = [str(args.out / f"{args.method}_{kind}.png") for kind in ("grid", "scatter")]
            numbers = {"layer": embedding.layer, "method": embedding.method, "perplexity": embedding.perplexity,
                       "images": embedding.images, "coords": embedding.coords.tolist(),
                       "skipped": [vars(item) for item in embedding.skipped]}
            summary = {"layer": embedding.layer, "images": len(embedding.images), "skipped": len(embedding.skipped)}
        else:
            fractions = client.dead_filters(args.model_id, dataset, layers=args.layers, progress=bar)
            dead = {tensor: [int(c) for c in np.flatnonzero(f >= args.threshold)] for tensor, f in fractions.items()}
            files = []
            numbers = {"samples": fractions.samples, "threshold": args.threshold,
                       "zero_fraction": {tensor: f.tolist() for tensor, f in fractions.items()},
                       "dead": dead, "skipped": [vars(item) for item in fractions.skipped]}
            summary = {tensor: channels for tensor, channels in dead.items() if channels}  # as before: tensor → dead
    finally:
        bar.close()
    if args.out is None:
        return summary
    path = args.out / f"{args.command.replace('-', '_')}.json"
    path.write_text(json.dumps(numbers, indent=1, default=str))
    return summary if args.command == "dead-filters" else {**summary, "files": [*files, str(path)]}


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
    upload.add_argument(
        "--input-shape", type=_input_shape, nargs="+", metavar="SIZE",
        help="the probe's input shape for symbolic sizes: 1 3 48 320, or by dim name: W=320",
    )

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

    dataset_help = "local images, folders or .npy arrays (streamed); or use --server-folder"
    top = commands.add_parser("top-activations", help="the images that most excite each channel, with receptive-field boxes")
    top.add_argument("model_id")
    top.add_argument("dataset", nargs="*", help=dataset_help)
    top.add_argument("--server-folder", help="a folder under one of the server's --data-root folders")
    top.add_argument("--layer", required=True, help="tensor name from the layer table")
    top.add_argument("--channel", type=int, action="append", dest="channels", help="repeat; default: every channel")
    top.add_argument("-k", type=int, default=9, help="images per channel")
    top.add_argument("--direction", type=Path, help=".npy of shape [C] or [D, C]: rank by projection onto it")
    top.add_argument("--out", type=Path, default=Path("convscope-out"))
    embed = commands.add_parser("embedding", help="t-SNE / PCA of CNN codes, drawn as an image grid")
    embed.add_argument("model_id")
    embed.add_argument("dataset", nargs="*", help=dataset_help)
    embed.add_argument("--server-folder", help="a folder under one of the server's --data-root folders")
    embed.add_argument("--layer", help="default: the tensor feeding the final classifier")
    embed.add_argument("--method", choices=("tsne", "pca"), default="tsne")
    embed.add_argument("--perplexity", type=float, default=30.0)
    embed.add_argument("--seed", type=int, default=0)
    embed.add_argument("--out", type=Path, default=Path("convscope-out"))
    dead = commands.add_parser("dead-filters", help="per channel, the share of images on which it is zero everywhere")
    dead.add_argument("model_id")
    dead.add_argument("dataset", nargs="*", help=dataset_help)
    dead.add_argument("--server-folder", help="a folder under one of the server's --data-root folders")
    dead.add_argument("--layer", action="append", dest="layers")
    dead.add_argument("--threshold", type=float, default=1.0, help="list channels zero on at least this share")
    dead.add_argument("--out", type=Path, help="also write dead_filters.json (every fraction) here")
    occlusion = commands.add_parser("occlusion", help="occlusion sensitivity map (with a progress bar)")
    occlusion.add_argument("model_id")
    occlusion.add_argument("input", help="an image file, or a .npy array used as given")
    occlusion.add_argument("--target", type=int, action="append", dest="targets", help="flat output index (repeat; default: top-1)")
    occlusion.add_argument("--output", help="tensor to score (default: the first model output)")
    occlusion.add_argument("--window", type=int, nargs=2, default=(32, 32), metavar=("H", "W"))
    occlusion.add_argument("--stride", type=int, nargs=2, default=(16, 16), metavar=("Y", "X"))
    occlusion.add_argument("--fill", type=_fill, default=0.0, help="a number in the model's input space, 'mean' or 'blur'")
    occlusion.add_argument("--score", choices=["probability", "raw"], default="probability")
    occlusion.add_argument("--engine", choices=["auto", "batched", "incremental"], default="auto")
    occlusion.add_argument("--out", type=Path, default=Path("convscope-out"))
    attribution = commands.add_parser("attribution", help="a gradient map (saliency, guided_backprop, grad_cam, ...)")
    attribution.add_argument("model_id")
    attribution.add_argument("input", help="an image file, or a .npy array used as given")
    attribution.add_argument("--method", required=True)
    attribution.add_argument("--target", type=int, help="flat index into one sample's output (default: top entry)")
    attribution.add_argument(
        "--target-weights", type=Path, metavar="NPY",
        help="float weights of one sample's output instead of --target: the map of sum(weights * output)",
    )
    attribution.add_argument("--output", help="tensor to score (default: the first model output)")
    attribution.add_argument("--layer", help="grad_cam layer (default: the last feature map)")
    attribution.add_argument("--steps", type=int, default=50)
    attribution.add_argument("--samples", type=int, default=25)
    attribution.add_argument("--noise", type=float, default=0.15)
    attribution.add_argument("--rectifiers", choices=["all", "relu"], default="all")
    attribution.add_argument("--out", type=Path, default=Path("convscope-out"))

    export = commands.add_parser("export-backward", help="write the forward+backward ONNX graph")
    export.add_argument("model_id")
    export.add_argument("--seed", action="append", dest="seeds", help="tensor to seed (repeat; default: first output)")
    export.add_argument("--wrt", action="append", help="intermediate tensor whose gradient is also an output")
    export.add_argument("--rectifier", choices=["plain", "guided", "deconvnet"], default="plain")
    export.add_argument("--rectifiers", choices=["all", "relu"], default="all")
    export.add_argument("--out", type=Path, default=Path("backward.onnx"))
    return parser


def run(args: argparse.Namespace, client: Client) -> object:
    if args.command == "upload":
        labels = args.labels.read_text().splitlines() if args.labels else None
        info = client.upload_model(
            args.model, name=args.name, preprocessing=args.preprocessing, labels=labels,
            input_shape=_probe_input_shape(args.input_shape),
        )
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
    if args.command in ("top-activations", "embedding", "dead-filters"):
        return _dataset_command(args, client)
    if args.command == "occlusion":
        bar = ProgressBar()
        try:
            result = client.occlusion(
                args.model_id, args.input, target=args.targets, output=args.output, window=tuple(args.window),
                stride=tuple(args.stride), fill=args.fill, score=args.score, engine=args.engine, progress=bar,
            )
        finally:
            bar.close()
        _write(args.out, "occlusion", png=result.png)
        np.save(args.out / "occlusion_positions.npy", result.positions)
        np.save(args.out / "occlusion_attribution.npy", result.attribution)
        return {"target": result.target, "label": result.target_label, "baseline_score": result.baseline_score,
                "positions": list(result.positions.shape), "engine": result.engine,
                "files": [str(args.out / name) for name in ("occlusion.png", "occlusion_positions.npy", "occlusion_attribution.npy")]}
    if args.command == "attribution":
        if args.target_weights is not None and args.target is not None:
            raise SystemExit("give --target or --target-weights, not both")
        target = np.load(args.target_weights).astype(np.float32) if args.target_weights is not None else args.target
        result = client.attribution(
            args.model_id, args.input, method=args.method, target=target, output=args.output, layer=args.layer,
            steps=args.steps, samples=args.samples, noise=args.noise, rectifiers=args.rectifiers,
        )
        for warning in result.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        _write(args.out, args.method, result.map, result.png)
        return {"method": args.method, "target": result.target, "label": result.target_label, "score": result.score,
                "warnings": list(result.warnings),
                "files": [str(args.out / f"{args.method}.npy"), str(args.out / f"{args.method}.png")]}
    if args.command == "export-backward":
        data = client.export_backward(
            args.model_id, seeds=args.seeds or (), wrt=args.wrt or (), rectifier=args.rectifier, rectifiers=args.rectifiers
        )
        args.out.write_bytes(data)
        return {"out": str(args.out), "bytes": len(data)}
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
