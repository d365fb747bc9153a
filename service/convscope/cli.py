"""`convscope serve` runs the server; every other subcommand is the client CLI.

The server (onnxruntime and all) is imported for `serve` only, so client commands start fast.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from convscope.audit import cli as audit_cli
from convscope_client import cli as client_cli

SIGNAL_POLL_SECONDS = 0.2


def _method_seconds(text: str) -> tuple[str, float]:
    method, _, seconds = text.partition("=")
    try:
        return method, float(seconds)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected METHOD=SECONDS, e.g. Occlusion=600, got {text!r}") from None


def serve(argv: list[str]) -> int:
    from convscope.limits import RequestLimits
    from convscope.logs import configure_logging
    from convscope.rpc.deadlines import DEFAULT_DEADLINE_S, DEFAULT_METHOD_DEADLINES_S
    from convscope.rpc.security import TlsFiles
    from convscope.rpc.server import DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_RESPONSE_BYTES, ServerConfig, create_server
    from convscope.workers.pool import SandboxSettings

    parser = argparse.ArgumentParser(
        prog="convscope serve",
        description="Run the convscope gRPC server.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0: every one)")
    parser.add_argument("--port", type=int, default=50051, help="0 picks a free port")
    parser.add_argument("--store", type=Path, default=Path("convscope-store"), help="model store folder")
    parser.add_argument("--max-upload-mb", type=int, default=2048, help="largest model upload, side files included (MiB)")
    parser.add_argument(
        "--max-request-mb",
        type=int,
        default=DEFAULT_MAX_REQUEST_BYTES >> 20,
        help="largest request message, e.g. an image batch (MiB); uploads are chunked and not bound by it",
    )
    parser.add_argument(
        "--max-response-mb", type=int, default=DEFAULT_MAX_RESPONSE_BYTES >> 20, help="largest response message (MiB)"
    )
    parser.add_argument("--port-file", type=Path, help="write the bound port here once serving")
    parser.add_argument(
        "--data-root",
        type=Path,
        action="append",
        default=[],
        dest="data_roots",
        metavar="DIR",
        help="a folder dataset jobs may read (repeatable); paths outside every data root are refused",
    )
    limits = RequestLimits()
    for flag, field, what in (
        ("--max-steps", "max_steps", "most optimization steps one call may ask for (invert, visualize, adversarial)"),
        ("--max-batch", "max_batch", "most samples (images or tensor rows) in one request"),
        ("--max-occlusion-positions", "max_occlusion_positions", "most occluder positions in one occlusion map"),
        ("--max-path-points", "max_path_points", "most integrated-gradients steps or SmoothGrad samples in one call"),
        (
            "--max-image-pixels",
            "max_image_pixels",
            "most pixels of one image (width × height); larger ones are refused before decoding",
        ),
        ("--max-nodes", "max_nodes", "most nodes an uploaded model may have (subgraphs included)"),
        ("--max-dataset-files", "max_dataset_files", "most files in a server folder one dataset job may read"),
    ):
        parser.add_argument(flag, type=int, default=getattr(limits, field), dest=field, help=what)
    parser.add_argument(
        "--max-dataset-gb",
        type=float,
        default=limits.max_dataset_bytes / 2**30,
        help="most GiB one dataset job may read from server folders",
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=DEFAULT_DEADLINE_S,
        metavar="SECONDS",
        help="a call's deadline when its client set none (or a longer one); work stops when it passes",
    )
    parser.add_argument(
        "--method-deadline",
        action="append",
        default=[],
        type=_method_seconds,
        metavar="METHOD=SECONDS",
        help=f"the deadline of one method (repeatable); defaults: {dict(DEFAULT_METHOD_DEADLINES_S)}",
    )
    parser.add_argument(
        "--max-concurrent-rpcs",
        type=int,
        default=None,
        help="calls in flight at once (health checks included); beyond it calls fail at once with RESOURCE_EXHAUSTED (default: no limit)",
    )
    parser.add_argument(
        "--ray-address",
        help="run dataset jobs on Ray: 'auto' (the cluster this node belongs to) or ray://HOST:PORT (pip install 'convscope[ray]')",
    )
    parser.add_argument("--ray-workers", type=int, default=0, help="Ray actors per dataset job (0: one per CPU of the cluster)")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    parser.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="json: one object per line, with the request id"
    )
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus metrics at http://HOST:PORT/metrics")
    parser.add_argument(
        "--token-file",
        type=Path,
        help="one 'NAME ROLE TOKEN' per line (ROLE: read or write); callers then need 'authorization: Bearer TOKEN'",
    )
    parser.add_argument("--tls-cert", type=Path, help="serve TLS with this certificate chain (PEM); needs --tls-key")
    parser.add_argument("--tls-key", type=Path, help="the private key of --tls-cert (PEM)")
    parser.add_argument("--tls-client-ca", type=Path, help="require client certificates signed by this CA (mutual TLS)")
    parser.add_argument("--reflection", action="store_true", help="enable gRPC server reflection (grpcurl list)")
    sandbox = SandboxSettings()
    parser.add_argument(
        "--workers",
        type=int,
        default=sandbox.workers,
        help="worker processes that validate, load and run models (0: in the server process, no sandbox)",
    )
    parser.add_argument(
        "--worker-memory-mb",
        type=int,
        default=sandbox.memory_mb,
        help="address space each worker may use (RLIMIT_AS); beyond it a request is RESOURCE_EXHAUSTED",
    )
    parser.add_argument(
        "--worker-run-seconds",
        type=float,
        default=sandbox.run_budget_s,
        metavar="SECONDS",
        help="the longest one onnxruntime run may take in a worker (default: the call's deadline only)",
    )
    parser.add_argument(
        "--worker-load-seconds",
        type=float,
        default=sandbox.load_budget_s,
        metavar="SECONDS",
        help="the longest validating and probing an upload may take in a worker",
    )
    args = parser.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None) or (args.tls_client_ca and not args.tls_cert):
        parser.error("--tls-cert and --tls-key go together, and --tls-client-ca needs them")
    configure_logging(args.log_level, args.log_format)
    try:
        running = create_server(
            ServerConfig(
                store=args.store,
                host=args.host,
                port=args.port,
                max_upload_bytes=args.max_upload_mb << 20,
                max_request_bytes=args.max_request_mb << 20,
                max_response_bytes=args.max_response_mb << 20,
                data_roots=tuple(args.data_roots),
                ray_address=args.ray_address,
                ray_workers=args.ray_workers,
                limits=RequestLimits(
                    **{field: getattr(args, field) for field in vars(limits) if field != "max_dataset_bytes"},
                    max_dataset_bytes=int(args.max_dataset_gb * 2**30),
                ),
                max_concurrent_rpcs=args.max_concurrent_rpcs,
                deadline_s=args.deadline,
                method_deadlines_s=dict(args.method_deadline),
                metrics_port=args.metrics_port,
                token_file=args.token_file,
                tls=TlsFiles(args.tls_cert, args.tls_key, args.tls_client_ca) if args.tls_cert else None,
                reflection=args.reflection,
                sandbox=SandboxSettings(
                    workers=args.workers,
                    memory_mb=args.worker_memory_mb or None,
                    run_budget_s=args.worker_run_seconds,
                    load_budget_s=args.worker_load_seconds,
                )
                if args.workers > 0
                else None,
            )
        )
    except (OSError, ValueError) as error:  # port in use, unreadable TLS files, a bad token file
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.port_file:
        args.port_file.write_text(f"{running.port}\n")
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    # The kernel may deliver the signal to any thread (gRPC's, onnxruntime's); only a wait that
    # wakes up lets the main thread run the Python handler. An untimed wait can sleep forever.
    while not stopping.wait(timeout=SIGNAL_POLL_SECONDS):
        pass
    logging.getLogger(__name__).info("shutting down")
    running.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        return serve(argv[1:])
    if argv[:1] == ["remote-occlusion"]:  # runs the method here, against a model served elsewhere
        from convscope.oip import cli as oip_cli

        return oip_cli.main(argv[1:])
    extra_commands = {
        "serve": "run the server (convscope serve --help)",
        "remote-occlusion": "occlusion of a model on an Open Inference Protocol server (convscope remote-occlusion --help)",
    }
    return client_cli.main(argv, prog="convscope", extra_commands=extra_commands, local_commands=audit_cli.COMMANDS)


if __name__ == "__main__":
    sys.exit(main())
