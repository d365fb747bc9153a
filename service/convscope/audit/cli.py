"""`convscope audit MODEL --data DATASET --out DIR`: run the audit through the ``Audit`` RPC — on
the server at ``--address``, else on an embedded server over a temporary store — and write
report.json, junit.xml and report.html. With ``--remote URL --remote-model NAME`` (no MODEL) the
audit runs here against a model served elsewhere over the Open Inference Protocol: nothing is
uploaded, every batch is inferred there, and the checks that need more than outputs are skipped.

Exit codes, for CI: 0 every check passed, 1 a threshold failed, 2 bad configuration or input
(the message names the rows), 3 internal error (a crashed check counts here unless its config
allows it), 130 cancelled with Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import logging
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc

from convscope.errors import ServiceError
from convscope_client import Client, ConvscopeError
from convscope_client.bars import JobProgressBar
from convscope_client.cli import LocalCommand, UsageError, tls_from_arguments

EXIT_PASSED, EXIT_FAILED, EXIT_INPUT, EXIT_INTERNAL, EXIT_CANCELLED = 0, 1, 2, 3, 130
INPUT_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNIMPLEMENTED,
}


class InputError(Exception):
    """A command line the audit rejects before calling the server (exit 2)."""


def audit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        nargs="?",
        help="an .onnx file (preprocessing and labels from its convscope.* metadata), "
        "or with --address an uploaded model's id; none with --remote",
    )
    parser.add_argument(
        "--data",
        required=True,
        help="a folder of class sub-folders, or a CSV path,label[,attributes…]; "
        "with --address, a path under one of the server's data roots",
    )
    parser.add_argument("--labels", help="a CSV path,label[,attributes…] labelling the images under --data")
    parser.add_argument("--human", help="a CSV path,labeller,top1…top5 of people's labels (`convscope label` writes it)")
    parser.add_argument("--config", type=Path, help="audit.toml with thresholds (default: the documented defaults)")
    parser.add_argument("--out", type=Path, default=Path("audit-out"), help="where the reports are written")
    # Its own --address (after the subcommand), because no address means an embedded server here.
    parser.add_argument("--address", help="a running server (host:port); default: an embedded one on a temporary store")
    parser.add_argument(
        "--timeout",
        type=float,
        help="seconds for the whole audit (default: no limit); with --remote, for each request to that server",
    )
    remote = parser.add_argument_group("a model served elsewhere (Open Inference Protocol, gRPC), as remote-occlusion takes it")
    remote.add_argument("--remote", metavar="URL", help="the inference server's gRPC endpoint, host:port or grpc://host:port")
    remote.add_argument("--remote-model", metavar="NAME", help="the model's name on that server")
    remote.add_argument("--model-version", help="its version (default: the server's choice)")
    remote.add_argument(
        "--preprocessing",
        type=json.loads,
        help='JSON as upload takes it, e.g. \'{"resize": 256, "size": [224, 224]}\' (default: none)',
    )


@contextlib.contextmanager
def _server(address: str | None) -> Iterator[str]:
    """``address``, or an embedded server's: its data root is the whole file system, because it
    reads only what this user's own command names, with this user's permissions."""
    if address:
        yield address
        return
    from convscope.rpc.server import ServerConfig, create_server

    with tempfile.TemporaryDirectory(prefix="convscope-audit-") as store:
        running = create_server(ServerConfig(store=Path(store), host="127.0.0.1", port=0, data_roots=(Path("/"),)))
        try:
            yield f"127.0.0.1:{running.port}"
        finally:
            running.stop(grace=1)


def _local(path: str | None, embedded: bool) -> str:
    """A dataset path as the server must see it: absolute for the embedded server, checked first."""
    if not path:
        return ""
    if not embedded:
        return path
    if not Path(path).exists():
        raise InputError(f"no such file: {path}")
    return str(Path(path).resolve())


def run(args: argparse.Namespace) -> int:
    config_toml = ""
    if args.config is not None:
        if not args.config.is_file():
            raise InputError(f"no such file: {args.config}")
        config_toml = args.config.read_text()
    if args.remote or args.remote_model:
        return _remote(args, config_toml)
    if not args.model:
        raise InputError("give the model: an .onnx file, an uploaded model's id with --address, or --remote and --remote-model")
    embedded = not args.address
    data, labels, human = (_local(path, embedded) for path in (args.data, args.labels, args.human))
    model_file = Path(args.model)
    if embedded and not model_file.is_file():
        raise InputError(f"no such file: {args.model} (a model id needs --address)")
    try:
        connection = {} if embedded else {"token": args.token, "tls": tls_from_arguments(args)}
    except UsageError as error:
        raise InputError(str(error)) from None
    with _server(args.address) as address, Client(address, timeout=args.timeout, **connection) as client:
        model_id = client.upload_model(model_file).id if model_file.is_file() else args.model
        bar = JobProgressBar()
        try:
            report = client.audit(model_id, data, labels=labels, human=human, config_toml=config_toml, progress=bar)
        finally:
            bar.close()
    return _written(args.out, report.files, [(c.name, c.status, c.message) for c in report.checks], report.passed, report.errored)


def _remote(args: argparse.Namespace, config_toml: str) -> int:
    """The audit run here, every batch inferred by the remote server (its errors carry their status)."""
    # The audit's own modules (onnxruntime, scipy) load only where it runs here, as for the embedded server.
    from convscope.audit.engine import CheckOutcome
    from convscope.audit.service import AuditFiles, remote_audit
    from convscope.methods.dataset_jobs import Progress
    from convscope.model.types import Preprocessing
    from convscope.oip.remote import RemoteModel, first_output

    if not (args.remote and args.remote_model):
        raise InputError("a remote model needs both --remote URL and --remote-model NAME")
    if args.model or args.address:
        raise InputError("--remote audits a model served elsewhere: give no MODEL and no --address")
    data, labels, human = (Path(_local(path, True)) if path else None for path in (args.data, args.labels, args.human))
    assert data is not None  # --data is required
    with RemoteModel(
        args.remote,
        args.remote_model,
        version=args.model_version or "",
        token=args.token,
        **({"timeout": args.timeout} if args.timeout else {}),
    ) as remote:
        record = remote.record(Preprocessing.from_dict(args.preprocessing) if args.preprocessing else None)
        checks: list[CheckOutcome] = []
        bar = JobProgressBar()
        try:
            for event in remote_audit(
                record, first_output(remote, record), data, labels=labels, human=human, config_toml=config_toml
            ):
                if isinstance(event, Progress):
                    bar(event)  # type: ignore[arg-type]  # the client's Progress has the same fields
                elif isinstance(event, CheckOutcome):
                    checks.append(event)
                else:
                    files: AuditFiles = event
        finally:
            bar.close()
    return _written(args.out, files.files, [(c.name, c.status, c.message) for c in checks], files.passed, files.errored)


def _written(out: Path, files: dict[str, bytes], checks: list[tuple[str, str, str]], passed: bool, errored: bool) -> int:
    """Write the reports, summarize them, and the exit code they mean."""
    out.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (out / name).write_bytes(content)
    print(
        json.dumps(
            {
                "passed": passed,
                "checks": {name: status for name, status, _ in checks},
                "files": [str(out / name) for name in files],
            },
            indent=2,
        )
    )
    for name, status, message in checks:
        if status in ("failed", "error"):
            print(f"{name} {status}: {message}", file=sys.stderr)
    if errored:
        return EXIT_INTERNAL
    return EXIT_PASSED if passed else EXIT_FAILED


def audit(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INPUT
    except ConvscopeError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INPUT if error.code in INPUT_ERRORS else EXIT_INTERNAL
    except ServiceError as error:  # --remote runs the audit here: the service's own errors
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INPUT if error.status in INPUT_ERRORS else EXIT_INTERNAL
    except KeyboardInterrupt:
        print("\ncancelled: the audit stops", file=sys.stderr)
        return EXIT_CANCELLED
    except Exception as error:  # noqa: BLE001 - CI must see an internal failure as such, never as a pass
        print(f"error: internal error in the audit: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_INTERNAL


def label_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dataset", type=Path, help="a folder of images (class sub-folders are fine: their names are not shown) or a CSV path,…"
    )
    parser.add_argument("--out", type=Path, required=True, help="the CSV to write (and resume from)")
    parser.add_argument("--model", type=Path, help="an .onnx whose convscope.labels metadata names the classes")
    parser.add_argument("--labels", type=Path, help="or a text file, one class name per line")
    parser.add_argument("--labeller", default=getpass.getuser(), help="your name in the CSV")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")


def label(args: argparse.Namespace) -> int:
    from convscope.audit import labelling  # onnx, for the label names: only this command needs it

    return labelling.run(args)


COMMANDS = {
    "audit": LocalCommand(
        "check a model on labelled data for CI: report.json, junit.xml, report.html; exit 0/1/2/3", audit_arguments, audit
    ),
    "label": LocalCommand(
        "a local page for people to label images; writes the CSV `audit --human` reads", label_arguments, label
    ),
}
