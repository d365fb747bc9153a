"""The layer table at the input shape of a request.

The store probes a model once, at one input shape (``ModelRecord.probe_shape``).  Where the
model's sizes are symbolic a request may bring any other size, and every method sizes what it
builds from the layer table: seeds and target ranges, batch sizes, Grad-CAM layers, receptive
fields, occlusion plans.  So a request gets the table at its own input shape, learned by one
run of the model at that shape (a size the model rejects is refused there, quoting
onnxruntime) and cached per (model, shape).  The graphs themselves keep the model's symbolic
sizes, so their sessions serve every shape.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from convscope.model.types import ModelRecord
from convscope.runtime.ingest import probe_shape
from convscope.runtime.sessions import Runtime

# Layer tables at this many (model, shape) pairs are kept; each is a few hundred small records.
TABLES_KEPT = 64


def table_input_shape(record: ModelRecord) -> tuple[int, ...]:
    """The input shape the record's layer table was taken at (batch 1)."""
    return record.probe_shape or probe_shape(record.input.shape, record.preprocessing)


class ShapedRecords:
    """``at(record, shape)``: the record with its layer table at that input shape."""

    def __init__(self, runtime: Runtime, *, kept: int = TABLES_KEPT) -> None:
        self._runtime = runtime
        self._kept = kept
        self._tables: OrderedDict[tuple[object, ...], tuple[ModelRecord, ModelRecord]] = OrderedDict()
        self._lock = threading.Lock()

    def at(self, record: ModelRecord, input_shape: Sequence[int], others: Mapping[str, np.ndarray] | None = None) -> ModelRecord:
        """``others``: the request's values of the model's other inputs (their first sample
        feeds the table's run)."""
        sample = tuple(int(d) for d in input_shape[1:])
        if sample == table_input_shape(record)[1:]:
            return record
        firsts = {name: value[:1] if batched else value for name, value, batched in _other_feeds(record, others or {})}
        key = (record.id, sample, tuple(sorted((name, value.shape) for name, value in firsts.items())))
        with self._lock:
            cached = self._tables.get(key)
            if cached is not None:
                self._tables.move_to_end(key)
        if cached is not None and cached[0] is record:
            return cached[1]
        if cached is not None:  # the record's metadata changed since (name, labels): the table holds
            layers = cached[1].layers
        else:
            names = {layer.tensor: layer.dim_names for layer in record.layers}
            table = self._runtime.layer_table(
                record.id,
                (1, *sample),
                record.input.dtype,
                dynamic_batch=record.dynamic_batch,
                layout=record.preprocessing.layout,
                others=firsts,
            )
            layers = tuple(dataclasses.replace(layer, dim_names=names.get(layer.tensor, ())) for layer in table)
        shaped = dataclasses.replace(record, layers=layers, probe_shape=(1, *sample))
        with self._lock:
            self._tables[key] = (record, shaped)
            while len(self._tables) > self._kept:
                self._tables.popitem(last=False)
        return shaped

    def forget(self, model_id: str) -> None:
        with self._lock:
            for key in [k for k in self._tables if k[0] == model_id]:
                del self._tables[key]


def _other_feeds(record: ModelRecord, others: Mapping[str, np.ndarray]) -> Iterator[tuple[str, np.ndarray, bool]]:
    """(name, value, has a batch axis) of each of the model's other inputs."""
    for spec in record.inputs[1:]:
        if spec.name in others:
            yield spec.name, others[spec.name], spec.shape[:1] == (-1,)
