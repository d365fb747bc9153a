"""The Open Inference Protocol's gRPC service (``inference.GRPCInferenceService``, KServe v2) on
convscope's port, so that ``tritonclient`` and KServe's SDK talk to stored models.

Models are addressed by their name or id (a unique prefix of 8+ characters will do); a model's
one version is its id, the sha256 of its content. ``ModelInfer`` returns any tensor of the layer
table the request names as an output, and ``convscope.attribution`` (parameters below) returns a
gradient map of the request's input. Tensors travel in ``raw_output_contents``. Failures carry
the status codes of convscope's own API (``rpc/errors.py``).
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Mapping

import grpc
import numpy as np

from convscope.core import Convscope
from convscope.errors import InvalidArgument, NotFound, ResourceExhausted
from convscope.methods.attribution import AttributionOptions
from convscope.model.preprocessing import ModelInput
from convscope.model.types import ModelRecord, TensorSpec
from convscope.oip.tensors import datatype_of, from_contents, from_raw, to_raw
from convscope.rpc.errors import translate_errors
from convscope_client._proto import open_inference_grpc_pb2 as oip
from convscope_client._proto import open_inference_grpc_pb2_grpc as oip_grpc

SERVICE_NAME = oip.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
ATTRIBUTION_OUTPUT = "convscope.attribution"
# Triton's name for ONNX models run by onnxruntime: clients that branch on it see what they know.
PLATFORM = "onnxruntime_onnx"
# The requested output ``convscope.attribution`` takes these parameters (InferParameter kinds),
# named as Client.attribution names its arguments; unset ones keep that method's defaults. They
# may also come as request parameters ``convscope.attribution.<name>``: tritonclient has no
# public way to set a requested output's parameters, but takes request parameters.
ATTRIBUTION_PARAMETERS = {
    "method": str,  # default grad_cam
    "target": int,
    "output": str,
    "layer": str,
    "wrt": str,
    "steps": int,
    "samples": int,
    "noise": float,
    "seed": int,
    "baseline": float,
    "integration": str,
    "rectifiers": str,
}
DEFAULT_ATTRIBUTION_METHOD = "grad_cam"
_ID_PREFIX = re.compile(r"[0-9a-f]{8,64}")


def parameter_value(parameter: oip.InferParameter) -> object:
    kind = parameter.WhichOneof("parameter_choice")
    return None if kind is None else getattr(parameter, kind)


def attribution_options(parameters: Mapping[str, oip.InferParameter]) -> tuple[str, AttributionOptions]:
    """The method and options of a requested ``convscope.attribution`` output."""
    values: dict[str, object] = {}
    for name, parameter in parameters.items():
        kind = ATTRIBUTION_PARAMETERS.get(name)
        if kind is None:
            raise InvalidArgument(f"{ATTRIBUTION_OUTPUT} takes the parameters {sorted(ATTRIBUTION_PARAMETERS)}, not {name!r}")
        value = parameter_value(parameter)
        # A float parameter may come as an integer (tritonclient sends 0.5 as a double, 1 as int64).
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise InvalidArgument(f"{ATTRIBUTION_OUTPUT} parameter {name!r} takes a {kind.__name__}, got {value!r}")
        values[name] = value
    method = str(values.pop("method", DEFAULT_ATTRIBUTION_METHOD))
    return method, AttributionOptions(**values)  # type: ignore[arg-type]


def _attribution_parameters(request: oip.ModelInferRequest) -> dict[str, oip.InferParameter]:
    """The parameters of ``convscope.attribution``: its requested output's, and the request's
    named ``convscope.attribution.<name>``."""
    prefix = ATTRIBUTION_OUTPUT + "."
    given = dict(next(o.parameters for o in request.outputs if o.name == ATTRIBUTION_OUTPUT).items())
    for key, parameter in request.parameters.items():
        if key.startswith(prefix):
            name = key[len(prefix) :]
            if name in given:
                raise InvalidArgument(f"{ATTRIBUTION_OUTPUT} parameter {name!r} given twice: on the output and as {key!r}")
            given[name] = parameter
    return given


def _parameter(value: object) -> oip.InferParameter:
    if isinstance(value, str):
        return oip.InferParameter(string_param=value)
    return oip.InferParameter(int64_param=int(value))  # type: ignore[call-overload]


def _tensor_metadata(spec: TensorSpec) -> oip.ModelMetadataResponse.TensorMetadata:
    return oip.ModelMetadataResponse.TensorMetadata(name=spec.name, datatype=datatype_of(spec.dtype), shape=list(spec.shape))


class OpenInferenceServicer(oip_grpc.GRPCInferenceServiceServicer):
    def __init__(self, core: Convscope, *, max_response_bytes: int) -> None:
        self.core = core
        self.max_response_bytes = max_response_bytes

    def _record(self, name: str, version: str) -> ModelRecord:
        """The model called ``name`` (the newest upload of that name, or the one whose id is
        ``version``), else the model whose id or id prefix is ``name``."""
        if not name:
            raise InvalidArgument("name the model: its name or id (convscope models lists them)")
        record = None
        if _ID_PREFIX.fullmatch(name):
            try:
                record = self.core.model(name)
            except NotFound:
                pass
        if record is None:
            named = [r for r in self.core.models() if r.name == name and (not version or r.id == version)]
            if not named:
                raise NotFound(
                    f"no model named {name!r}"
                    + (f" with version {version!r}" if version else "")
                    + " and none with that id; `convscope models` (list_models) shows the stored ones"
                )
            record = max(named, key=lambda r: r.created)
        if version and record.id != version:
            raise NotFound(f"model {name!r} has one version, its id {record.id}, not {version!r}")
        return record

    @translate_errors
    def ServerLive(self, request: oip.ServerLiveRequest, context: grpc.ServicerContext) -> oip.ServerLiveResponse:
        return oip.ServerLiveResponse(live=True)

    @translate_errors
    def ServerReady(self, request: oip.ServerReadyRequest, context: grpc.ServicerContext) -> oip.ServerReadyResponse:
        return oip.ServerReadyResponse(ready=True)

    @translate_errors
    def ServerMetadata(self, request: oip.ServerMetadataRequest, context: grpc.ServicerContext) -> oip.ServerMetadataResponse:
        return oip.ServerMetadataResponse(
            name="convscope", version=importlib.metadata.version("convscope"), extensions=[ATTRIBUTION_OUTPUT]
        )

    @translate_errors
    def ModelReady(self, request: oip.ModelReadyRequest, context: grpc.ServicerContext) -> oip.ModelReadyResponse:
        # As Triton does: an unknown model is not ready, not an error.
        try:
            self._record(request.name, request.version)
        except NotFound:
            return oip.ModelReadyResponse(ready=False)
        return oip.ModelReadyResponse(ready=True)

    @translate_errors
    def ModelMetadata(self, request: oip.ModelMetadataRequest, context: grpc.ServicerContext) -> oip.ModelMetadataResponse:
        record = self._record(request.name, request.version)
        return oip.ModelMetadataResponse(
            name=request.name,
            versions=[record.id],
            platform=PLATFORM,
            inputs=[_tensor_metadata(spec) for spec in record.inputs],
            outputs=[_tensor_metadata(spec) for spec in record.outputs],
            properties={"convscope.id": record.id, "convscope.name": record.name, "convscope.tensors": str(len(record.layers))},
        )

    def _inputs(self, record: ModelRecord, request: oip.ModelInferRequest) -> dict[str, np.ndarray]:
        raw = request.raw_input_contents
        if raw and len(raw) != len(request.inputs):
            raise InvalidArgument(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs: send one per input, in order")
        arrays = {}
        for index, tensor in enumerate(request.inputs):
            if raw:
                arrays[tensor.name] = from_raw(raw[index], tensor.datatype, tensor.shape, tensor.name)
            else:
                arrays[tensor.name] = from_contents(tensor.contents, tensor.datatype, tensor.shape, tensor.name)
        expected = [spec.name for spec in record.inputs]
        if sorted(arrays) != sorted(expected) or len(arrays) != len(request.inputs):
            raise InvalidArgument(
                f"model {request.model_name!r} takes the inputs {expected}, got {[t.name for t in request.inputs]}"
            )
        return arrays

    def _outputs(
        self, record: ModelRecord, request: oip.ModelInferRequest, arrays: dict[str, np.ndarray]
    ) -> list[tuple[str, np.ndarray, dict[str, object]]]:
        """(name, value, parameters) per requested output, in the order asked."""
        image = arrays.pop(record.input.name)
        model_input = self.core.prepare(record, tensor=image, others=arrays)
        wanted = [output.name for output in request.outputs] or [spec.name for spec in record.outputs]
        if len(set(wanted)) != len(wanted):
            raise InvalidArgument(f"outputs requested more than once: {sorted({n for n in wanted if wanted.count(n) > 1})}")
        tensors = [name for name in wanted if name != ATTRIBUTION_OUTPUT]
        values: dict[str, tuple[np.ndarray, dict[str, object]]] = {}
        if tensors:
            for name in tensors:
                record.layer(name)  # NOT_FOUND with the closest names, before any work
            results = self.core.activations(record.id, model_input, tensors, statistics=False)
            by_tensor = {result.tensor: result.value for result in results}
            values.update((name, (by_tensor[record.tensor(name)], {})) for name in tensors)
        if ATTRIBUTION_OUTPUT in wanted:
            values[ATTRIBUTION_OUTPUT] = self._attribution(record, model_input, _attribution_parameters(request))
        return [(name, *values[name]) for name in wanted]

    def _attribution(
        self, record: ModelRecord, model_input: ModelInput, parameters: Mapping[str, oip.InferParameter]
    ) -> tuple[np.ndarray, dict[str, object]]:
        method, options = attribution_options(parameters)
        result, _ = self.core.attribution(record.id, model_input, method, options, render=False)
        described = {
            "method": method,
            "output": result.score.tensor,
            "targets": ",".join(str(int(t)) for t in result.score.targets),
            "scores": ",".join(f"{s:.9g}" for s in np.asarray(result.scores).reshape(-1)),
        }
        if result.layer:
            described["layer"] = result.layer
        if result.warnings:
            described["warnings"] = " | ".join(result.warnings)
        return result.map, described

    @translate_errors
    def ModelInfer(self, request: oip.ModelInferRequest, context: grpc.ServicerContext) -> oip.ModelInferResponse:
        record = self._record(request.model_name, request.model_version)
        outputs = self._outputs(record, request, self._inputs(record, request))
        raw = [to_raw(value) for _, value, _ in outputs]
        size = sum(map(len, raw))
        if size > self.max_response_bytes:
            raise ResourceExhausted(
                f"the outputs take {size / 2**20:.1f} MiB, over the server's limit of {self.max_response_bytes / 2**20:.1f} MiB "
                "per message (--max-response-mb): request fewer outputs or a smaller batch per call"
            )
        response = oip.ModelInferResponse(
            model_name=request.model_name, model_version=record.id, id=request.id, raw_output_contents=raw
        )
        for name, value, parameters in outputs:
            response.outputs.add(
                name=name,
                datatype=datatype_of(value.dtype),
                shape=list(value.shape),
                parameters={key: _parameter(item) for key, item in parameters.items()},
            )
        return response
