"""The client: translates calls to gRPC and back, and nothing more."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np

from convscope_client._proto import convscope_pb2 as pb
from convscope_client._proto import convscope_pb2_grpc as pb_grpc
from convscope_client.errors import ConvscopeError
from convscope_client.inputs import Inputs, from_tensor, to_input
from convscope_client.types import (
    Activation,
    ChannelStats,
    DeadFilters,
    Filters,
    LayerInfo,
    ModelInfo,
    TensorInfo,
)

CHUNK_BYTES = 1 << 20
MAX_MESSAGE_BYTES = 2**31 - 1
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
        layers=tuple(LayerInfo(l.name, l.op_type, l.tensor, tuple(l.shape), l.dtype) for l in message.layers),
        labels=tuple(message.labels),
        preprocessing={
            name: list(value) if not isinstance(value, (int, float, str, bool)) else value
            for name in PREPROCESSING_FIELDS
            for value in [getattr(preprocessing, name)]
        },
        dynamic_batch=message.dynamic_batch,
        size_bytes=message.size_bytes,
    )


def _array(values: Sequence[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


class Client:
    """``with Client("localhost:50051") as client: client.activations(model_id, "cat.png")``.

    Every call takes ``timeout=`` (seconds; default: the client's) and raises
    :class:`ConvscopeError` with the status code and the server's message on failure.
    """

    def __init__(self, address: str, *, timeout: float | None = None, metadata: Sequence[tuple[str, str]] = ()) -> None:
        self.address = address
        self.timeout = timeout
        self.metadata = tuple(metadata)
        self._channel = grpc.insecure_channel(
            address,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        self._stub = pb_grpc.ConvscopeStub(self._channel)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: Callable[..., Result], request: Any, timeout: float | None) -> Result:
        try:
            return method(request, timeout=timeout if timeout is not None else self.timeout, metadata=self.metadata)
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
        timeout: float | None = None,
    ) -> ModelInfo:
        """Stream a model (path or bytes) to the server in chunks.

        A path's ``<file>.data`` neighbour (what the dynamo exporter writes for external
        weights) is sent along; other side files go in ``side_files`` by the name the
        model's external-data references use.
        """
        files: dict[str, bytes | str | os.PathLike[str]] = {"": model}
        if isinstance(model, (str, os.PathLike)):
            neighbour = Path(f"{os.fspath(model)}.data")
            if neighbour.is_file():
                files[neighbour.name] = neighbour
            name = name if name is not None else Path(model).stem
        files.update(side_files or {})
        header = pb.UploadHeader(name=name or "", labels=list(labels or ()))
        if preprocessing is not None:
            unknown = set(preprocessing) - set(PREPROCESSING_FIELDS)
            if unknown:
                raise ValueError(f"unknown preprocessing field(s) {sorted(unknown)}; known: {PREPROCESSING_FIELDS}")
            header.preprocessing.CopyFrom(pb.Preprocessing(**preprocessing))
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
        timeout: float | None = None,
    ) -> list[Activation]:
        """Activations with per-channel statistics and (``render=True``) PNG grids of the channel maps."""
        request = pb.ActivationsRequest(
            model_id=model_id, input=to_input(inputs), layers=list(layers or ()), render=render, omit_values=not values
        )
        response = self._call(self._stub.Activations, request, timeout)
        return [
            Activation(
                tensor=a.tensor,
                value=from_tensor(a.value) if a.HasField("value") else None,
                stats=ChannelStats(_array(a.stats.mean), _array(a.stats.max), _array(a.stats.zero_fraction)),
                png=a.png,
            )
            for a in response.activations
        ]

    def activations(
        self, model_id: str, inputs: Inputs, *, layers: list[str] | None = None, timeout: float | None = None
    ) -> dict[str, np.ndarray]:
        """Tensor name → array for ``layers`` (None: every tensor in the layer table, outputs included).

        ``inputs``: a numpy array fed to the model's first input exactly as given, or an image
        path / bytes / PIL image (or a list of them) preprocessed by the server.
        """
        details = self.activation_details(model_id, inputs, layers=layers, timeout=timeout)
        return {a.tensor: a.value for a in details if a.value is not None}

    def dead_filters(
        self,
        model_id: str,
        batches: Sequence[Inputs],
        *,
        layers: list[str] | None = None,
        threshold: float = 1.0,
        timeout: float | None = None,
    ) -> dict[str, DeadFilters]:
        """Per layer and channel, the share of inputs on which the channel is zero everywhere."""
        request = pb.DeadFiltersRequest(
            model_id=model_id, inputs=[to_input(b) for b in batches], layers=list(layers or ()), threshold=threshold
        )
        response = self._call(self._stub.DeadFilters, request, timeout)
        return {l.tensor: DeadFilters(l.tensor, _array(l.zero_fraction), tuple(l.dead)) for l in response.layers}

    def filters(self, model_id: str, layer: str, *, render: bool = True, timeout: float | None = None) -> Filters:
        response = self._call(self._stub.Filters, pb.FiltersRequest(model_id=model_id, layer=layer, render=render), timeout)
        return Filters(
            node=response.node,
            weights=from_tensor(response.weights),
            png=response.png,
            smoothness=_array(response.smoothness),
            mean_smoothness=response.mean_smoothness,
        )


def _chunks(source: bytes | str | os.PathLike[str]) -> Iterator[bytes]:
    if isinstance(source, bytes):
        for start in range(0, max(1, len(source)), CHUNK_BYTES):
            yield source[start : start + CHUNK_BYTES]
        return
    with open(source, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk
