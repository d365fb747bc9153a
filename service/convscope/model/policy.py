"""What an uploaded model may contain, checked on the parsed protobuf before the onnx checker or
onnxruntime reads it: only ops onnxruntime ships, no compiled-binary (EPContext) nodes, a
bounded node count, initializers whose data matches their dims, and external data that lies
inside the upload's own side files, read whole and no further.
"""

from __future__ import annotations

import itertools
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from convscope.errors import InvalidModel, ResourceExhausted
from convscope.model.validate import model_tensors

# Domains whose kernels onnxruntime's default build registers.
RUNTIME_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft", "com.microsoft.nchwc", "ai.onnx.preview.training"})
# The flatbuffer file identifier of onnxruntime's own .ort format, at bytes 4-8.
ORT_FORMAT_IDENTIFIER = b"ORTM"


def refuse_ort_format(data: bytes) -> None:
    if data[4:8] == ORT_FORMAT_IDENTIFIER:
        raise InvalidModel(
            "the upload is an onnxruntime .ort file; the server takes only ONNX (.onnx) models: upload the .onnx it was converted from"
        )


def _nodes(nodes: Iterable[onnx.NodeProto]) -> Iterator[onnx.NodeProto]:
    """Every node, those of subgraphs (If, Loop, Scan bodies) included."""
    for node in nodes:
        yield node
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _nodes(sub.node)


def all_nodes(model: onnx.ModelProto) -> Iterator[onnx.NodeProto]:
    return itertools.chain(_nodes(model.graph.node), *(_nodes(function.node) for function in model.functions))


def check_nodes(model: onnx.ModelProto, max_nodes: int) -> None:
    local = {function.domain for function in model.functions}
    for count, node in enumerate(all_nodes(model), start=1):
        if count > max_nodes:
            raise ResourceExhausted(f"the model has more than {max_nodes} nodes, the server's limit (--max-nodes)")
        where = f"node {node.name or '(unnamed)'!r} ({node.domain + '::' if node.domain else ''}{node.op_type})"
        if node.op_type == "EPContext":
            raise InvalidModel(
                f"{where} is an EPContext node: it embeds or points at a binary compiled for one execution provider, "
                "which the server does not load; upload the original ONNX model"
            )
        if node.domain not in RUNTIME_DOMAINS and node.domain not in local:
            raise InvalidModel(
                f"{where} is in domain {node.domain!r}, which onnxruntime does not ship (it runs {sorted(d or 'ai.onnx' for d in RUNTIME_DOMAINS)}); "
                "export the model with standard ops"
            )


def _expected_bytes(tensor: onnx.TensorProto) -> int | None:
    if tensor.data_type in (onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED):
        return None
    try:
        dtype = helper.tensor_dtype_to_np_dtype(tensor.data_type)
    except (KeyError, ValueError):
        return None
    bits = {onnx.TensorProto.INT4: 4, onnx.TensorProto.UINT4: 4}.get(tensor.data_type, 8 * np.dtype(dtype).itemsize)
    return (int(np.prod(tensor.dims, dtype=object)) * bits + 7) // 8


def _typed_values(tensor: onnx.TensorProto) -> int:
    field = helper.tensor_dtype_to_field(tensor.data_type)
    values = len(getattr(tensor, field))
    return values // 2 if tensor.data_type in (onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128) else values


def check_initializer_sizes(model: onnx.ModelProto) -> None:
    """Data in the file must be exactly what the dims say: a mismatch makes readers over- or
    under-read."""
    for tensor in model_tensors(model):
        if any(d < 0 for d in tensor.dims):
            raise InvalidModel(f"tensor {tensor.name!r} has negative dims {list(tensor.dims)}")
        expected = _expected_bytes(tensor)
        if expected is None or tensor.data_location == onnx.TensorProto.EXTERNAL:
            continue
        if tensor.HasField("raw_data"):
            got, unit = len(tensor.raw_data), "bytes"
        elif tensor.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
            continue  # packed two to an int32: no one count to compare with
        else:
            got, unit = _typed_values(tensor), "values"
            expected = int(np.prod(tensor.dims, dtype=object))
        if got != expected:
            raise InvalidModel(f"tensor {tensor.name!r} has dims {list(tensor.dims)} ({expected} {unit}) but holds {got} {unit}")


def check_external_extents(model: onnx.ModelProto, folder: Path) -> None:
    """Every external reference (already bound to a stored side file) reads a regular file that
    is not linked elsewhere, inside its size, exactly the tensor's bytes."""
    for tensor in model_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        entries = {entry.key: entry.value for entry in tensor.external_data}
        where = f"tensor {tensor.name!r}"
        info = os.lstat(folder / entries["location"])
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise InvalidModel(f"{where}: its external data is not a plain file of this upload")
        try:
            offset, length = int(entries.get("offset", "0")), int(entries.get("length", str(info.st_size)))
        except ValueError:
            raise InvalidModel(f"{where}: external data offset/length must be integers") from None
        if offset < 0 or length < 0 or offset + length > info.st_size:
            raise InvalidModel(
                f"{where}: external data at offset {offset}, length {length} does not lie inside its side file "
                f"({info.st_size} bytes)"
            )
        expected = _expected_bytes(tensor)
        if expected is not None and length != expected:
            raise InvalidModel(f"{where}: dims {list(tensor.dims)} need {expected} bytes, its external data has {length}")
