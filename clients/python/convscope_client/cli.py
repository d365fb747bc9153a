"""Command-line client: each subcommand calls one Client method and writes .npy/.png files.

Every subcommand is a pair of functions registered in ``COMMANDS``: one adds its arguments to
its parser, the other runs it with a connected client and returns what is printed as JSON.
A new subcommand is two functions and one table row.  Local paths are checked before anything
is sent; every failure is one ``error: ...`` line on stderr (exit 1: the server refused, 2: the
command line is wrong, 130: cancelled with Ctrl-C).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from convscope_client import synthesis_cli
from convscope_client.bars import JobProgressBar, ProgressBar, StepBar
from convscope_client.choices import (
    AttributionMethod,
    EmbeddingMethod,
    IntegrationRule,
    OcclusionEngine,
    OcclusionFill,
    OcclusionScore,
    Rectifier,
    RectifierScope,
)
from convscope_client.client import Client
from convscope_client.errors import ConvscopeError
from convscope_client.jobs import Dataset, ServerFolder, local_files
from convscope_client.transport import Tls
from convscope_client.types import ModelInfo

DEFAULT_ADDRESS = "localhost:50051"
DEFAULT_OUT = Path("convscope-out")
EXIT_REFUSED, EXIT_USAGE, EXIT_CANCELLED = 1, 2, 130


class UsageError(Exception):
    """A command line the client can reject before calling the server (exit 2)."""


def safe_name(tensor: str) -> str:
    """A tensor name as a file name: '/_blocks.0/Conv_output_0' → '_blocks.0_Conv_output_0'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", tensor).strip("_") or "tensor"


def existing(path: str | Path) -> Path:
    """``path`` if it exists; else the one-line error a user needs."""
    if not Path(path).exists():
        raise UsageError(f"no such file: {path}")
    return Path(path)


def _write(out: Path, stem: str, array: np.ndarray | None = None, png: bytes = b"") -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    files = []
    if array is not None:
        np.save(out / f"{stem}.npy", array)
        files.append(str(out / f"{stem}.npy"))
    if png:
        (out / f"{stem}.png").write_bytes(png)
        files.append(str(out / f"{stem}.png"))
    return files


