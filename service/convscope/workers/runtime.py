"""The server's ``Runtime`` when models run in worker processes: same surface, so the methods
and the servicer do not change. Graphs are still built here (onnx protobuf, no onnxruntime);
sessions exist only in the workers, which build them from the spec and the stored files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from convscope.model.store import Upload
from convscope.model.types import LayerInfo, ModelRecord
from convscope.runtime.graphs import GraphSpec
from convscope.runtime.sessions import Runtime
from convscope.workers.pool import WorkerPool


class SandboxedRuntime(Runtime):
    def __init__(
        self, load_model: Callable[[str], onnx.ModelProto], model_folder: Callable[[str], Path], pool: WorkerPool
    ) -> None:
        super().__init__(load_model)
        self.pool = pool
        self._model_folder = model_folder

    @property
    def providers(self) -> tuple[str, ...]:
        """The workers' providers: this process never probes onnxruntime's own."""
        return self.pool.worker_providers()

    @property
    def concurrent_runs(self) -> int:
        """One run a worker process at a time."""
        return self.pool.size

    def describe_upload(self, model_id: str, upload: Upload, **options: Any) -> ModelRecord:
        return self.pool.describe(model_id, upload.folder, upload.side_names, upload.received, options)

    def layer_table(
        self,
        model_id: str,
        shape: Sequence[int],
        dtype: str,
        *,
        dynamic_batch: bool,
        layout: str,
        others: Mapping[str, np.ndarray],
    ) -> tuple[LayerInfo, ...]:
        return self.pool.layer_table(
            model_id,
            self._model_folder(model_id),
            tuple(shape),
            dtype,
            dynamic_batch=dynamic_batch,
            layout=layout,
            others=others,
        )

    def session(self, model_id: str, spec: GraphSpec, *, dynamic_batch: bool, threads: int = 0) -> ort.InferenceSession:
        raise TypeError("sessions live in the worker processes: call run()")

    def run(
        self,
        model_id: str,
        spec: GraphSpec,
        feeds: Mapping[str, np.ndarray],
        outputs: Sequence[str],
        *,
        dynamic_batch: bool,
        threads: int = 0,
    ) -> dict[str, np.ndarray]:
        return self.pool.run(
            model_id, self._model_folder(model_id), spec, feeds, outputs, dynamic_batch=dynamic_batch, threads=threads
        )

    def run_batched(
        self,
        model_id: str,
        spec: GraphSpec,
        feeds: Mapping[str, np.ndarray],
        outputs: Sequence[str],
        *,
        dynamic_batch: bool,
        batch_size: int,
        threads: int = 0,
        fixed: Mapping[str, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """All the runs in one exchange with one worker: each exchange costs the call's fixed
        price (copies, two process wake-ups), which a run per sample would pay per sample. A batch
        that is one run anyway takes ``run``, whose results onnxruntime writes straight into the
        shared block."""
        if len(next(iter(feeds.values()))) <= (batch_size if dynamic_batch else 1):
            return self.run(model_id, spec, {**feeds, **(fixed or {})}, outputs, dynamic_batch=dynamic_batch, threads=threads)
        return self.pool.run(
            model_id,
            self._model_folder(model_id),
            spec,
            feeds,
            outputs,
            dynamic_batch=dynamic_batch,
            threads=threads,
            batch_size=batch_size if dynamic_batch else 1,
            fixed=fixed,
        )

    def cache_bytes(self) -> int:
        return self.pool.cache_bytes()

    def session_count(self) -> int:
        return self.pool.session_count()

    def reset_failures(self, model_id: str) -> None:
        self.pool.release(model_id)

    def close(self) -> None:
        super().close()
        self.pool.close()
