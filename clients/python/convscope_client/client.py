"""The client: translates calls to gRPC and back, and nothing more."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np

from convscope_client import jobs, synthesis
from convscope_client._proto import convscope_pb2 as pb
from convscope_client._proto import convscope_pb2_grpc as pb_grpc
from convscope_client.choices import (
    PREPROCESSING_CHOICES,
    AdversarialMethod,
    AdversarialNorm,
    AttributionMethod,
    EmbeddingMethod,
    FaithfulnessMetric,
    IntegrationRule,
    InversionStart,
    OcclusionEngine,
    OcclusionFill,
    OcclusionScore,
    Rectifier,
    RectifierScope,
)
from convscope_client.errors import ConvscopeError, streaming
from convscope_client.inputs import Inputs, fill_input, fill_tensor, from_tensor, input_array
from convscope_client.jobs import Dataset, ProgressCallback
from convscope_client.protocol import MAX_MESSAGE_BYTES
from convscope_client.synthesis import StepCallback
from convscope_client.transport import Tls, auth_metadata, open_channel
from convscope_client.types import (
    Activation,
    Adversarial,
    Attribution,
    AuditCheck,
    AuditReport,
    ChannelStats,
    Correspondence,
    DeadFilterFractions,
    Embedding,
    FaithfulnessCurve,
    Filters,
    Hit,
    Inversion,
    LayerInfo,
    ModelInfo,
    Occlusion,
    ReceptiveField,
    Synthesis,
    TensorInfo,
    TopActivations,
)
from convscope_client.wire import (
    ActivationsRequestFrame,
    decode_activation,
    decode_activations_response,
    encode_activations_request,
)

# Under 1 MiB with framing, so a server whose request limit is 1 MiB still accepts uploads.
CHUNK_BYTES = (1 << 20) - 1024
SERVICE_PATH = f"/{pb.DESCRIPTOR.services_by_name['Convscope'].full_name}"
PREPROCESSING_FIELDS = ("resize", "size", "scale", "mean", "std", "layout", "channel_order", "interpolation", "grayscale")

Result = TypeVar("Result")


def _model_info(message: pb.ModelInfo) -> ModelInfo:
    def info(spec: pb.TensorInfo) -> TensorInfo:
        return TensorInfo(spec.name, spec.dtype, tuple(spec.shape))

    preprocessing = message.preprocessing
    return ModelInfo(
        id=message.id,
        name=message.name,
        inputs=tuple(info(s) for s in message.inputs),
        outputs=tuple(info(s) for s in message.outputs),
        layers=tuple(
            LayerInfo(
                l.name,
                l.op_type,
                l.tensor,
                tuple(l.shape),
                l.dtype,
                _receptive_field(l.receptive_field),
                tuple(l.symbolic_shape),
                tuple(l.dim_names),
            )
            for l in message.layers
        ),
        labels=tuple(message.labels),
        preprocessing={
            name: list(value) if not isinstance(value, (int, float, str, bool)) else value
            for name in PREPROCESSING_FIELDS
            for value in [getattr(preprocessing, name)]
        },
        dynamic_batch=message.dynamic_batch,
        size_bytes=message.size_bytes,
        layer_count=message.layer_count,
        probe_shape=tuple(message.probe_shape),
    )


def _receptive_field(message: pb.ReceptiveField) -> ReceptiveField | None:
    if not message.known:
        return None
    return ReceptiveField(
        (int(message.stride[0]), int(message.stride[1])),
        (int(message.size[0]), int(message.size[1])),
        (float(message.offset[0]), float(message.offset[1])),
        message.global_context,
    )


def _array(values: Sequence[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


class Client:
    """``with Client("localhost:50051") as client: client.activations(model_id, "cat.png")``.

    Every call takes ``timeout=`` (seconds; default: the client's) and raises
    :class:`ConvscopeError` with the status code and the server's message on failure.
    """

    def __init__(
        self,
        address: str,
        *,
        timeout: float | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        token: str | None = None,
        tls: bool | Tls | None = None,
    ) -> None:
        """``token``: sent as ``authorization: Bearer`` to servers started with ``--token-file``;
        ``tls``: ``True`` (the system's roots) or ``Tls(ca=..., cert=..., key=...)``."""
        self.address = address
        self.timeout = timeout
        self.metadata = tuple(metadata) + auth_metadata(token)
        self._channel = open_channel(
            address,
            tls,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        self._stub = pb_grpc.ConvscopeStub(self._channel)
        # The stub's Activations methods, with the tensor bytes copied once each way (see wire.py).
        self._activations = self._channel.unary_unary(
            f"{SERVICE_PATH}/Activations",
            request_serializer=encode_activations_request,
            response_deserializer=decode_activations_response,
        )
        self._stream_activations = self._channel.unary_stream(
            f"{SERVICE_PATH}/StreamActivations",
            request_serializer=encode_activations_request,
            response_deserializer=decode_activation,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _timeout(self, timeout: float | None) -> float | None:
        return timeout if timeout is not None else self.timeout

    def _call(self, method: Callable[..., Result], request: Any, timeout: float | None) -> Result:
        try:
            return method(request, timeout=self._timeout(timeout), metadata=self.metadata)
        except grpc.RpcError as error:
            raise ConvscopeError.from_rpc_error(error) from None

    # -- models

    def upload_model(
        self,
        model: str | os.PathLike[str] | bytes,
        *,
        name: str | None = None,
        preprocessing: dict[str, Any] | None = None,
        labels: Sequence[str] | None = None,
        side_files: dict[str, bytes | str | os.PathLike[str]] | None = None,
        input_shape: Sequence[int] | Mapping[str, int] | None = None,
        timeout: float | None = None,
    ) -> ModelInfo:
        """Stream a model (path or bytes) to the server in chunks.

        A path's ``<file>.data`` neighbour (what the dynamo exporter writes for external
        weights) is sent along; other side files go in ``side_files`` by the name the
        model's external-data references use.  ``input_shape`` (``[1, 3, 48, 320]``, or sizes
        by dim name: ``{"W": 320}``) fills symbolic sizes for the server's probe run; without
        it the server tries the preprocessing's size and common ones.
        """
        files: dict[str, bytes | str | os.PathLike[str]] = {"": model}
        if isinstance(model, (str, os.PathLike)):
            neighbour = Path(f"{os.fspath(model)}.data")
            if neighbour.is_file():
                files[neighbour.name] = neighbour
            name = name if name is not None else Path(model).stem
        files.update(side_files or {})
        jobs.check_local_paths([source for source in files.values() if not isinstance(source, bytes)])
        header = pb.UploadHeader(name=name or "", labels=list(labels or ()))
        if isinstance(input_shape, Mapping):
            header.input_dims.update({str(dim): int(size) for dim, size in input_shape.items()})
        elif input_shape is not None:
            header.input_shape.extend(int(size) for size in input_shape)
        if preprocessing is not None:
            unknown = set(preprocessing) - set(PREPROCESSING_FIELDS)
            if unknown:
                raise ValueError(f"unknown preprocessing field(s) {sorted(unknown)}; known: {PREPROCESSING_FIELDS}")
            chosen = {
                field: choice.parse(preprocessing[field])
                for field, choice in PREPROCESSING_CHOICES.items()
                if field in preprocessing
            }
            header.preprocessing.CopyFrom(pb.Preprocessing(**{**preprocessing, **chosen}))
            header.has_preprocessing = True

        def requests() -> Iterator[pb.UploadModelRequest]:
            yield pb.UploadModelRequest(header=header)
            for file, source in files.items():
                for chunk in _chunks(source):
                    yield pb.UploadModelRequest(chunk=pb.FileChunk(file=file, data=chunk))

        return _model_info(self._call(self._stub.UploadModel, requests(), timeout))

    def list_models(self, *, timeout: float | None = None) -> list[ModelInfo]:
        response = self._call(self._stub.ListModels, pb.ListModelsRequest(), timeout)
        return [_model_info(m) for m in response.models]

    def get_model(self, model_id: str, *, timeout: float | None = None) -> ModelInfo:
        return _model_info(self._call(self._stub.GetModel, pb.GetModelRequest(model_id=model_id), timeout))

    def delete_model(self, model_id: str, *, timeout: float | None = None) -> None:
        self._call(self._stub.DeleteModel, pb.DeleteModelRequest(model_id=model_id), timeout)

    # -- activations and filters

    def activation_details(
        self,
        model_id: str,
        inputs: Inputs,
        *,
        layers: list[str] | None = None,
        render: bool = False,
        values: bool = True,
        statistics: bool = True,
        stream: bool | None = None,
        channels: Sequence[int] = (),
        top_channels: int = 0,
        timeout: float | None = None,
    ) -> list[Activation]:
        """Activations with per-channel statistics and (``render=True``) PNG grids of the channel maps.

        The grids draw ``channels`` (default: the first 256), or the ``top_channels`` of highest
        mean activation on the first sample; each result's ``shown_channels`` says which.

        ``stream``: one message per tensor (StreamActivations) rather than one response
        (Activations), e.g. for named tensors that together exceed the server's response limit;
        None streams every layer (``layers=None``) and asks for named ones in one response.
        """
        request = pb.ActivationsRequest(
            model_id=model_id,
            layers=list(layers or ()),
            render=render,
            omit_values=not values,
            omit_statistics=not statistics,
            channels=list(channels),
            top_channels=top_channels,
        )
        array = input_array(inputs)
        if array is None:
            fill_input(request.input, inputs)
        frame = ActivationsRequestFrame(request, array)
        streamed = not layers if stream is None else stream
        if streamed:
            response = self._call(lambda *args, **kwargs: list(self._stream_activations(*args, **kwargs)), frame, timeout)
        else:
            response = self._call(self._activations, frame, timeout)
        return [
            Activation(
                tensor=a.tensor,
                value=value,
                stats=ChannelStats(_array(a.stats.mean), _array(a.stats.max), _array(a.stats.zero_fraction))
                if a.HasField("stats")
                else None,
                png=a.png,
                shown_channels=tuple(a.shown_channels),
            )
            for a, value in response
        ]

    def activations(
        self, model_id: str, inputs: Inputs, *, layers: list[str] | None = None, timeout: float | None = None
    ) -> dict[str, np.ndarray]:
        """Tensor name → array for ``layers`` (None: every tensor in the layer table, outputs included).

        ``inputs``: a numpy array fed to the model's first input exactly as given, or an image
        path / bytes / PIL image (or a list of them) preprocessed by the server.
        """
        details = self.activation_details(model_id, inputs, layers=layers, statistics=False, timeout=timeout)
        return {a.tensor: a.value for a in details if a.value is not None}

    # -- dataset jobs (see convscope_client.jobs for what a dataset can be)

    def _dataset_job(
        self,
        start: pb.DatasetJobStart,
        dataset: Dataset,
        progress: ProgressCallback | None,
        timeout: float | None,
        others: Mapping[str, np.ndarray] | None = None,
    ) -> jobs.JobEvents:
        """``others``: the model's other inputs by name, one sample's values, fed with every batch."""
        for name, value in (others or {}).items():
            fill_tensor(start.others[name], np.asarray(value))
        return jobs.run(
            self._stub.RunDatasetJob, start, dataset, progress=progress, timeout=self._timeout(timeout), metadata=self.metadata
        )

    def top_activations(
        self,
        model_id: str,
        dataset: Dataset,
        *,
        layer: str,
        channels: list[int] | None = None,
        k: int = 9,
        direction: np.ndarray | None = None,
        render: bool = True,
        others: Mapping[str, np.ndarray] | None = None,
        progress: ProgressCallback | None = None,
        timeout: float | None = None,
    ) -> TopActivations:
        """The ``k`` images of ``dataset`` that most excite each channel of ``layer`` (Girshick et
        al. 2014): a channel's score on an image is its maximum over space.

        ``channels``: which (default: all). ``direction``: a vector of one entry per channel, or
        a (D, C) array: rank by the projection onto each (unit-normalized) direction instead
        (Szegedy et al. 2013); keys are then the rows 0..D−1. Returns channel → hits, best
        first, each with ``.image`` (index in the stream, or path), ``.value``, ``.location``
        (y, x in the feature map) and ``.box`` (input pixels, clipped); ``.pngs`` holds a figure
        per channel (``render``). ``progress(Progress)`` is called as the job runs; returning
        False cancels it.
        """
        start = pb.DatasetJobStart(
            model_id=model_id,
            top_activations=pb.TopActivationsJob(layer=layer, channels=list(channels or ()), k=k, render=render),
        )
        if direction is not None:
            fill_tensor(start.top_activations.directions, np.asarray(direction, np.float32))
        events = self._dataset_job(start, dataset, progress, timeout, others)
        hits: dict[int, list[Hit]] = {}
        pngs: dict[int, bytes] = {}
        for event in events.results:
            row = event.channel_hits
            hits[row.channel] = [
                Hit(
                    jobs.image_ref(h.image),
                    float(h.value),
                    (int(h.location[0]), int(h.location[1])),
                    (int(h.box[0]), int(h.box[1]), int(h.box[2]), int(h.box[3])) if len(h.box) == 4 else None,
                )
                for h in row.hits
            ]
            if row.png:
                pngs[row.channel] = row.png
        done = events.progress.done if events.progress else 0
        return TopActivations(hits, layer=layer, pngs=pngs, skipped=events.skipped, images=done)

    def embedding(
        self,
        model_id: str,
        dataset: Dataset,
        *,
        layer: str | None = None,
        method: EmbeddingMethod | str = EmbeddingMethod.TSNE,
        perplexity: float = 30.0,
        seed: int = 0,
        render: bool = True,
        others: Mapping[str, np.ndarray] | None = None,
        progress: ProgressCallback | None = None,
        timeout: float | None = None,
    ) -> Embedding:
        """t-SNE (or ``method="pca"``) of the CNN codes of ``dataset`` (van der Maaten & Hinton 2008).

        ``layer``: default the tensor feeding the final classifier, after its nonlinearity;
        spatial codes are average-pooled. Codes go through PCA to 50 dimensions before t-SNE.
        Returns ``.coords`` (N, 2), ``.images`` (index or path per row), ``.png`` (the images
        snapped to a square grid) and ``.scatter_png``.
        """
        start = pb.DatasetJobStart(
            model_id=model_id,
            embedding=pb.EmbeddingJob(
                layer=layer or "", method=EmbeddingMethod.parse(method), perplexity=perplexity, seed=seed, render=render
            ),
        )
        events = self._dataset_job(start, dataset, progress, timeout, others)
        if not events.results:
            raise ConvscopeError(grpc.StatusCode.INTERNAL, "the server ended the embedding job without a result")
        result = events.results[-1].embedding
        return Embedding(
            coords=from_tensor(result.coords),
            images=[jobs.image_ref(ref) for ref in result.images],
            png=result.png,
            scatter_png=result.scatter_png,
            layer=result.layer,
            method=result.method,
            perplexity=result.perplexity,
            skipped=events.skipped,
        )

    def dead_filters(
        self,
        model_id: str,
        dataset: Dataset,
        *,
        layers: list[str] | None = None,
        others: Mapping[str, np.ndarray] | None = None,
        progress: ProgressCallback | None = None,
        timeout: float | None = None,
    ) -> DeadFilterFractions:
        """Layer → per channel, the fraction of the dataset's images on which the channel is zero
        everywhere (1.0: dead on every image). ``layers``: default every tensor with a channel axis.
        A list of input batches (the older form) is a dataset too."""
        start = pb.DatasetJobStart(model_id=model_id, dead_filters=pb.DeadFiltersJob(layers=list(layers or ())))
        events = self._dataset_job(start, dataset, progress, timeout, others)
        if not events.results:
            raise ConvscopeError(grpc.StatusCode.INTERNAL, "the server ended the dead-filters job without a result")
        result = events.results[-1].dead_filters
        fractions = {layer.tensor: _array(layer.zero_fraction) for layer in result.layers}
        return DeadFilterFractions(fractions, samples=int(result.samples), skipped=events.skipped)

    def filters(self, model_id: str, layer: str, *, render: bool = True, timeout: float | None = None) -> Filters:
        response = self._call(self._stub.Filters, pb.FiltersRequest(model_id=model_id, layer=layer, render=render), timeout)
        return Filters(
            node=response.node,
            weights=from_tensor(response.weights),
            png=response.png,
            smoothness=_array(response.smoothness),
            mean_smoothness=response.mean_smoothness,
        )

    # -- gradient maps

    def attribution(
        self,
        model_id: str,
        inputs: Inputs,
        *,
        method: AttributionMethod | str,
        target: int | np.ndarray | None = None,
        output: str | None = None,
        layer: str | None = None,
        wrt: str | None = None,
        steps: int = 50,
        baseline: float | np.ndarray = 0.0,
        samples: int = 25,
        noise: float = 0.15,
        seed: int = 0,
        rectifiers: RectifierScope | str = RectifierScope.ALL,
        integration: IntegrationRule | str = IntegrationRule.GAUSS_LEGENDRE,
        render: bool = True,
        metrics: Sequence[FaithfulnessMetric | str] = (),
        pixels_per_step: int = 0,
        timeout: float | None = None,
    ) -> Attribution:
        """A gradient map of ``output[target]`` (default: the first output's top entry).

        ``method``: an ``AttributionMethod`` or its value. ``rectifiers="relu"`` applies the
        guided/deconvnet rule to Relu only (Captum's convention); "all" also to ReLU6.  A float
        array ``target`` of one sample's ``output`` shape weighs its entries: the map is the
        gradient of Σ target·output (a segmentation mask, one box's entries).  ``warnings`` on
        the result say why a map is all zero.  ``inputs`` may be a dict naming every input of a
        model with several; ``wrt`` names the one to differentiate (default: the image input).
        ``metrics``: "deletion" and/or "insertion" — the map's faithfulness curves and AUC
        (Petsiuk et al.'s RISE protocol), in ``Attribution.metrics``.
        """
        method = AttributionMethod.parse(method)
        weights = target if isinstance(target, np.ndarray) and np.issubdtype(target.dtype, np.floating) else None
        entry = None if weights is not None else target
        request = pb.AttributionRequest(
            model_id=model_id,
            method=method,
            has_target=entry is not None,
            target=int(entry or 0),
            output=output or "",
            layer=layer or "",
            wrt=wrt or "",
            steps=steps,
            samples=samples,
            noise=noise,
            seed=seed,
            rectifiers=_scope_field(rectifiers),
            integration=IntegrationRule.parse(integration),
            render=render,
            metrics=[FaithfulnessMetric.parse(metric) for metric in metrics],
            pixels_per_step=pixels_per_step,
        )
        fill_input(request.input, inputs)
        fill_tensor(request.baseline, np.asarray(baseline, dtype=np.float32) if np.isscalar(baseline) else np.asarray(baseline))
        if weights is not None:
            fill_tensor(request.target_weights, weights)
        response = self._call(self._stub.Attribution, request, timeout)
        return Attribution(
            method=method,
            map=from_tensor(response.map),
            png=response.png,
            target=_single_or_list(list(response.target)),
            score=_single_or_list(list(response.score)),
            output=response.output,
            target_label=_single_or_list(list(response.target_label)),
            layer_map=from_tensor(response.layer_map) if response.HasField("layer_map") else None,
            layer=response.layer,
            warnings=tuple(response.warnings),
            map_on_image=from_tensor(response.map_on_image) if response.HasField("map_on_image") else None,
            metrics={
                curve.metric: FaithfulnessCurve(np.array(curve.fractions), from_tensor(curve.scores), np.array(curve.auc))
                for curve in response.metrics
            },
        )

    def occlusion(
        self,
        model_id: str,
        inputs: Inputs,
        *,
        target: int | list[int] | None = None,
        output: str | None = None,
        window: tuple[int, int] = (32, 32),
        stride: tuple[int, int] = (16, 16),
        fill: float | OcclusionFill | str = 0.0,
        score: OcclusionScore | str = OcclusionScore.PROBABILITY,
        progress: Callable[[int, int], None] | None = None,
        engine: OcclusionEngine | str = OcclusionEngine.AUTO,
        batch_size: int = 0,
        occluded: str | None = None,
        tolerance: float = 0.0,
        timeout: float | None = None,
    ) -> Occlusion:
        """Occlusion sensitivity of one image: slide a ``window`` box filled with ``fill`` (a
        constant in the model's input space, "mean" or "blur") over it by ``stride``.

        Returns ``.positions`` [targets, Ho, Wo], the score (``score``: "probability" or "raw")
        of each target (default: the top-1 class) with the box at each position, and
        ``.attribution``, the same quantity as Captum's ``Occlusion``. ``progress(done, total)``
        is called as positions are evaluated; if it raises (or on Ctrl-C) the call is cancelled
        and the server stops working on it.  For a model with several inputs, send ``inputs`` as
        ``{input name: array}``; ``occluded`` names the one the box slides over (default: the
        image input), the others are fed as given.
        and the server stops working on it.  ``engine="approximate"`` evaluates only part of the
        positions and interpolates the rest within ``tolerance`` (score units; 0: exact); the
        result's ``.error_bound`` is the error it allowed, ``.evaluated`` the positions it ran.
        """
        request = pb.OcclusionRequest(
            model_id=model_id,
            targets=[] if target is None else [int(t) for t in np.atleast_1d(target)],
            output=output or "",
            window=list(window),
            stride=list(stride),
            score=OcclusionScore.parse(score),
            engine=OcclusionEngine.parse(engine),
            batch_size=batch_size,
            occluded=occluded or "",
            tolerance=tolerance,
        )
        fill_input(request.input, inputs)
        if isinstance(fill, str):
            request.fill_mode = OcclusionFill.parse(fill)
        else:
            request.fill_value = float(fill)
        result: pb.OcclusionResult | None = None
        with streaming(self._stub.Occlusion(request, timeout=self._timeout(timeout), metadata=self.metadata)) as call:
            for event in call:
                if event.HasField("progress"):
                    if progress is not None:
                        progress(event.progress.done, event.progress.total)
                else:
                    result = event.result
        if result is None:
            raise ConvscopeError(grpc.StatusCode.INTERNAL, "the server ended the occlusion stream without a result")

        def shaped(values: list[Any]) -> Any:
            return values if isinstance(target, (list, tuple, np.ndarray)) else values[0]

        return Occlusion(
            positions=from_tensor(result.positions),
            attribution=from_tensor(result.attribution),
            png=result.png,
            target=shaped([int(t) for t in result.targets]),
            baseline_score=shaped([float(v) for v in result.baseline_scores]),
            output=result.output,
            target_label=shaped(list(result.target_labels)),
            engine=result.engine,
            window=(int(result.window[0]), int(result.window[1])),
            stride=(int(result.stride[0]), int(result.stride[1])),
            error_bound=float(result.error_bound),
            evaluated=int(result.evaluated_positions),
        )

    def export_backward(
        self,
        model_id: str,
        *,
        seeds: Sequence[str] = (),
        wrt: Sequence[str] = (),
        rectifier: Rectifier | str = Rectifier.PLAIN,
        rectifiers: RectifierScope | str = RectifierScope.ALL,
        timeout: float | None = None,
    ) -> bytes:
        """The forward+backward ONNX model, runnable with plain onnxruntime: feed the input and
        ``<seed>__seed`` gradients, read ``<input>__grad`` (and ``<wrt>__grad``)."""
        request = pb.ExportBackwardRequest(
            model_id=model_id,
            seeds=list(seeds),
            wrt=list(wrt),
            rectifier=Rectifier.parse(rectifier),
            rectifiers=_scope_field(rectifiers),
        )
        return self._call(
            lambda *args, **kwargs: b"".join(c.data for c in self._stub.ExportBackward(*args, **kwargs)), request, timeout
        )

    # -- images made by gradients: optimization loops on the server, progress per step

    def _optimization(self, method: Any, request: Any, progress: StepCallback | None, timeout: float | None, what: str) -> Any:
        call = method(request, timeout=self._timeout(timeout), metadata=self.metadata)
        return synthesis.final_result(call, progress, what)

    def invert(
        self,
        model_id: str,
        image: Inputs,
        *,
        layer: str,
        steps: int = 200,
        lr: float | None = None,
        tv_weight: float | None = None,
        norm_weight: float | None = None,
        jitter: int = 0,
        init: InversionStart | str = InversionStart.NOISE,
        seed: int = 0,
        progress: StepCallback | None = None,
        timeout: float | None = None,
    ) -> Inversion:
        """An image whose code at ``layer`` (any tensor of the layer table) matches ``image``'s:
        ‖Φ(x) − Φ₀‖²/‖Φ₀‖² plus the α-norm (``norm_weight``) and TV (``tv_weight``) regularizers
        of Mahendran & Vedaldi 2015, minimized in pixel space. ``progress(step, steps, loss)``."""
        request = pb.InvertRequest(
            model_id=model_id, layer=layer, steps=steps, jitter=jitter, init=InversionStart.parse(init), seed=seed
        )
        for name, value in (("lr", lr), ("tv_weight", tv_weight), ("norm_weight", norm_weight)):
            if value is not None:
                setattr(request, name, value)
        fill_input(request.input, image)
        return synthesis.inversion(self._optimization(self._stub.Invert, request, progress, timeout, "inversion"))

    def visualize(
        self,
        model_id: str,
        *,
        target: int | Sequence[int] | None = None,
        layer: str | None = None,
        channel: int | None = None,
        steps: int = 200,
        lr: float | None = None,
        l2: float | None = None,
        blur_every: int | None = None,
        blur_sigma: float | None = None,
        jitter: int | None = None,
        norm_percentile: float | None = None,
        seed: int = 0,
        batch: int = 1,
        progress: StepCallback | None = None,
        timeout: float | None = None,
    ) -> Synthesis:
        """A class model (the score of ``target`` before softmax; several targets: one image
        each) or, with ``layer`` and ``channel``, a unit's mean activation, maximized by gradient
        ascent with Yosinski et al.'s regularizers (``norm_percentile``: each step, the pixels of
        smallest norm go grey). ``batch``: random starts per target."""
        request = pb.VisualizeRequest(
            model_id=model_id,
            targets=[] if target is None else [int(t) for t in np.atleast_1d(target)],
            layer=layer or "",
            steps=steps,
            seed=seed,
            batch=batch,
        )
        options = {
            "channel": channel,
            "lr": lr,
            "l2": l2,
            "blur_every": blur_every,
            "blur_sigma": blur_sigma,
            "jitter": jitter,
            "norm_percentile": norm_percentile,
        }
        for name, value in options.items():
            if value is not None:
                setattr(request, name, value)
        return synthesis.synthesis(self._optimization(self._stub.Visualize, request, progress, timeout, "visualization"))

    def adversarial(
        self,
        model_id: str,
        image: Inputs,
        *,
        method: AdversarialMethod | str = AdversarialMethod.FGSM,
        epsilon: float = 2 / 255,
        step_size: float | None = None,
        steps: int = 10,
        target: int | None = None,
        norm: AdversarialNorm | str = AdversarialNorm.LINF,
        random_start: bool = False,
        seed: int = 0,
        bounds: tuple[float, float] | None = None,
        progress: StepCallback | None = None,
        timeout: float | None = None,
    ) -> Adversarial:
        """An adversarial example: FGSM (one step) or PGD (``steps`` projected steps, L∞ or L2).
        For images ε is in [0, 1] pixel units; for arrays in input units, clipped to ``bounds``.
        Untargeted: away from the top class; ``target``: towards that class."""
        request = pb.AdversarialRequest(
            model_id=model_id,
            method=AdversarialMethod.parse(method),
            epsilon=epsilon,
            steps=steps,
            norm=AdversarialNorm.parse(norm),
            random_start=random_start,
            seed=seed,
            bounds=list(bounds or ()),
        )
        if step_size is not None:
            request.step_size = step_size
        if target is not None:
            request.target = target
        fill_input(request.input, image)
        return synthesis.adversarial(self._optimization(self._stub.Adversarial, request, progress, timeout, "adversarial attack"))

    def correspondence(
        self,
        model_id: str,
        image_a: Any,
        image_b: Any,
        *,
        layer: str | Sequence[str],
        points: np.ndarray | None = None,
        hypercolumn: bool = False,
        reflections: bool = True,
        timeout: float | None = None,
    ) -> Correspondence:
        """For ``points`` of image A ([N, 2] (y, x) pixels; default: a grid over what the model
        sees), the best match in image B: the cosine nearest neighbour of ``layer``'s feature
        vectors, or with ``hypercolumn`` of several layers' vectors concatenated.  With
        ``reflections`` B mirrored left-right is searched too (features are not mirror-invariant),
        its matches mapped back to B's pixels and flagged in ``.mirrored``."""
        layers = [layer] if isinstance(layer, str) else list(layer)
        request = pb.CorrespondenceRequest(model_id=model_id, layers=layers, hypercolumn=hypercolumn, reflections=reflections)
        if isinstance(image_a, np.ndarray) and isinstance(image_b, np.ndarray):
            fill_input(
                request.input,
                np.concatenate([image_a.reshape(-1, *image_a.shape[-3:]), image_b.reshape(-1, *image_b.shape[-3:])]),
            )
        else:
            fill_input(request.input, [image_a, image_b])
        if points is not None:
            fill_tensor(request.points, np.asarray(points, np.float32))
        response = self._call(self._stub.Correspondence, request, timeout)
        return Correspondence(
            points=from_tensor(response.points),
            matches=from_tensor(response.matches),
            similarity=np.asarray(response.similarity, np.float32),
            png=response.png,
            layers=list(response.layers),
            mirrored=np.asarray(response.mirrored, bool),
        )

    # -- audit

    def audit(
        self,
        model_id: str,
        data: str,
        *,
        labels: str = "",
        human: str = "",
        config_toml: str = "",
        progress: ProgressCallback | None = None,
        on_check: Callable[[AuditCheck], None] | None = None,
        timeout: float | None = None,
    ) -> AuditReport:
        """Audit a model on a labelled dataset under one of the server's data roots (``data``: a
        folder of class sub-folders or a CSV; ``labels``/``human``: CSVs there too). ``progress``
        follows the shared pass, ``on_check`` each finished check; Ctrl-C cancels the audit."""
        request = pb.AuditRequest(model_id=model_id, data=data, labels=labels, human=human, config_toml=config_toml)
        checks: list[AuditCheck] = []
        with streaming(self._stub.Audit(request, timeout=self._timeout(timeout), metadata=self.metadata)) as call:
            for event in call:
                kind = event.WhichOneof("event")
                if kind == "progress" and progress is not None:
                    progress(jobs.progress_of(event.progress))
                elif kind == "check":
                    checks.append(AuditCheck(event.check.name, event.check.status, event.check.message, event.check.seconds))
                    if on_check is not None:
                        on_check(checks[-1])
                elif kind == "report":
                    report = event.report
                    files = {"report.json": report.report_json, "junit.xml": report.junit_xml, "report.html": report.report_html}
                    return AuditReport(report.passed, report.errored, checks, files)
        raise ConvscopeError(grpc.StatusCode.INTERNAL, "the server ended the audit stream without a report")


def _scope_field(scope: RectifierScope | str) -> pb.Rectifiers:
    """The one choice the protocol carries as an enum of its own rather than as a string."""
    return pb.RECTIFIERS_RELU if RectifierScope.parse(scope) is RectifierScope.RELU else pb.RECTIFIERS_ALL


def _single_or_list(values: list[Result]) -> Result | list[Result]:
    return values[0] if len(values) == 1 else values


def _chunks(source: bytes | str | os.PathLike[str]) -> Iterator[bytes]:
    if isinstance(source, bytes):
        for start in range(0, max(1, len(source)), CHUNK_BYTES):
            yield source[start : start + CHUNK_BYTES]
        return
    with open(source, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk
