"""runtime/sessions.py: the session options each kind of graph gets.  Threads spin between ops
only in an optimization loop's sessions (``LossGraph``: one run per step, back to back); every
other session sleeps its threads, so sessions that take turns (occlusion's stages, a backward
graph beside a forward) do not steal each other's cores."""

from __future__ import annotations

from pathlib import Path

from threadpoolctl import threadpool_info

from convscope.core import Convscope
from convscope.runtime.graphs import BackwardGraph, GraphSpec, LossGraph, PlainGraph
from tests.nets import exported

SPINNING = "session.intra_op.allow_spinning"


def test_only_an_optimization_loops_sessions_spin(tmp_path: Path) -> None:
    core = Convscope(tmp_path)
    try:
        record = core.upload([("", exported("ResNetStyle", "torchscript").SerializeToString())])
        logits = record.outputs[0].name
        backward = BackwardGraph(seeds=(logits,), keep=(logits,))

        def spinning(spec: GraphSpec) -> str:
            session = core.context.runtime.session(record.id, spec, dynamic_batch=record.dynamic_batch)
            return session.get_session_options().get_session_config_entry(SPINNING)

        assert spinning(LossGraph(backward, "cross_entropy")) == "1"
        assert spinning(backward) == "0"
        assert spinning(PlainGraph()) == "0"
    finally:
        core.close()


def test_the_service_keeps_numpy_to_one_blas_thread(tmp_path) -> None:
    """OpenBLAS's idle threads busy-wait beside onnxruntime's: a Convscope holds BLAS to one thread."""
    Convscope(tmp_path / "store").close()
    blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    assert blas and all(pool["num_threads"] == 1 for pool in blas)
