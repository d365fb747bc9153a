"""The transport-agnostic data plane: what the gRPC servicer, the CLI and tests call."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx

from convscope.data.prefetch import Prefetcher
from convscope.data.streams import DataRoots, Decoder, Item, PathItem, samples_in
from convscope.errors import InvalidArgument
from convscope.limits import RequestLimits, check_at_most
from convscope.methods import activations as activation_methods
from convscope.methods import attribution as attribution_methods
from convscope.methods import correspondence as correspondence_methods
from convscope.methods import dataset_jobs, synthesis
from convscope.methods import faithfulness as faithfulness_methods
from convscope.methods import filters as filter_methods
from convscope.methods import occlusion as occlusion_methods
from convscope.methods.ray_data_jobs import FolderJob, probe_first_shape, run_folder_job
from convscope.methods.ray_jobs import RayEngine, import_ray
from convscope.model.preprocessing import ModelInput, allow_pixels, constant_others, from_images, input_from_tensor, with_others
from convscope.model.store import DEFAULT_MAX_UPLOAD_BYTES, ModelStore, Upload
from convscope.model.types import ModelRecord, Preprocessing
from convscope.render import attribution_figure
from convscope.render.dataset_figures import with_dataset_figures
from convscope.render.montage import encode_png_fast
from convscope.render.results import with_channel_grid, with_filter_grid, with_occlusion_figure
from convscope.runtime.context import MethodContext
from convscope.runtime.graphs import BackwardGraph, graph_for
from convscope.runtime.ingest import InputShape
from convscope.runtime.providers import one_blas_thread
from convscope.runtime.sessions import DEFAULT_SESSION_BUDGET_BYTES, Runtime
from convscope.runtime.shaped import ShapedRecords
from convscope.workers.pool import SandboxSettings, WorkerPool
from convscope.workers.runtime import SandboxedRuntime
from convscope_client.choices import Rectifier, RectifierScope

log = logging.getLogger(__name__)


class Convscope:
    """The data plane: the model store, the onnxruntime runtime and the method context, behind
    one method per technique. Each resolves the model, runs the method on arrays and adds the
    picture asked for (``render/results.py``); it knows nothing of gRPC, so the servicer, the
    CLI, the audit and the tests all call it alike."""

    def __init__(
        self,
        store_dir: Path,
        *,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
        session_budget_bytes: int = DEFAULT_SESSION_BUDGET_BYTES,
        data_roots: Sequence[Path] = (),
        providers: Sequence[str] | None = None,
        limits: RequestLimits = RequestLimits(),
        ray_address: str | None = None,
        ray_workers: int = 0,
        sandbox: SandboxSettings | None = None,
    ) -> None:
        """``providers``: onnxruntime execution providers in preference order (default: CUDA when
        it really loads, then CPU); ``limits``: how much work one request may ask for;
        ``ray_address``: run dataset jobs on that Ray cluster by default ("auto", "ray://host:port"),
        on ``ray_workers`` actors (0: one per CPU of the cluster); ``sandbox``: validate, load and run
        models in worker processes (None: in this process, for embedded uses)."""
        self.limits = limits
        allow_pixels(limits.max_image_pixels)
        one_blas_thread()
        self.ray_address = ray_address
        self.ray_workers = ray_workers
        self.data_roots = DataRoots(data_roots)
        self.store = ModelStore(store_dir, max_upload_bytes=max_upload_bytes)
        if sandbox is not None and sandbox.workers > 0:
            pool = WorkerPool(sandbox, session_budget_bytes=session_budget_bytes, providers=providers)
            self.runtime: Runtime = SandboxedRuntime(self.store.load, self.store.folder, pool)
        else:
            self.runtime = Runtime(self.store.load, budget_bytes=session_budget_bytes, providers=providers)
        self.context = MethodContext(self.runtime, limits=limits)
        self.shaped = ShapedRecords(self.runtime)

    def close(self) -> None:
        self.runtime.close()
        self.store.close()

    # -- models

    def upload(
        self,
        chunks: Iterable[tuple[str, bytes]],
        *,
        name: str = "",
        preprocessing: Preprocessing | None = None,
        labels: Sequence[str] = (),
        input_shape: InputShape | None = None,
    ) -> ModelRecord:
        """Store a model from (file, data) chunks; file "" is the model, others its side files.
        ``input_shape`` fills the model's symbolic sizes for the probe run (see describe_upload)."""
        upload: Upload = self.store.begin_upload()
        try:
            for file, data in chunks:
                upload.write(file, data)
        except BaseException:
            self.store.abort(upload)
            raise
        record = self.store.commit(
            upload,
            lambda model_id, done: self.runtime.describe_upload(
                model_id,
                done,
                name=name,
                preprocessing=preprocessing,
                labels=labels,
                input_shape=input_shape,
                max_nodes=self.limits.max_nodes,
            ),
        )
        self.runtime.reset_failures(record.id)
        # The same bytes uploaded again with other metadata: the newer description wins.
        changes = {
            key: value
            for key, value in (("name", name), ("preprocessing", preprocessing), ("labels", tuple(labels)))
            if value and value != getattr(record, key)
        }
        return self.store.update(record, **changes) if changes else record

    def model(self, model_id: str) -> ModelRecord:
        return self.store.get(model_id)

    def model_at(self, model_id: str, model_input: ModelInput) -> ModelRecord:
        """The record with its layer table at the input's shape (a model with symbolic sizes
        takes other sizes than the one it was probed at)."""
        return self.shaped.at(self.model(model_id), model_input.batch.shape, model_input.others)

    def models(self) -> list[ModelRecord]:
        return self.store.list()

    def delete(self, model_id: str) -> None:
        model_id = self.store.get(model_id).id  # a prefix names it too
        self.store.delete(model_id)
        self.runtime.forget(model_id)
        self.shaped.forget(model_id)

    # -- inputs

    def prepare(
        self,
        record: ModelRecord,
        *,
        tensor: np.ndarray | None = None,
        images: Sequence[bytes] = (),
        others: Mapping[str, np.ndarray] | None = None,
    ) -> ModelInput:
        """The image input from a tensor or images, and the model's ``others`` inputs by name."""
        if tensor is not None:
            model_input = input_from_tensor(record, tensor)
        elif images:
            model_input = from_images(record, images, max_pixels=self.limits.max_image_pixels)
        else:
            raise InvalidArgument("send an input: a raw tensor or at least one encoded image")
        check_at_most(len(model_input.batch), self.limits.max_batch, "samples in one request", "--max-batch", "split the batch")
        return with_others(record, model_input, others or {})

    # -- methods

    def activations(
        self,
        model_id: str,
        model_input: ModelInput,
        layers: Sequence[str] | None,
        *,
        render: bool = False,
        statistics: bool = True,
        channels: Sequence[int] = (),
        top_channels: int = 0,
    ) -> list[activation_methods.ActivationResult]:
        record = self.model_at(model_id, model_input)
        results = activation_methods.activations(
            self.context, record, model_input.batch, layers, statistics=statistics, others=model_input.others
        )
        return [with_channel_grid(result, channels, top_channels) for result in results] if render else results

    def dead_filters(
        self, model_id: str, inputs: Sequence[ModelInput], layers: Sequence[str] | None, *, threshold: float = 1.0
    ) -> activation_methods.DeadFiltersResult:
        record = self.model_at(model_id, inputs[0]) if inputs else self.model(model_id)
        return activation_methods.dead_filters(self.context, record, inputs, layers, threshold=threshold)

    def dataset_job(
        self,
        model_id: str,
        job: dataset_jobs.DatasetJob,
        *,
        folder: str = "",
        items: Iterable[Item] | None = None,
        expected: int | None = None,
        cancelled: threading.Event | None = None,
        others: Mapping[str, np.ndarray] | None = None,
        engine: str = "",
    ) -> Iterator[dataset_jobs.JobEvent]:
        """Run a dataset job over a folder under a data root, or over streamed ``items``; yields
        progress, skipped items and, last, the result. Decoding runs ahead in a thread pool.
        ``others``: the model's other inputs by name, one sample's values, fed with every batch.
        ``engine``: "local" (onnxruntime here) or "ray" (Ray actors; methods/ray_jobs.py);
        default "ray" when the server was given a Ray address, else "local"."""
        engine = engine or ("ray" if self.ray_address else "local")
        if engine not in ("local", "ray"):
            raise InvalidArgument(f"engine must be 'local' or 'ray', not {engine!r}")
        record = self.model(model_id)
        constants = constant_others(record, others or {})
        base = self.runtime.base_graph(record.id, dynamic_batch=record.dynamic_batch)
        accumulator = dataset_jobs.accumulator_for(job, record, base)
        if folder:
            if items is not None:
                raise InvalidArgument("name a folder or stream the images, not both")
            expected, items = self.data_roots.folder(folder, self.limits.max_dataset_files)
        elif items is None:
            raise InvalidArgument("a dataset job needs images: a folder under a data root, or items in the stream")
        decoder = Decoder(
            record,
            self.data_roots,
            pictures=accumulator.needs_pictures,
            max_pixels=self.limits.max_image_pixels,
            max_bytes=self.limits.max_dataset_bytes,
        )
        if engine == "ray" and folder:
            yield from with_dataset_figures(
                self._ray_data_job(record, base, accumulator, decoder, list(items), constants, cancelled)
            )  # type: ignore[arg-type]  # a folder walk yields PathItems
            return
        runner = self._ray_engine(record, base, accumulator) if engine == "ray" else None
        stream = Prefetcher(items, decoder, count=lambda item: samples_in(item, record), cancelled=cancelled)
        try:
            yield from with_dataset_figures(
                dataset_jobs.run_job(
                    self.context,
                    record,
                    accumulator,
                    stream,
                    total=expected,
                    cancelled=cancelled,
                    others=constants,
                    engine=runner,
                    batch_size=dataset_jobs.JOB_BATCH if record.dynamic_batch else 1,
                )
            )
        finally:
            stream.close()
            if runner is not None:
                runner.close()

    def _ray_engine(self, record: ModelRecord, base: onnx.ModelProto, accumulator: dataset_jobs.Accumulator) -> RayEngine:
        """Ray actors holding the graph that exposes the job's tensors (streamed items: the server decodes)."""
        graph, workers = self._ray_job_graph(record, base, accumulator)
        return RayEngine(graph, record.input.name, accumulator.tensors, accumulator.reduce, workers=workers)

    def _ray_data_job(
        self,
        record: ModelRecord,
        base: onnx.ModelProto,
        accumulator: dataset_jobs.Accumulator,
        decoder: Decoder,
        items: list[PathItem],
        others: Mapping[str, np.ndarray] | None,
        cancelled: threading.Event | None,
    ) -> Iterator[dataset_jobs.JobEvent]:
        """A folder job on Ray Data: the cluster reads, decodes and infers the checked file list."""
        graph, workers = self._ray_job_graph(record, base, accumulator)
        job = FolderJob(
            record,
            self.data_roots,
            graph,
            accumulator.tensors,
            accumulator.reduce,
            pictures=accumulator.needs_pictures,
            max_pixels=self.limits.max_image_pixels,
            max_bytes=self.limits.max_dataset_bytes,
            first_shape=probe_first_shape(decoder, items),
            others=others,
        )
        batch_size = dataset_jobs.job_batch_size(self.context, record, accumulator.tensors) if record.dynamic_batch else 1
        return run_folder_job(job, accumulator, items, batch_size=batch_size, workers=workers, cancelled=cancelled)

    def _ray_job_graph(
        self, record: ModelRecord, base: onnx.ModelProto, accumulator: dataset_jobs.Accumulator
    ) -> tuple[bytes, int]:
        """The graph exposing the job's tensors, serialized, and how many actors run it (in the
        Ray this process is connected to, else the one ``ray_address`` names)."""
        graph = graph_for(set(accumulator.tensors), {output.name for output in record.outputs}).build(base)
        ray = import_ray()
        if not ray.is_initialized():
            ray.init(address=self.ray_address, include_dashboard=False, log_to_driver=False)
        workers = self.ray_workers or int(ray.cluster_resources().get("CPU", 1))
        return graph.SerializeToString(), workers

    def filters(self, model_id: str, layer: str, *, render: bool = True) -> filter_methods.FiltersResult:
        record = self.model(model_id)
        base = self.runtime.base_graph(record.id, dynamic_batch=record.dynamic_batch)
        result = filter_methods.filters(base, layer)
        return with_filter_grid(result) if render else result

    def occlusion(
        self, model_id: str, model_input: ModelInput, options: occlusion_methods.OcclusionOptions
    ) -> Iterator[occlusion_methods.OcclusionProgress | occlusion_methods.OcclusionResult]:
        """Occlusion sensitivity as a lazy stream: progress events, then the result.  Work happens
        only while the caller pulls; to cancel, stop pulling and close the iterator.  The model's
        other inputs (``model_input.others``) are fed as given with every occluded copy."""
        record = self.model_at(model_id, model_input)
        return with_occlusion_figure(occlusion_methods.occlusion(self.context, record, model_input, options))

    def attribution(
        self,
        model_id: str,
        model_input: ModelInput,
        method: attribution_methods.AttributionMethod | str,
        options: attribution_methods.AttributionOptions,
        *,
        render: bool = True,
    ) -> tuple[attribution_methods.AttributionResult, bytes]:
        """A gradient map, and (``render``) a PNG of the first sample's map over its image.  For
        images the first sample's map is also projected onto the image as sent
        (``map_on_image``), which the PNG then shows whole."""
        record = self.model_at(model_id, model_input)
        if model_input.others:
            options = dataclasses.replace(options, others=model_input.others)
        result = attribution_methods.attribution(self.context, record, model_input.batch, method, options)
        values = result.map[0]
        if values.ndim == 3:  # input-shaped: channels last, in RGB order
            values = np.moveaxis(values, 0, -1) if attribution_methods.channel_axis(record) == 1 else values
            values = values[..., ::-1] if record.preprocessing.channel_order == "BGR" else values
        elif values.ndim != 2:  # the map of a non-image input (wrt): drawn as one row
            values = values.reshape(1, -1)
        # Only a map of the image itself can be laid back onto the photo it was cut from.
        on_photo = bool(model_input.originals) and values.shape[:2] == model_input.pictures[0].shape[:2]
        if on_photo:
            strongest = np.abs(values).max(axis=-1) if values.ndim == 3 else values
            result = dataclasses.replace(result, map_on_image=model_input.placements[0].project(strongest))
        png = b""
        if render:
            picture = model_input.originals[0] if on_photo else None
            # The fast encoder: the whole photo has several times the crop's pixels, and Pillow's
            # filter search made its PNG the largest cost of a warm Grad-CAM request.
            png = encode_png_fast(
                attribution_figure(method, values, picture, projected=result.map_on_image if on_photo else None)
            )
        return result, png

    def faithfulness(
        self,
        model_id: str,
        model_input: ModelInput,
        result: attribution_methods.AttributionResult,
        metrics: Sequence[str],
        *,
        pixels_per_step: int = 0,
    ) -> list[faithfulness_methods.Curves]:
        """Deletion/insertion curves of an attribution's map for the targets it explained."""
        record = self.model(model_id)
        targets = [int(t) for t in result.score.targets]
        return faithfulness_methods.curves(
            self.context, record, model_input.batch, result.map, targets, metrics, pixels_per_step=pixels_per_step
        )

    def export_backward(
        self,
        model_id: str,
        *,
        seeds: Sequence[str],
        wrt: Sequence[str] = (),
        rectifier: Rectifier | str = Rectifier.PLAIN,
        rectifiers: RectifierScope | str = RectifierScope.ALL,
    ) -> bytes:
        """The forward+backward graph as a standalone ONNX model (inputs: the model input and one
        ``<tensor>__seed`` per seed; outputs: ``<tensor>__grad`` for the input and each ``wrt``)."""
        record = self.model(model_id)
        seeds = tuple(map(record.tensor, seeds)) or (record.outputs[0].name,)
        wrt = tuple(map(record.tensor, wrt))
        spec = BackwardGraph(seeds, wrt=wrt, keep=seeds, rectifier=rectifier, rectifiers=rectifiers)
        return spec.build(self.runtime.base_graph(record.id, dynamic_batch=record.dynamic_batch)).SerializeToString()

    # -- images made by gradients (optimization loops: progress events, then the result)

    def adversarial(
        self, model_id: str, model_input: ModelInput, options: synthesis.AdversarialOptions
    ) -> Iterator[synthesis.StepProgress | synthesis.AdversarialResult]:
        return synthesis.adversarial(self.context, self.model(model_id), model_input, options, max_steps=self.limits.max_steps)

    def invert(
        self, model_id: str, model_input: ModelInput, options: synthesis.InversionOptions
    ) -> Iterator[synthesis.StepProgress | synthesis.InversionResult]:
        return synthesis.invert(self.context, self.model(model_id), model_input, options, max_steps=self.limits.max_steps)

    def visualize(
        self, model_id: str, options: synthesis.VisualizationOptions
    ) -> Iterator[synthesis.StepProgress | synthesis.VisualizationResult]:
        return synthesis.visualize(self.context, self.model(model_id), options, max_steps=self.limits.max_steps)

    def correspondence(
        self,
        model_id: str,
        images: Sequence[bytes] = (),
        *,
        arrays: np.ndarray | None = None,
        layers: Sequence[str],
        points: np.ndarray | None = None,
        reflections: bool = True,
    ) -> correspondence_methods.CorrespondenceResult:
        """Matches in image B (and, with ``reflections``, in B mirrored left-right) for points of
        image A: two encoded images, or an array batch of two."""
        record = self.model(model_id)
        model_input = self.prepare(record, tensor=arrays, images=images)
        sources: Sequence[bytes | None] = images if arrays is None else (None, None)
        return correspondence_methods.correspondence(self.context, record, model_input, sources, layers, points, reflections)
