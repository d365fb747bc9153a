"""Choose onnxruntime execution providers from what actually loads, and say so once."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper
from threadpoolctl import threadpool_limits

log = logging.getLogger(__name__)

# onnxruntime's own logger: errors only. Its warnings (e.g. "some nodes were not assigned to
# the preferred provider") are routine and would drown our one clean line.
ORT_LOG_SEVERITY_ERROR = 3
ORT_LOG_SEVERITY_FATAL = 4


@functools.lru_cache(maxsize=1)
def usable_providers() -> tuple[str, ...]:
    """Providers in preference order, CUDA only if a session on it really runs.

    onnxruntime-gpu lists CUDAExecutionProvider even on machines without a GPU or CUDA
    libraries, then prints a wall of load errors and silently falls back. We try a tiny
    model with the loader's errors muted and keep CUDA only if the session kept it.
    """
    ort.set_default_logger_severity(ORT_LOG_SEVERITY_ERROR)
    chosen: list[str] = []
    reason = ""
    if "CUDAExecutionProvider" in ort.get_available_providers():
        try:
            ort.set_default_logger_severity(ORT_LOG_SEVERITY_FATAL)
            session = ort.InferenceSession(_probe_model(), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
            session.run(None, {"x": np.ones((1,), np.float32)})
            if "CUDAExecutionProvider" in session.get_providers():
                chosen.append("CUDAExecutionProvider")
            else:
                reason = "CUDA libraries or a GPU are missing"
        except Exception as error:  # any failure means: no CUDA here
            reason = f"CUDA provider failed: {type(error).__name__}"
        finally:
            ort.set_default_logger_severity(ORT_LOG_SEVERITY_ERROR)
    else:
        reason = "this onnxruntime build has no CUDA provider"
    chosen.append("CPUExecutionProvider")
    if len(chosen) > 1:
        log.info("onnxruntime %s: using %s", ort.__version__, ", ".join(chosen))
    else:
        log.info("onnxruntime %s: using CPUExecutionProvider (%s)", ort.__version__, reason)
    return tuple(chosen)


# onnxruntime's CUDA provider runs convolutions in TF32 by default. On an H200 that left
# activations within 0.2 % of the CPU provider's but input gradients 5-8 % off (relative L2):
# backward graphs chain twice as many convolutions, and gradient maps are signed and
# high-frequency. Explanations must be right before they are fast: full FP32.
CUDA_OPTIONS = {"use_tf32": "0"}


def provider_settings(providers: Sequence[str]) -> list[str | tuple[str, dict[str, str]]]:
    """``providers`` as onnxruntime takes them, each with the options we run it with."""
    return [(name, dict(CUDA_OPTIONS)) if name == "CUDAExecutionProvider" else name for name in providers]


def _probe_model() -> bytes:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def new_session(
    model: str | bytes, *, providers: Sequence[str] | None = None, threads: int = 0, spin: bool = False
) -> ort.InferenceSession:
    """An onnxruntime session with our options, on ``providers`` (default: those that load)
    with the settings we run them with."""
    chosen = usable_providers() if providers is None else providers
    return ort.InferenceSession(model, session_options(threads=threads, spin=spin), providers=provider_settings(chosen))


def session_options(*, threads: int = 0, spin: bool = False) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.log_severity_level = ORT_LOG_SEVERITY_ERROR
    # Uploaded models are untrusted: never let onnxruntime parse its own .ort format.
    options.add_session_config_entry("session.load_model_format", "ONNX")
    options.intra_op_num_threads = threads
    # The server holds many sessions (per model and pass set) and runs several per request
    # (occlusion's stages and tail): each has its own thread pool, and threads that spin-wait
    # after a run steal the cores the next session needs (incremental occlusion slowed down).
    # ``spin``: a session run back to back with little else between its runs (an optimization
    # loop), where waking sleeping threads for each of a backward graph's hundreds of small ops
    # costs more than the spinning (docs/backward_speed.md has both measurements).
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return options


def one_blas_thread() -> None:
    """Keep numpy's BLAS (OpenBLAS) to one thread for the rest of the process.

    OpenBLAS's threads busy-wait after every matrix product, on the cores that onnxruntime's
    threads and the other runs in flight need; the service's numpy products are small (attribute
    moments, occlusion attributions), so more threads only burn CPU beside inference. Measured by
    ``benchmarks/audit.py``: the audit's shared pass lost a fifth of its throughput to them.
    """
    threadpool_limits(1, user_api="blas")
