"""protobuf ↔ domain types. No logic beyond translation."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from convscope.choices import parse
from convscope.errors import InvalidArgument
from convscope.methods.activations import DeadFilterReport
from convscope.methods.attribution import AttributionOptions
from convscope.methods.occlusion import OcclusionResult
from convscope.model.types import LayerInfo, ModelRecord, Preprocessing, TensorSpec
from convscope_client._proto import convscope_pb2 as pb
from convscope_client.choices import AttributionMethod, IntegrationRule, Rectifier, RectifierScope
from convscope_client.inputs import fill_tensor, from_tensor

MAX_TENSOR_DIMS = 8


def tensor_to_numpy(message: pb.Tensor, data: bytes | memoryview | None = None) -> np.ndarray:
    """``message`` as a read-only array; ``data``: its bytes when they were kept out of it."""
    try:
        dtype = np.dtype(message.dtype)
    except TypeError:
        raise InvalidArgument(f"unknown tensor dtype {message.dtype!r}; use a numpy dtype name such as 'float32'") from None
    if dtype.kind not in "biuf" or len(message.shape) > MAX_TENSOR_DIMS or any(d < 0 for d in message.shape):
        raise InvalidArgument(f"tensor of dtype {dtype} and shape {list(message.shape)} is not supported")
    if data is None:
        data = message.data  # a copy out of the message: read it once
    expected = math.prod(message.shape) * dtype.itemsize
    if expected != len(data):
        raise InvalidArgument(f"tensor data holds {len(data)} bytes, but shape {list(message.shape)} of {dtype} needs {expected}")
    # A read-only view of those bytes (byte-swapped into a copy only on big-endian hosts):
    # inputs are never written in place, and a copy is a visible share of a one-layer call.
    return from_tensor(message, data, copy=False)


def given(**values: object) -> dict[str, object]:
    """The request fields that were set: proto3 leaves an unset number 0 and an unset string
    empty, and those fields keep the domain type's own default."""
    return {name: value for name, value in values.items() if value}


def rectifier_rule(value: str) -> Rectifier:
    return parse(Rectifier, value or Rectifier.PLAIN)


def rectifier_scope(value: int) -> RectifierScope:
    return RectifierScope.RELU if value == pb.RECTIFIERS_RELU else RectifierScope.ALL


def layer_dead_filters(report: DeadFilterReport) -> pb.LayerDeadFilters:
    return pb.LayerDeadFilters(
        tensor=report.tensor, zero_fraction=floats(report.zero_fraction), dead=[int(c) for c in report.dead]
    )


def preprocessing_from_proto(message: pb.Preprocessing) -> Preprocessing:
    return Preprocessing.from_dict(
        {
            "resize": message.resize,
            "size": tuple(message.size) or None,
            "scale": message.scale or 1 / 255,
            "mean": tuple(message.mean),
            "std": tuple(message.std),
            "layout": message.layout or "NCHW",
            "channel_order": message.channel_order or "RGB",
            "interpolation": message.interpolation or "bilinear",
            "grayscale": message.grayscale,
        }
    )


def preprocessing_to_proto(spec: Preprocessing) -> pb.Preprocessing:
    return pb.Preprocessing(
        resize=spec.resize,
        size=list(spec.size or ()),
        scale=spec.scale,
        mean=list(spec.mean),
        std=list(spec.std),
        layout=spec.layout,
        channel_order=spec.channel_order,
        interpolation=spec.interpolation,
        grayscale=spec.grayscale,
    )


def _tensor_info(spec: TensorSpec) -> pb.TensorInfo:
    return pb.TensorInfo(name=spec.name, dtype=spec.dtype, shape=list(spec.shape))


def _layer(layer: LayerInfo) -> pb.Layer:
    message = pb.Layer(
        name=layer.name,
        op_type=layer.op_type,
        tensor=layer.tensor,
        shape=list(layer.shape),
        dtype=layer.dtype,
        symbolic_shape=list(layer.symbolic_shape),
        dim_names=list(layer.dim_names),
    )
    if layer.receptive_field is not None:
        rf = layer.receptive_field
        message.receptive_field.CopyFrom(
            pb.ReceptiveField(
                known=True, stride=list(rf.stride), size=list(rf.size), offset=list(rf.offset), global_context=rf.global_context
            )
        )
    return message


def model_info(record: ModelRecord, *, with_layers: bool = True) -> pb.ModelInfo:
    return pb.ModelInfo(
        id=record.id,
        name=record.name,
        inputs=[_tensor_info(spec) for spec in record.inputs],
        outputs=[_tensor_info(spec) for spec in record.outputs],
        layers=[_layer(layer) for layer in record.layers] if with_layers else [],
        preprocessing=preprocessing_to_proto(record.preprocessing),
        labels=list(record.labels),
        size_bytes=record.size_bytes,
        dynamic_batch=record.dynamic_batch,
        opset=record.opset,
        created=record.created,
        layer_count=len(record.layers),
        probe_shape=list(record.probe_shape),
    )


def upload_input_shape(header: pb.UploadHeader) -> list[int] | dict[str, int] | None:
    if header.input_shape and header.input_dims:
        raise InvalidArgument("give the probe's input shape in full (input_shape) or by dim name (input_dims), not both")
    if header.input_dims:
        return dict(header.input_dims)
    return list(header.input_shape) or None


def floats(values: Sequence[float] | np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(values, np.float32).ravel()]


def occlusion_result(result: OcclusionResult) -> pb.OcclusionResult:
    message = pb.OcclusionResult(
        png=result.png,
        targets=list(result.targets),
        baseline_scores=floats(result.baseline_scores),
        output=result.output,
        target_labels=list(result.labels),
        engine=result.engine,
        window=list(result.window),
        stride=list(result.stride),
        error_bound=result.error_bound,
        evaluated_positions=result.evaluated,
    )
    fill_tensor(message.positions, result.positions)
    fill_tensor(message.attribution, result.attribution)
    return message


def attribution_request(request: pb.AttributionRequest) -> tuple[AttributionMethod, AttributionOptions]:
    """The method and its options, each choice parsed here (an unknown one: INVALID_ARGUMENT)."""
    options = AttributionOptions(
        output=request.output or None,
        target=attribution_target(request),
        wrt=request.wrt or None,
        layer=request.layer or None,
        seed=request.seed,
        rectifiers=rectifier_scope(request.rectifiers),
        **given(steps=request.steps, samples=request.samples),
        **({"integration": parse(IntegrationRule, request.integration)} if request.integration else {}),
        **({"baseline": tensor_to_numpy(request.baseline)} if request.HasField("baseline") else {}),
        **({"noise": request.noise} if request.HasField("noise") else {}),
    )
    return parse(AttributionMethod, request.method), options


def attribution_target(request: pb.AttributionRequest) -> int | np.ndarray | None:
    """The target entry, or weights over one sample's output (``target_weights``)."""
    if request.HasField("target_weights"):
        if request.has_target:
            raise InvalidArgument("give a target entry or target weights, not both")
        return tensor_to_numpy(request.target_weights).astype(np.float32, copy=False)
    return request.target if request.has_target else None
