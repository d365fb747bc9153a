"""The transport-agnostic data plane: what the gRPC servicer, the CLI and tests call."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from convscope.errors import InvalidArgument
from convscope.methods import activations as activation_methods
from convscope.methods import filters as filter_methods
from convscope.methods.context import MethodContext
from convscope.methods.inputs import ModelInput, from_images, from_tensor
from convscope.model.store import DEFAULT_MAX_UPLOAD_BYTES, ModelStore, Upload
from convscope.model.types import ModelRecord, Preprocessing
from convscope.runtime.inspect import describe_upload
from convscope.runtime.sessions import DEFAULT_SESSION_BUDGET_BYTES, Runtime

log = logging.getLogger(__name__)


class Convscope:
    def __init__(
        self,
        store_dir: Path,
        *,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
        session_budget_bytes: int = DEFAULT_SESSION_BUDGET_BYTES,
    ) -> None:
        self.store = ModelStore(store_dir, max_upload_bytes=max_upload_bytes)
        self.runtime = Runtime(self.store.load, budget_bytes=session_budget_bytes)
        self.context = MethodContext(self.runtime)

    def close(self) -> None:
        self.store.close()

    # -- models

    def upload(
        self,
        chunks: Iterable[tuple[str, bytes]],
        *,
        name: str = "",
        preprocessing: Preprocessing | None = None,
        labels: Sequence[str] = (),
    ) -> ModelRecord:
        """Store a model from (file, data) chunks; file "" is the model, others its side files."""
        upload: Upload = self.store.begin_upload()
        try:
            for file, data in chunks:
                upload.write(file, data)
        except BaseException:
            self.store.abort(upload)
            raise
        return self.store.commit(
            upload,
            lambda model_id, done: describe_upload(model_id, done, name=name, preprocessing=preprocessing, labels=labels),
        )

    def model(self, model_id: str) -> ModelRecord:
        return self.store.get(model_id)

    def models(self) -> list[ModelRecord]:
        return self.store.list()

    def delete(self, model_id: str) -> None:
        self.store.delete(model_id)
        self.runtime.forget(model_id)

    # -- inputs

    def prepare(self, record: ModelRecord, *, tensor: np.ndarray | None = None, images: Sequence[bytes] = ()) -> ModelInput:
        if tensor is not None:
            return from_tensor(record, tensor)
        if images:
            return from_images(record, images)
        raise InvalidArgument("send an input: a raw tensor or at least one encoded image")

    # -- methods

    def activations(
        self, model_id: str, model_input: ModelInput, layers: Sequence[str] | None, *, render: bool = False
    ) -> list[activation_methods.ActivationResult]:
        record = self.model(model_id)
        return activation_methods.activations(self.context, record, model_input.batch, layers, render=render)

    def dead_filters(
        self, model_id: str, batches: Sequence[np.ndarray], layers: Sequence[str] | None, *, threshold: float = 1.0
    ) -> tuple[list[activation_methods.DeadFilterReport], int]:
        record = self.model(model_id)
        return activation_methods.dead_filters(self.context, record, batches, layers, threshold=threshold)

    def filters(self, model_id: str, layer: str, *, render: bool = True) -> filter_methods.FiltersResult:
        record = self.model(model_id)
        base = self.runtime.base_graph(record.id, dynamic_batch=record.dynamic_batch)
        return filter_methods.filters(base, layer, render=render)
