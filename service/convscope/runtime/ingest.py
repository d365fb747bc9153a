"""Turn validated upload files into a ModelRecord: load check, dynamic batch, layer table.

Everything here runs the model, so it lives in the runtime layer; it takes files and returns
plain data, so it can move into a sandboxed worker process unchanged.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from convscope.errors import InvalidArgument, InvalidModel
from convscope.graph.analysis import ai_onnx_opset, data_tensors, node_label, producers, runtime_inputs
from convscope.graph.backward.emitter import FLOAT_TYPES as FLOAT_ELEMENT_TYPES
from convscope.graph.base import base_graph
from convscope.graph.expose import expose
from convscope.graph.receptive_field import receptive_fields
from convscope.limits import DEFAULT_MAX_NODES
from convscope.model.policy import check_external_extents, check_initializer_sizes, check_nodes, refuse_ort_format
from convscope.model.store import Upload
from convscope.model.types import LayerInfo, ModelRecord, Preprocessing, TensorSpec
from convscope.model.validate import bind_external_data, check_model, parse_model
from convscope.runtime.memory import raise_if_out_of_memory
from convscope.runtime.providers import new_session

log = logging.getLogger(__name__)

PREPROCESSING_KEY = "convscope.preprocessing"
LABELS_KEY = "convscope.labels"
DEFAULT_SPATIAL = 224
# Probe sizes tried after the preprocessing's when the model rejects it: detectors and
# segmenters take multiples of their largest stride (32 for nearly all), recognizers with a
# fixed height take text lines several times as wide as high.
CANDIDATE_SQUARE_SIDES = tuple(range(224, 641, 32))
CANDIDATE_LINE_ASPECTS = (2, 4, 6, 8, 10, 16)
InputShape = Sequence[int] | Mapping[str, int]
# Relative tolerance for "a batch of 2 equals two batches of 1" (batched kernels reorder sums).
BATCH_CHECK_RTOL = 1e-4


def describe_upload(
    model_id: str,
    upload: Upload,
    *,
    name: str,
    preprocessing: Preprocessing | None,
    labels: Sequence[str],
    input_shape: InputShape | None = None,
    max_nodes: int = DEFAULT_MAX_NODES,
) -> ModelRecord:
    """``input_shape``: the probe's input shape (a full shape, or sizes by dim name such as
    ``{"H": 48, "W": 320}``); None tries the preprocessing's size, then common candidates.
    ``max_nodes``: the most nodes (subgraphs' included) the model may have."""
    data = upload.model_path.read_bytes()
    refuse_ort_format(data)
    model = parse_model(data)
    del data
    check_nodes(model, max_nodes)
    check_initializer_sizes(model)
    if upload.side_names:
        bind_external_data(model, upload.side_names)
        check_external_extents(model, upload.folder)
        onnx.save(model, str(upload.model_path))
    else:
        bind_external_data(model, {})
    check_model(upload.model_path)
    inputs = image_first(runtime_inputs(model.graph))
    original = _session(str(upload.model_path))
    full = onnx.load(str(upload.model_path), load_external_data=True)
    preprocessing = preprocessing or _metadata_preprocessing(model) or Preprocessing()
    labels = tuple(labels) or _metadata_labels(model)
    probe, others = _working_probe(original, inputs, preprocessing, input_shape)

    # Other inputs (a scale factor, an image size) may have no batch axis: such models run one
    # sample at a time rather than guess which inputs to stack.
    dynamic_ok = not others and _check_dynamic_batch(original, base_graph(full, dynamic_batch=True), probe)
    base = base_graph(full, dynamic_batch=dynamic_ok)
    layers = with_dim_names(layer_table(base, probe, layout=preprocessing.layout, others=others), base)
    declared = {value.name: value for value in base.graph.input}
    outputs = tuple(_tensor_spec(o) for o in base.graph.output)
    return ModelRecord(
        id=model_id,
        name=name or model.graph.name or model_id[:12],
        inputs=tuple(_tensor_spec(declared[value.name]) for value in inputs),
        outputs=outputs,
        layers=layers,
        preprocessing=preprocessing,
        labels=labels,
        size_bytes=upload.received,
        dynamic_batch=dynamic_ok,
        probe_shape=tuple(int(d) for d in probe.shape),
        opset=ai_onnx_opset(model),
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        files=tuple(sorted(p.name for p in upload.folder.iterdir())),
    )


def _session(model: bytes | str) -> ort.InferenceSession:
    try:
        return new_session(model, providers=["CPUExecutionProvider"])
    except Exception as error:
        raise_if_out_of_memory(error)
        first = str(error).strip().splitlines()[0][:500] if str(error).strip() else type(error).__name__
        if isinstance(model, str):  # onnxruntime names the upload's folder on the server: keep it internal
            first = first.replace(os.path.dirname(model), "<upload>")
        raise InvalidModel(f"onnxruntime cannot load the model: {first}") from None


def _metadata_preprocessing(model: onnx.ModelProto) -> Preprocessing | None:
    for prop in model.metadata_props:
        if prop.key == PREPROCESSING_KEY:
            try:
                return Preprocessing.from_dict(json.loads(prop.value))
            except (ValueError, TypeError) as error:
                raise InvalidArgument(f"the model's {PREPROCESSING_KEY} metadata is not valid: {error}") from None
    return None


def _metadata_labels(model: onnx.ModelProto) -> tuple[str, ...]:
    for prop in model.metadata_props:
        if prop.key == LABELS_KEY:
            try:
                return tuple(str(label) for label in json.loads(prop.value))
            except ValueError as error:
                raise InvalidArgument(f"the model's {LABELS_KEY} metadata is not a JSON list: {error}") from None
    return ()


def _dims(value: onnx.ValueInfoProto) -> list[int]:
    return [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]


def _tensor_spec(value: onnx.ValueInfoProto) -> TensorSpec:
    elem = value.type.tensor_type.elem_type
    dtype = str(helper.tensor_dtype_to_np_dtype(elem)) if elem else "unknown"
    return TensorSpec(value.name, dtype, tuple(_dims(value)))


def probe_shape(dims: Sequence[int], preprocessing: Preprocessing) -> tuple[int, ...]:
    """Batch 1, the model's fixed sizes, and symbolic sizes filled from the preprocessing
    (channels 3 or 1, height and width from its size or 224)."""
    height, width = preprocessing.size or (DEFAULT_SPATIAL, DEFAULT_SPATIAL)
    channels_axis = 1 if preprocessing.layout == "NCHW" else len(dims) - 1
    spatial = iter([height, width])
    shape = []
    for axis, dim in enumerate(dims):
        if axis == 0:
            shape.append(1)
        elif dim > 0:
            shape.append(dim)
        elif axis == channels_axis:
            shape.append(1 if preprocessing.grayscale else 3)
        else:
            shape.append(next(spatial, 1))
    return tuple(shape)


def _input_dims(value: onnx.ValueInfoProto) -> list[int]:
    if not value.type.HasField("tensor_type") or not value.type.tensor_type.elem_type:
        raise InvalidModel(f"input {value.name!r} is not a typed tensor")
    dims = _dims(value)
    if not dims:
        raise InvalidModel(f"input {value.name!r} has no shape; convscope needs at least its rank")
    return dims


def probe_candidates(dims: Sequence[int], preprocessing: Preprocessing) -> list[tuple[int, ...]]:
    """Shapes to probe in order: the preprocessing's, then sizes common strides accept."""
    first = probe_shape(dims, preprocessing)
    channels_axis = 1 if preprocessing.layout == "NCHW" else len(dims) - 1
    spatial = [axis for axis in range(1, len(dims)) if axis != channels_axis]
    free = [axis for axis in spatial if dims[axis] <= 0]
    candidates = [first]
    if len(spatial) == 2 and free:
        fixed = [dims[axis] for axis in spatial if dims[axis] > 0]
        if fixed:  # one fixed side (a text line's height): the other several times as long
            sides = [fixed[0] * aspect for aspect in CANDIDATE_LINE_ASPECTS]
        else:
            sides = list(CANDIDATE_SQUARE_SIDES)
        for side in sides:
            shape = list(first)
            for axis in free:
                shape[axis] = side
            candidates.append(tuple(shape))
    return list(dict.fromkeys(candidates))


def requested_probe_shape(dims: Sequence[int], names: Sequence[str], requested: InputShape) -> tuple[int, ...]:
    """``requested`` (a full shape, or sizes by dim name) checked against the model's input."""
    if isinstance(requested, Mapping):
        unknown = set(requested) - {name for name in names if name}
        if unknown:
            raise InvalidArgument(
                f"input_shape names dims {sorted(unknown)} the model's input does not have; its dims are "
                f"{[name or size for name, size in zip(names, dims)]}"
            )
        shape = [requested.get(name, size) if name else size for name, size in zip(names, dims)]
        shape[0] = 1
        missing = [names[axis] or axis for axis, size in enumerate(shape) if size <= 0]
        if missing:
            raise InvalidArgument(f"input_shape leaves dims {missing} of the model's input without a size")
    else:
        shape = [int(size) for size in requested]
        if (
            len(shape) != len(dims)
            or any(size <= 0 for size in shape)
            or any(want > 0 and want != got for want, got in zip(dims[1:], shape[1:]))
        ):
            expected = ["N" if axis == 0 else (size if size > 0 else names[axis] or "?") for axis, size in enumerate(dims)]
            raise InvalidArgument(f"input_shape {shape} does not fit the model's input {expected}")
        shape[0] = 1
    return tuple(int(size) for size in shape)


def probe_array(shape: Sequence[int], dtype: np.dtype) -> np.ndarray:
    """A deterministic batch-1 input: what every layer-table run feeds."""
    if np.issubdtype(dtype, np.floating):
        return np.random.default_rng(0).random(tuple(shape)).astype(dtype)
    return np.zeros(tuple(shape), dtype)


def image_first(inputs: Sequence[onnx.ValueInfoProto]) -> list[onnx.ValueInfoProto]:
    """The inputs with the image first: the first float input of rank 4 (else the first input);
    methods differentiate and decode images for it unless told otherwise."""
    images = [v for v in inputs if len(v.type.tensor_type.shape.dim) == 4 and v.type.tensor_type.elem_type in FLOAT_ELEMENT_TYPES]
    first = images[0] if images else inputs[0]
    return [first, *(v for v in inputs if v is not first)]


def other_probes(
    others: Sequence[onnx.ValueInfoProto], image: onnx.ValueInfoProto, image_shape: Sequence[int]
) -> dict[str, np.ndarray]:
    """Probe values of the model's other inputs: batch 1, a symbolic size shared by name with
    the image's set as the image's, any other symbolic size 1."""
    sizes = {d.dim_param: size for d, size in zip(image.type.tensor_type.shape.dim, image_shape) if d.dim_param}
    feeds = {}
    for value in others:
        dims = value.type.tensor_type.shape.dim
        shape = [
            1 if axis == 0 and not d.HasField("dim_value") else d.dim_value or sizes.get(d.dim_param, 1)
            for axis, d in enumerate(dims)
        ]
        feeds[value.name] = probe_array(shape, helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type))
    return feeds


