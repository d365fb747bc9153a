"""Server factory: the servicer plus health checking and reflection, on any port (0 = pick one)."""

from __future__ import annotations

import errno
import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from convscope.core import Convscope
from convscope.limits import RequestLimits
from convscope.model.store import DEFAULT_MAX_UPLOAD_BYTES
from convscope.rpc import oip
from convscope.rpc.deadlines import DEFAULT_DEADLINE_S, DeadlineInterceptor
from convscope.rpc.observability import Metrics, ObservabilityInterceptor, QueueingExecutor
from convscope.rpc.security import TlsFiles, TokenInterceptor, load_tokens, server_credentials, warn_if_exposed
from convscope.rpc.servicer import DEFAULT_MAX_RESPONSE_BYTES, ConvscopeServicer
from convscope.workers.pool import SandboxSettings
from convscope_client._proto import convscope_pb2 as pb
from convscope_client._proto import convscope_pb2_grpc as pb_grpc
from convscope_client._proto import open_inference_grpc_pb2_grpc as oip_grpc
from convscope_client.wire import decode_activations_request

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Convscope"].full_name
# Requests carry images or tensors, never models (those are chunked): 64 MiB is generous.
DEFAULT_MAX_REQUEST_BYTES = 64 << 20


class PortInUse(OSError):
    """Another process listens on the port asked for."""


@dataclass
class ServerConfig:
    store: Path
    host: str = "127.0.0.1"
    port: int = 0
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    workers: int = 8
    data_roots: tuple[Path, ...] = ()  # folders dataset jobs may read (--data-root)
    limits: RequestLimits = RequestLimits()  # how much work one request may ask for
    ray_address: str | None = None  # run dataset jobs on this Ray cluster (--ray-address)
    ray_workers: int = 0  # Ray actors per job, 0: one per CPU of the cluster (--ray-workers)
    max_concurrent_rpcs: int | None = None  # beyond it, RESOURCE_EXHAUSTED at once (--max-concurrent-rpcs)
    deadline_s: float = DEFAULT_DEADLINE_S  # for calls whose client set none, or a longer one (--deadline)
    method_deadlines_s: dict[str, float] = field(default_factory=dict)  # per method (--method-deadline)
    metrics_port: int | None = None  # set: Prometheus metrics over HTTP on this port of host (0 picks one)
    token_file: Path | None = None  # set: every call but health checks needs a bearer token (--token-file)
    tls: TlsFiles | None = None  # set: TLS, mutual when it names a client CA
    reflection: bool = False  # list the services to tools like grpcurl (--reflection)
    sandbox: SandboxSettings | None = None  # set: models load and run in worker processes (--workers)


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    core: Convscope
    health: health.HealthServicer
    metrics: Metrics
    metrics_port: int | None = None

    def stop(self, grace: float | None = 5.0) -> None:
        """Graceful shutdown: report NOT_SERVING, finish calls in flight, then close the store."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        self.metrics.close()
        self.core.close()


class _HandlerCapture:
    """Stands in for a grpc.Server to receive the generated code's method handlers."""

    def __init__(self) -> None:
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        pass

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self.handlers = dict(handlers)


def add_servicer(servicer: ConvscopeServicer, server: grpc.Server) -> None:
    """The generated registration, except that the Activations methods read their requests with
    wire.decode_activations_request and return their responses serialized already (by wire.py:
    tensor bytes copied once; the messages are the same)."""
    capture = _HandlerCapture()
    pb_grpc.add_ConvscopeServicer_to_server(servicer, capture)
    handlers = capture.handlers
    handlers["Activations"] = grpc.unary_unary_rpc_method_handler(
        servicer.Activations, request_deserializer=decode_activations_request
    )
    handlers["StreamActivations"] = grpc.unary_stream_rpc_method_handler(
        servicer.StreamActivations, request_deserializer=decode_activations_request
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


def _in_use(host: str, port: int) -> bool:
    try:
        with socket.create_server((host, port)):
            return False
    except OSError as error:
        return error.errno == errno.EADDRINUSE


def create_server(config: ServerConfig) -> RunningServer:
    tokens = load_tokens(config.token_file) if config.token_file else None
    methods = pb.DESCRIPTOR.services_by_name["Convscope"].methods_by_name
    unknown = sorted(set(config.method_deadlines_s) - set(methods))
    if unknown:
        raise ValueError(f"--method-deadline names no method: {unknown}; the methods are {sorted(methods)}")
    core = Convscope(
        config.store,
        max_upload_bytes=config.max_upload_bytes,
        data_roots=config.data_roots,
        limits=config.limits,
        ray_address=config.ray_address,
        ray_workers=config.ray_workers,
        sandbox=config.sandbox,
    )
    max_response_bytes = min(config.max_response_bytes, DEFAULT_MAX_RESPONSE_BYTES)  # gRPC takes no more
    executor = QueueingExecutor(max_workers=config.workers, thread_name_prefix="convscope-rpc")
    metrics = Metrics(core.runtime, executor)
    server = grpc.server(
        executor,
        interceptors=[
            ObservabilityInterceptor(metrics),  # outermost: it counts refused calls too
            *([TokenInterceptor(tokens)] if tokens else []),
            DeadlineInterceptor(config.deadline_s, config.method_deadlines_s),
        ],
        maximum_concurrent_rpcs=config.max_concurrent_rpcs,
        options=[
            ("grpc.max_receive_message_length", config.max_request_bytes),
            ("grpc.max_send_message_length", max_response_bytes),
            # gRPC's default lets a second server share the port and take half the calls.
            ("grpc.so_reuseport", 0),
        ],
    )
    add_servicer(ConvscopeServicer(core, max_response_bytes=max_response_bytes), server)
    # The Open Inference Protocol on the same port, for tritonclient and KServe's SDK (rpc/oip.py).
    oip_grpc.add_GRPCInferenceServiceServicer_to_server(
        oip.OpenInferenceServicer(core, max_response_bytes=max_response_bytes), server
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set(oip.SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    if config.reflection:
        reflection.enable_server_reflection(
            (SERVICE_NAME, oip.SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            server,
        )
    address = f"{config.host}:{config.port}"
    try:
        port = (
            server.add_secure_port(address, server_credentials(config.tls)) if config.tls else server.add_insecure_port(address)
        )
    except RuntimeError:  # what grpcio raises when it cannot bind
        port = 0
    if port == 0:
        core.close()
        if _in_use(config.host, config.port):
            raise PortInUse(f"port {config.port} is already in use (pick another with --port, or 0 for a free one)")
        raise OSError(f"could not bind {config.host}:{config.port}")
    server.start()
    try:
        metrics_port = metrics.serve(config.host, config.metrics_port) if config.metrics_port is not None else None
    except OSError as error:
        server.stop(0)
        core.close()
        if error.errno == errno.EADDRINUSE:
            raise PortInUse(f"metrics port {config.metrics_port} is already in use (pick another with --metrics-port)") from None
        raise
    log.info(
        "convscope serving on %s:%d (store %s%s%s)",
        config.host,
        port,
        config.store,
        ", TLS" if config.tls else "",
        ", tokens" if tokens else "",
    )
    if metrics_port is not None:
        log.info("metrics at http://%s:%d/metrics", config.host, metrics_port)
    warn_if_exposed(config.host, tokens=tokens is not None, tls=config.tls is not None)
    return RunningServer(server, port, core, health_servicer, metrics, metrics_port)
