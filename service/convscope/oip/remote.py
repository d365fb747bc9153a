"""Models served elsewhere, explained as black boxes over the Open Inference Protocol.

``RemoteModel`` talks to any server that speaks the protocol's gRPC API (Triton, KServe,
MLServer, Seldon, or convscope itself) with the stubs generated from the vendored
``protos/inference/open_inference_grpc.proto``: the model's metadata once, then a ``ModelInfer``
per batch. Nothing is uploaded; only the inputs travel. ``remote_occlusion`` runs the occlusion
method (``methods/occlusion.py``, its batched engine) with every occluded batch inferred there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import grpc
import numpy as np

from convscope.errors import InvalidArgument, RemoteFailed, Unimplemented
from convscope.methods import occlusion as occlusion_methods
from convscope.model.preprocessing import ModelInput
from convscope.model.types import LayerInfo, ModelRecord, Preprocessing, TensorSpec
from convscope.oip.tensors import DATATYPES, datatype_of, from_raw, to_raw
from convscope.render.results import with_occlusion_figure
from convscope_client._proto import open_inference_grpc_pb2 as oip
from convscope_client._proto import open_inference_grpc_pb2_grpc as oip_grpc
from convscope_client.protocol import MAX_MESSAGE_BYTES

DEFAULT_TIMEOUT_SECONDS = 120.0
# Images per ModelInfer when a caller hands over more (the audit's corruptions: up to 1000 at once):
# servers cap a request's batch and size, and convscope's own jobs batch this many.
REQUEST_BATCH = 32


def _target(url: str) -> str:
    """host:port from a URL as users write it (grpc://host:port, host:port)."""
    for scheme in ("grpc://", "grpcs://", "http://"):
        if url.startswith(scheme):
            url = url[len(scheme) :]
    url = url.rstrip("/")
    if not url or "/" in url:
        raise InvalidArgument(f"{url!r} is not a gRPC endpoint: give host:port (or grpc://host:port)")
    return url


def _spec(tensor: oip.ModelMetadataResponse.TensorMetadata) -> TensorSpec:
    if tensor.datatype not in DATATYPES:
        raise InvalidArgument(f"the remote model's tensor {tensor.name!r} is {tensor.datatype}, which convscope cannot feed")
    return TensorSpec(tensor.name, DATATYPES[tensor.datatype], tuple(int(d) for d in tensor.shape))


class RemoteModel:
    """One model on a remote Open Inference Protocol server (gRPC)."""

    def __init__(
        self, url: str, model: str, *, version: str = "", timeout: float = DEFAULT_TIMEOUT_SECONDS, token: str | None = None
    ) -> None:
        """``token``: sent as ``authorization: Bearer TOKEN`` (a convscope server with
        --token-file, or a Triton/KServe deployment behind a bearer-token gateway)."""
        self.url = url
        self.model = model
        self.version = version
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        self._channel = grpc.insecure_channel(
            _target(url),
            options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES), ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)],
        )
        self._stub = oip_grpc.GRPCInferenceServiceStub(self._channel)
        self.metadata = self._call(self._stub.ModelMetadata, oip.ModelMetadataRequest(name=model, version=version or None))
        if not self.metadata.inputs or not self.metadata.outputs:
            raise InvalidArgument(f"the remote model {model!r} declares no inputs or no outputs in its metadata")

    def __enter__(self) -> RemoteModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
            details = error.details() if isinstance(error, grpc.Call) else str(error)
            raise RemoteFailed(
                code, f"the inference server at {self.url} ({self.model}) answered {code.name}: {details}"
            ) from None

    def record(self, preprocessing: Preprocessing | None = None) -> ModelRecord:
        """A stand-in for a stored model's record, from the metadata: what the methods need to
        feed the model and name its outputs (no layer table: the model is a black box)."""
        inputs = tuple(map(_spec, self.metadata.inputs))
        outputs = tuple(map(_spec, self.metadata.outputs))
        layers = tuple(LayerInfo(spec.name, "", spec.name, (1, *spec.shape[1:]), spec.dtype) for spec in outputs)
        return ModelRecord(
            id=(self.metadata.versions[0] if self.metadata.versions else "") or self.model,
            name=self.model,
            inputs=inputs,
            outputs=outputs,
            layers=layers,
            preprocessing=preprocessing or Preprocessing(),
            labels=(),
            size_bytes=0,
            dynamic_batch=inputs[0].shape[:1] == (-1,),
            opset=0,
            created="",
        )

    def infer(self, feeds: Mapping[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        """One ModelInfer call: the named outputs for the inputs given."""
        request = oip.ModelInferRequest(model_name=self.model, model_version=self.version or None)
        for name, value in feeds.items():
            request.inputs.add(name=name, datatype=datatype_of(value.dtype), shape=list(value.shape))
            request.raw_input_contents.append(to_raw(value))
        for name in outputs:
            request.outputs.add(name=name)
        response = self._call(self._stub.ModelInfer, request)
        if len(response.raw_output_contents) != len(response.outputs):
            raise RemoteFailed(
                grpc.StatusCode.UNIMPLEMENTED,
                f"the inference server at {self.url} answered without raw_output_contents, the only form read here",
            )
        return {
            tensor.name: from_raw(data, tensor.datatype, tensor.shape, tensor.name)
            for tensor, data in zip(response.outputs, response.raw_output_contents)
        }


def first_output(remote: RemoteModel, record: ModelRecord) -> Callable[[np.ndarray], np.ndarray]:
    """A batch of ``record``'s input → the remote model's first output, sent in requests of at
    most REQUEST_BATCH (one for a model without a dynamic batch axis)."""
    input_name, output = record.input.name, record.outputs[0].name
    step = REQUEST_BATCH if record.dynamic_batch else 1

    def infer(batch: np.ndarray) -> np.ndarray:
        parts = [remote.infer({input_name: batch[i : i + step]}, [output])[output] for i in range(0, len(batch), step)]
        return np.concatenate(parts)

    return infer


def remote_occlusion(
    remote: RemoteModel, model_input: ModelInput, options: occlusion_methods.OcclusionOptions, record: ModelRecord | None = None
) -> Iterator[occlusion_methods.OcclusionProgress | occlusion_methods.OcclusionResult]:
    """Occlusion sensitivity of a remote model: the events of ``methods.occlusion.occlusion``,
    every occluded batch sent to the remote server. ``record``: ``remote.record()`` with the
    preprocessing that made ``model_input`` from images, where it did."""
    record = record or remote.record()
    if len(record.inputs) > 1:
        raise Unimplemented(f"occlusion feeds the image input only; the remote model {remote.model!r} takes other inputs too")
    input_name = record.input.name
    return with_occlusion_figure(
        occlusion_methods.occlusion(
            None, record, model_input, options, infer=lambda batch, output: remote.infer({input_name: batch}, [output])[output]
        )
    )