def _model_summary(info: ModelInfo) -> dict[str, object]:
    return {
        "id": info.id,
        "name": info.name,
        "inputs": [dataclasses.asdict(i) for i in info.inputs],
        "outputs": [dataclasses.asdict(o) for o in info.outputs],
        "layers": info.layer_count,
        "probe_shape": list(info.probe_shape),
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
        raise UsageError("--input-shape takes either sizes (1 3 48 320) or NAME=SIZE words (W=320), not both")
    return dict(named) if named else [word for word in words if isinstance(word, int)]


def _fill(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        if text not in OcclusionFill.values():
            raise argparse.ArgumentTypeError(f"{text!r} is neither a number nor 'mean' or 'blur'") from None
        return text


def _baseline(text: str) -> float | np.ndarray:
    try:
        return float(text)
    except ValueError:
        return np.load(existing(text))  # read when the command runs: a missing file is one line


# -- subcommands: (add arguments, run) pairs


def _model_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_id", help="a model id from `upload` or `models` (any unique prefix of 8+ characters)")


def _out(parser: argparse.ArgumentParser, default: Path | None = DEFAULT_OUT, what: str = "output folder") -> None:
    parser.add_argument("--out", type=Path, default=default, help=what)


LAYER_HELP = "a tensor name or the name of the node that produces it (see `convscope model ID`)"


def upload_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="an .onnx file (a neighbouring <file>.data is sent along)")
    parser.add_argument("--name", help="default: the file name without .onnx")
    parser.add_argument("--preprocessing", type=json.loads, help="JSON, e.g. '{\"size\": [224, 224]}'")
    parser.add_argument("--labels", help="text file, one class name per line")
    parser.add_argument(
        "--input-shape",
        type=_input_shape,
        nargs="+",
        metavar="SIZE",
        help="the probe's input shape for symbolic sizes: 1 3 48 320, or by dim name: W=320",
    )


def upload(args: argparse.Namespace, client: Client) -> object:
    model = existing(args.model)
    labels = existing(args.labels).read_text().splitlines() if args.labels else None
    info = client.upload_model(
        model, name=args.name, preprocessing=args.preprocessing, labels=labels, input_shape=_probe_input_shape(args.input_shape)
    )
    return _model_summary(info)


def list_models(args: argparse.Namespace, client: Client) -> object:
    return [_model_summary(info) for info in client.list_models()]


def show_model(args: argparse.Namespace, client: Client) -> object:
    info = client.get_model(args.model_id)
    return {**_model_summary(info), "layers": [dataclasses.asdict(layer) for layer in info.layers]}


def delete_model(args: argparse.Namespace, client: Client) -> object:
    client.delete_model(args.model_id)
    return {"deleted": args.model_id}


def activations_arguments(parser: argparse.ArgumentParser) -> None:
    _model_id(parser)
    parser.add_argument("input", nargs="+", help="image files, or one .npy array used as given")
    parser.add_argument("--layer", action="append", dest="layers", help=f"{LAYER_HELP} (repeat); default: all")
    parser.add_argument(
        "--channel", type=int, action="append", dest="channels", help="a channel the PNG draws (repeat); default: the first 256"
    )
    parser.add_argument(
        "--top-channels", type=int, default=0, metavar="K", help="draw the K channels of highest mean activation instead"
    )
    _out(parser)


def activations(args: argparse.Namespace, client: Client) -> object:
    inputs = [existing(path) for path in args.input]
    details = client.activation_details(
        args.model_id,
        inputs[0] if len(inputs) == 1 else inputs,
        layers=args.layers,
        render=True,
        channels=args.channels or (),
        top_channels=args.top_channels,
    )
    for item in details:
        _write(args.out, safe_name(item.tensor), item.value, item.png)
    shown = {d.tensor: list(d.shown_channels) for d in details if args.channels or args.top_channels}
    return {
        "out": str(args.out),
        "tensors": {d.tensor: list(d.value.shape) for d in details if d.value is not None},
        **({"drawn_channels": shown} if shown else {}),
    }


def filters_arguments(parser: argparse.ArgumentParser) -> None:
    _model_id(parser)
    parser.add_argument("layer", help=f"a Conv layer: {LAYER_HELP}")
    _out(parser)


def filters(args: argparse.Namespace, client: Client) -> object:
    result = client.filters(args.model_id, args.layer)
    files = _write(args.out, f"filters_{safe_name(result.node)}", result.weights, result.png)
    return {"node": result.node, "shape": list(result.weights.shape), "mean_smoothness": result.mean_smoothness, "files": files}


DATASET_HELP = "local images, folders or .npy arrays (streamed); or use --server-folder"


def _dataset_arguments(parser: argparse.ArgumentParser) -> None:
    _model_id(parser)
    parser.add_argument("dataset", nargs="*", help=DATASET_HELP)
    parser.add_argument("--server-folder", help="a folder under one of the server's --data-root folders")


def _dataset(args: argparse.Namespace) -> Dataset:
    if args.server_folder:
        if args.dataset:
            raise UsageError("give local images or --server-folder, not both")
        return ServerFolder(args.server_folder)
    if not args.dataset:
        raise UsageError("no dataset: give local images or folders, or --server-folder")
    paths: list[str] = []
    for entry in map(existing, args.dataset):
        paths += [str(p) for p in local_files(entry)] if entry.is_dir() else [str(entry)]
    return paths


def _with_bar(job: Callable[[JobProgressBar], Any]) -> Any:
    bar = JobProgressBar()
    try:
        return job(bar)
    finally:
        bar.close()


def _write_json(out: Path, name: str, numbers: dict[str, object]) -> str:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(numbers, indent=1, default=str))
    return str(path)


def top_activations_arguments(parser: argparse.ArgumentParser) -> None:
    _dataset_arguments(parser)
    parser.add_argument("--layer", required=True, help=LAYER_HELP)
    parser.add_argument("--channel", type=int, action="append", dest="channels", help="repeat; default: every channel")
    parser.add_argument("-k", type=int, default=9, help="images per channel")
    parser.add_argument("--direction", help=".npy of shape [C] or [D, C]: rank by projection onto it")
    _out(parser)


def top_activations(args: argparse.Namespace, client: Client) -> object:
    dataset = _dataset(args)
    direction = np.load(existing(args.direction)) if args.direction else None
    result = _with_bar(
        lambda bar: client.top_activations(
            args.model_id, dataset, layer=args.layer, channels=args.channels, k=args.k, direction=direction, progress=bar
        )
    )
    files = []
    for key, png in result.pngs.items():
        files += _write(args.out, f"top_{safe_name(result.layer)}_{'d' if direction is not None else 'c'}{key}", png=png)
    numbers = {
        "layer": result.layer,
        "images": result.images,
        "by_direction": direction is not None,
        "hits": {str(key): [dataclasses.asdict(hit) for hit in hits] for key, hits in result.items()},
        "skipped": [dataclasses.asdict(item) for item in result.skipped],
    }
    files.append(_write_json(args.out, "top_activations", numbers))
    return {"channels": len(result), "images": result.images, "skipped": len(result.skipped), "files": files}


def embedding_arguments(parser: argparse.ArgumentParser) -> None:
    _dataset_arguments(parser)
    parser.add_argument("--layer", help=f"{LAYER_HELP}; default: the tensor feeding the final classifier")
    parser.add_argument("--method", choices=EmbeddingMethod.values(), default=EmbeddingMethod.TSNE.value)
    parser.add_argument("--perplexity", type=float, default=30.0, help="t-SNE perplexity (lowered for small datasets)")
    parser.add_argument("--seed", type=int, default=0, help="t-SNE random seed")
    _out(parser)


def embedding(args: argparse.Namespace, client: Client) -> object:
    dataset = _dataset(args)
    result = _with_bar(
        lambda bar: client.embedding(
            args.model_id, dataset, layer=args.layer, method=args.method, perplexity=args.perplexity, seed=args.seed, progress=bar
        )
    )
    files = _write(args.out, f"{args.method}_grid", png=result.png) + _write(
        args.out, f"{args.method}_scatter", png=result.scatter_png
    )
    numbers = {
        "layer": result.layer,
        "method": result.method,
        "perplexity": result.perplexity,
        "images": result.images,
        "coords": result.coords.tolist(),
        "skipped": [dataclasses.asdict(item) for item in result.skipped],
    }
    files.append(_write_json(args.out, "embedding", numbers))
    return {"layer": result.layer, "images": len(result.images), "skipped": len(result.skipped), "files": files}


def dead_filters_arguments(parser: argparse.ArgumentParser) -> None:
    _dataset_arguments(parser)
    parser.add_argument("--layer", action="append", dest="layers", help=f"{LAYER_HELP} (repeat); default: every layer")
    parser.add_argument("--threshold", type=float, default=1.0, help="list channels zero on at least this share of images")
    _out(parser, None, "also write dead_filters.json (every fraction) here")


def dead_filters(args: argparse.Namespace, client: Client) -> object:
    dataset = _dataset(args)
    fractions = _with_bar(lambda bar: client.dead_filters(args.model_id, dataset, layers=args.layers, progress=bar))
    dead = {tensor: [int(c) for c in np.flatnonzero(f >= args.threshold)] for tensor, f in fractions.items()}
    if args.out is not None:
        _write_json(
            args.out,
            "dead_filters",
            {
                "samples": fractions.samples,
                "threshold": args.threshold,
                "dead": dead,
                "zero_fraction": {tensor: f.tolist() for tensor, f in fractions.items()},
                "skipped": [dataclasses.asdict(item) for item in fractions.skipped],
            },
        )
    return {tensor: channels for tensor, channels in dead.items() if channels}  # tensor → its dead channels


def _target_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="an image file, or a .npy array used as given")
    parser.add_argument("--output", help="tensor to score (default: the first model output)")


def occlusion_arguments(parser: argparse.ArgumentParser) -> None:
    _model_id(parser)
    _target_arguments(parser)
    parser.add_argument("--target", type=int, action="append", dest="targets", help="flat output index (repeat; default: top-1)")
    parser.add_argument("--window", type=int, nargs=2, default=(32, 32), metavar=("H", "W"), help="occluding box, input pixels")
    parser.add_argument("--stride", type=int, nargs=2, default=(16, 16), metavar=("Y", "X"), help="step between boxes")
    parser.add_argument("--fill", type=_fill, default=0.0, help="a number in the model's input space, 'mean' or 'blur'")
    parser.add_argument(
        "--score",
        choices=OcclusionScore.values(),
        default=OcclusionScore.PROBABILITY.value,
        help="softmax probability or the raw output",
    )
    parser.add_argument(
        "--engine",
        choices=OcclusionEngine.values(),
        default=OcclusionEngine.AUTO.value,
        help="incremental recomputes only what a box changes; approximate also interpolates where the map is smooth",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.0,
        help="engine approximate: error allowed per position, in score units (e.g. 0.01; 0: exact)",
    )
    parser.add_argument("--batch-size", type=int, default=0, help="occluded copies per run (0: sized to memory)")
    _out(parser)


def occlusion(args: argparse.Namespace, client: Client) -> object:
    bar = ProgressBar()
    try:
        result = client.occlusion(
            args.model_id,
            existing(args.input),
            target=args.targets,
            output=args.output,
            window=tuple(args.window),
            stride=tuple(args.stride),
            fill=args.fill,
            score=args.score,
            engine=args.engine,
            batch_size=args.batch_size,
            tolerance=args.tolerance,
            progress=bar,
        )
    finally:
        bar.close()
    files = _write(args.out, "occlusion", png=result.png)
    for name in ("positions", "attribution"):
        files += _write(args.out, f"occlusion_{name}", getattr(result, name))
    return {
        "target": result.target,
        "label": result.target_label,
        "baseline_score": result.baseline_score,
        "positions": list(result.positions.shape),
        "engine": result.engine,
        "error_bound": result.error_bound,
        "evaluated": result.evaluated,
        "files": files,
    }


def attribution_arguments(parser: argparse.ArgumentParser) -> None:
    _model_id(parser)
    _target_arguments(parser)
    methods = "; ".join(f"{method}: {method.description}" for method in AttributionMethod)
    parser.add_argument("--method", required=True, choices=AttributionMethod.values(), metavar="METHOD", help=methods)
    parser.add_argument("--target", type=int, help="flat index into one sample's output (default: top entry)")
    parser.add_argument(
        "--target-weights",
        metavar="NPY",
        help="float weights of one sample's output instead of --target: the map of sum(weights * output)",
    )
    parser.add_argument("--layer", help=f"grad_cam layer: {LAYER_HELP} (default: the last feature map)")
    parser.add_argument("--steps", type=int, default=50, help="integrated_gradients: points on the path")
    parser.add_argument(
        "--integration",
        choices=IntegrationRule.values(),
        default=IntegrationRule.GAUSS_LEGENDRE.value,
        help="integrated_gradients: quadrature rule",
    )
    parser.add_argument(
        "--baseline", default="0", help="integrated_gradients: the path's start, a number in the model's input space or an .npy"
    )
    parser.add_argument("--samples", type=int, default=25, help="smoothgrad: noisy copies averaged")
    parser.add_argument("--noise", type=float, default=0.15, help="smoothgrad: noise σ as a share of the input's range")
    parser.add_argument("--seed", type=int, default=0, help="smoothgrad: noise seed")
    parser.add_argument(
        "--rectifiers",
        choices=RectifierScope.values(),
        default=RectifierScope.ALL.value,
        help="guided/deconvnet rule on every rectifier (ReLU6 too) or on Relu only (Captum's)",
    )
    _out(parser)


def attribution(args: argparse.Namespace, client: Client) -> object:
    if args.target_weights is not None and args.target is not None:
        raise UsageError("give --target or --target-weights, not both")
    target = np.load(existing(args.target_weights)).astype(np.float32) if args.target_weights is not None else args.target
    result = client.attribution(
        args.model_id,
        existing(args.input),
        method=args.method,
        target=target,
        output=args.output,
        layer=args.layer,
        steps=args.steps,
        baseline=_baseline(args.baseline),
        integration=args.integration,
        samples=args.samples,
        noise=args.noise,
        seed=args.seed,
        rectifiers=args.rectifiers,
    )
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    files = _write(args.out, args.method, result.map, result.png)
    described = {
        "method": args.method,
        "target": result.target,
        "label": result.target_label,
        "score": result.score,
        "warnings": list(result.warnings),
    }
    return {**described, **({"layer": result.layer} if result.layer else {}), "files": files}


def export_backward_arguments(parser: argparse.ArgumentParser) -> None:
    _model_id(parser)
    parser.add_argument("--seed", action="append", dest="seeds", help="tensor to seed (repeat; default: first output)")
    parser.add_argument("--wrt", action="append", help="intermediate tensor whose gradient is also an output (repeat)")
    parser.add_argument("--rectifier", choices=Rectifier.values(), default=Rectifier.PLAIN.value, help="the ReLU backward rule")
    parser.add_argument(
        "--rectifiers",
        choices=RectifierScope.values(),
        default=RectifierScope.ALL.value,
        help="which rectifiers the rule applies to",
    )
    _out(parser, what="output folder; the graph is written there as backward.onnx")


def export_backward(args: argparse.Namespace, client: Client) -> object:
    data = client.export_backward(
        args.model_id, seeds=args.seeds or (), wrt=args.wrt or (), rectifier=args.rectifier, rectifiers=args.rectifiers
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "backward.onnx").write_bytes(data)
    return {"files": [str(args.out / "backward.onnx")], "bytes": len(data)}


def _stepped(run: Callable[[argparse.Namespace, Client, StepBar], object]) -> Callable[[argparse.Namespace, Client], object]:
    """An optimization loop's command, drawing its steps and loss on a bar."""

    def command(args: argparse.Namespace, client: Client) -> object:
        bar = StepBar()
        try:
            return run(args, client, bar)
        finally:
            bar.close()

    return command


class Command(NamedTuple):
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Client], object]


class LocalCommand(NamedTuple):
    """A subcommand that makes its own connection (or none) and returns its exit code: the server
    package registers these (``convscope audit`` starts an embedded server when given no address)."""

    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {
    "upload": Command("upload a model; prints its id and tensors", upload_arguments, upload),
    "models": Command("list stored models", lambda parser: None, list_models),
    "model": Command("show one model with its layer table (tensor and node names)", _model_id, show_model),
    "delete": Command("delete a model", _model_id, delete_model),
    "activations": Command("activations of layers for an image or .npy tensor", activations_arguments, activations),
    "filters": Command("weights of a Conv layer as .npy and a PNG grid", filters_arguments, filters),
    "top-activations": Command(
        "the images that most excite each channel, with receptive-field boxes", top_activations_arguments, top_activations
    ),
    "embedding": Command("t-SNE / PCA of CNN codes, drawn as an image grid", embedding_arguments, embedding),
    "dead-filters": Command(
        "per channel, the share of images on which it is zero everywhere", dead_filters_arguments, dead_filters
    ),
    "occlusion": Command("occlusion sensitivity map (with a progress bar)", occlusion_arguments, occlusion),
    "attribution": Command("a gradient map: " + ", ".join(AttributionMethod.values()), attribution_arguments, attribution),
    "export-backward": Command("write the forward+backward ONNX graph", export_backward_arguments, export_backward),
    "invert": Command(
        "an image whose code at a layer matches the input's (Mahendran & Vedaldi)",
        synthesis_cli.invert_arguments,
        _stepped(synthesis_cli.invert),
    ),
    "visualize": Command(
        "class models or a unit's visualization by gradient ascent (Simonyan et al.; Yosinski et al.)",
        synthesis_cli.visualize_arguments,
        _stepped(synthesis_cli.visualize),
    ),
    "adversarial": Command(
        "an FGSM or PGD adversarial (fooling) image", synthesis_cli.adversarial_arguments, _stepped(synthesis_cli.adversarial)
    ),
    "correspondence": Command(
        "matches in image B for points of image A (Long et al.)",
        synthesis_cli.correspondence_arguments,
        synthesis_cli.correspondence,
    ),
}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except where there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False) or action.default is argparse.SUPPRESS:
            return action.help or ""
        return super()._get_help_string(action) or ""


def build_parser(
    prog: str, extra_commands: dict[str, str], local_commands: dict[str, LocalCommand] | None = None
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Inspect ONNX vision models through a convscope server.", formatter_class=_HelpFormatter
    )
    parser.add_argument("--address", default=DEFAULT_ADDRESS, help="server host:port")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per call (default: no limit)")
    parser.add_argument(
        "--token",
        default=os.environ.get("CONVSCOPE_TOKEN"),
        help="bearer token for a server started with --token-file (default: $CONVSCOPE_TOKEN)",
    )
    parser.add_argument("--tls", action="store_true", help="connect with TLS, trusting the system's roots")
    parser.add_argument("--tls-ca", type=Path, help="connect with TLS, trusting the CA certificate in this PEM file")
    parser.add_argument("--tls-cert", type=Path, help="this client's certificate (PEM), for servers that require one")
    parser.add_argument("--tls-key", type=Path, help="the key of --tls-cert (PEM)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in extra_commands.items():
        commands.add_parser(name, help=help_text)
    registered: dict[str, Command | LocalCommand] = {**COMMANDS, **(local_commands or {})}
    for name, command in registered.items():
        command.arguments(commands.add_parser(name, help=command.help, description=command.help, formatter_class=_HelpFormatter))
    return parser


def tls_from_arguments(args: argparse.Namespace) -> Tls | None:
    """The TLS settings of the global --tls* options (None: plaintext); UsageError for a missing file."""
    paths = (args.tls_ca, args.tls_cert, args.tls_key)
    if not args.tls and not any(paths):
        return None
    missing = [path for path in paths if path is not None and not path.is_file()]
    if missing:
        raise UsageError(f"no such file: {missing[0]}")
    return Tls(*paths)


def main(
    argv: list[str] | None = None,
    *,
    prog: str = "convscope-client",
    extra_commands: dict[str, str] | None = None,
    local_commands: dict[str, LocalCommand] | None = None,
) -> int:
    args = build_parser(prog, extra_commands or {}, local_commands).parse_args(argv)
    if local_commands and args.command in local_commands:
        return local_commands[args.command].run(args)
    try:
        with Client(args.address, timeout=args.timeout, token=args.token, tls=tls_from_arguments(args)) as client:
            result = COMMANDS[args.command].run(args, client)
    except ConvscopeError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_REFUSED
    except (UsageError, ValueError) as error:  # ValueError: what the client refuses to send
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:  # writing the results
        print(f"error: {error.strerror or error}: {error.filename or ''}".rstrip(": "), file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        print("\ncancelled: the server stops working on the call", file=sys.stderr)
        return EXIT_CANCELLED
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
