"""runtime/sessions.py: the session options each kind of graph gets.  Threads spin between ops
only in an optimization loop's sessions (``LossGraph``: one run per step, back to back); every
other session sleeps its threads, so sessions that take turns (occlusion's stages, a backward
graph beside a forward) do not steal each other's cores."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from convscope.core import Convscope
from convscope.model.types import ModelRecord
from convscope.runtime.graphs import BackwardGraph, LossGraph, PlainGraph
from tests.nets import exported

SPINNING = "session.intra_op.allow_spinning"


@pytest.fixture(scope="module")
def core_and_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Convscope, ModelRecord]]:
    core = Convscope(tmp_path_factory.mktemp("store"))
    record = core.upload([("", exported("ResNetStyle", "torchscript").SerializeToString())])
    yield core, record
    core.close()


def test_only_an_optimization_loops_sessions_spin(core_and_model) -> None:
    core, record = core_and_model
    logits = record.outputs[0].name
    backward = BackwardGraph(seeds=(logits,), keep=(logits,))

    def spinning(spec) -> str:  # type: ignore[no-untyped-def]
        session = core.context.runtime.session(record.id, spec, dynamic_batch=record.dynamic_batch)
        return session.get_session_options().get_session_config_entry(SPINNING)

    assert spinning(LossGraph(backward, "cross_entropy")) == "1"
    assert spinning(backward) == "0"
    assert spinning(PlainGraph()) == "0"