def _working_probe(
    original: ort.InferenceSession,
    inputs: Sequence[onnx.ValueInfoProto],
    preprocessing: Preprocessing,
    requested: InputShape | None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The first probe input (the image's, and the others') the model runs on; INVALID_ARGUMENT
    naming what was tried if none."""
    value = inputs[0]
    dims = _input_dims(value)
    names = [d.dim_param for d in value.type.tensor_type.shape.dim]
    dtype = helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
    shapes = [requested_probe_shape(dims, names, requested)] if requested is not None else probe_candidates(dims, preprocessing)
    first_error = ""
    quiet = ort.RunOptions()
    quiet.log_severity_level = 4  # a rejected candidate is expected: its error goes in our message only
    for shape in shapes:
        probe = probe_array(shape, dtype)
        others = other_probes(inputs[1:], value, shape)
        try:
            original.run(None, {value.name: probe, **others}, quiet)
        except Exception as error:  # onnxruntime raises several types for a size the graph rejects
            raise_if_out_of_memory(error)
            first_error = first_error or runtime_message(error)
            continue
        return probe, others
    if requested is not None:
        raise InvalidArgument(f"the model does not run at input_shape {list(shapes[0])}: onnxruntime: {first_error}")
    raise InvalidArgument(
        f"the model ran at none of the input shapes tried ({', '.join(str(list(s)) for s in shapes)}); "
        f"onnxruntime at {list(shapes[0])}: {first_error}; pass input_shape (CLI --input-shape) with a size it takes"
    )


def runtime_message(error: Exception) -> str:
    """The first line of onnxruntime's message, without its "[ONNXRuntimeError] : 1 : FAIL :"
    prefix."""
    text = str(error).strip()
    if not text:
        return type(error).__name__
    return re.sub(r"^(\[ONNXRuntimeError\])?\s*:\s*\d+\s*:\s*\w+\s*:\s*", "", text.splitlines()[0])[:400]


def _check_dynamic_batch(original: ort.InferenceSession, dynamic: onnx.ModelProto, probe: np.ndarray) -> bool:
    """A batch of two must equal two batches of one, and batch one must equal the original."""
    name = original.get_inputs()[0].name
    try:
        session = _session(dynamic.SerializeToString())
        pair = np.concatenate([probe, probe[:, ::-1].copy() if probe.ndim > 1 else probe])
        reference = original.run(None, {name: probe})
        singles = [session.run(None, {name: pair[i : i + 1]}) for i in range(2)]
        batched = session.run(None, {name: pair})
    except Exception as error:
        log.info("batch dimension stays fixed: the rewritten graph fails to run (%s)", str(error).splitlines()[0][:200])
        return False
    for ref, one, other, both in zip(reference, singles[0], singles[1], batched):
        expected = np.concatenate([one, other])
        if ref.shape != one.shape or both.shape != expected.shape or not _close(ref, one) or not _close(both, expected):
            log.info("batch dimension stays fixed: the model's outputs mix samples of a batch")
            return False
    return True


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    if not np.issubdtype(a.dtype, np.floating):
        return bool(np.array_equal(a, b))
    scale = max(float(np.abs(b).max(initial=0.0)), 1e-6)
    return bool(np.allclose(a, b, rtol=BATCH_CHECK_RTOL, atol=BATCH_CHECK_RTOL * scale, equal_nan=True))


def with_dim_names(layers: tuple[LayerInfo, ...], model: onnx.ModelProto) -> tuple[LayerInfo, ...]:
    """The layers with the names of their sizes that follow the input's symbolic height, width
    (or any other symbolic dim but the batch), from onnx's shape inference on the symbolic
    graph; a dim it cannot tell is named "?"."""
    inputs = runtime_inputs(model.graph)
    if not any(not d.HasField("dim_value") for value in inputs for d in value.type.tensor_type.shape.dim[1:]):
        return tuple(dataclasses.replace(layer, dim_names=("",) * len(layer.shape)) for layer in layers)
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True).graph
    except Exception:  # inference is a best effort here: the sizes themselves came from a run
        log.info("shape inference failed: the layer table does not name symbolic sizes", exc_info=True)
        return layers
    names: dict[str, tuple[str, ...]] = {}
    for value in (*inferred.value_info, *inferred.output):
        if value.type.tensor_type.HasField("shape"):
            dims = value.type.tensor_type.shape.dim
            names[value.name] = ("",) + tuple("" if d.HasField("dim_value") else d.dim_param or "?" for d in dims[1:])
    return tuple(
        dataclasses.replace(layer, dim_names=names[layer.tensor])
        if len(names.get(layer.tensor, ())) == len(layer.shape)
        else layer
        for layer in layers
    )


def layer_table(
    model: onnx.ModelProto, probe: np.ndarray, *, layout: str = "NCHW", others: Mapping[str, np.ndarray] | None = None
) -> tuple[LayerInfo, ...]:
    """Every data tensor with its concrete batch-1 shape and dtype, learned by one run (the image
    input ``probe``, the model's ``others`` inputs by name), and its receptive field (stride,
    size, offset) where the graph pass can derive one.  A size the model rejects is an
    INVALID_ARGUMENT quoting onnxruntime and the shape tried."""
    names = data_tensors(model.graph)
    outputs = [o.name for o in model.graph.output]
    wanted = list(dict.fromkeys(names + outputs))
    session = _session(expose(model, wanted).SerializeToString())
    others = dict(others or {})
    image = next(value.name for value in session.get_inputs() if value.name not in others)
    try:
        values = session.run(wanted, {image: probe, **others})
    except Exception as error:  # onnxruntime's types for a failed run differ by kind of failure
        raise_if_out_of_memory(error)
        raise InvalidArgument(
            f"the model does not run at input shape {list(probe.shape)}: onnxruntime: {runtime_message(error)}"
        ) from None
    made_by = producers(model.graph)
    shapes = {tensor: np.shape(value) for tensor, value in zip(wanted, values)}
    shapes[image] = probe.shape
    fields = receptive_fields(model, shapes, layout=layout)
    layers = []
    for tensor, value in zip(wanted, values):
        if tensor not in made_by:  # an output that is the input passed through
            continue
        index, node = made_by[tensor]
        layers.append(
            LayerInfo(
                name=node_label(node, index),
                op_type=node.op_type,
                tensor=tensor,
                shape=tuple(int(d) for d in np.shape(value)),
                dtype=str(np.asarray(value).dtype),
                receptive_field=field.summary() if (field := fields.get(tensor)) is not None else None,
                spatial_axes=(field.y_axis, field.x_axis) if field is not None else (),
            )
        )
    return tuple(layers)
