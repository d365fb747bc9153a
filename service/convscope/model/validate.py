"""Checks an uploaded model must pass before onnxruntime ever sees it.

Uploaded models are untrusted. Besides malformed protobufs, the dangerous part is external
data: a tensor may point at any path (``/etc/passwd``, ``../../other-model``), and onnx and
onnxruntime would read it. We accept only references to side files uploaded with the model and
rewrite them to names the server chose.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from convscope.errors import InvalidModel

MODEL_FILE = "model.onnx"


def parse_model(data: bytes) -> onnx.ModelProto:
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as error:
        raise InvalidModel(f"the upload is not an ONNX model (protobuf parse failed: {error}); is the file complete?") from None
    if not model.HasField("graph") or not model.graph.node:
        raise InvalidModel("the upload parsed, but holds no graph with nodes; is it an ONNX model file?")
    return model


def _tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    yield from _node_tensors(graph.node)


def _node_tensors(nodes: Iterable[onnx.NodeProto]) -> Iterator[onnx.TensorProto]:
    """Tensors held in node attributes: dense, sparse (Constant's sparse_value) and subgraphs'."""
    for node in nodes:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            sparse_tensors = [attr.sparse_tensor] if attr.HasField("sparse_tensor") else []
            for sparse in [*sparse_tensors, *attr.sparse_tensors]:
                yield sparse.values
                yield sparse.indices
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)


def model_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every tensor stored in the model: initializers, node attributes, subgraphs, and
    model-local functions (onnx.load never inlines their data, and onnxruntime would resolve it
    against the server's working directory)."""
    return itertools.chain(_tensors(model.graph), *(_node_tensors(f.node) for f in model.functions))


def bind_external_data(model: onnx.ModelProto, stored_names: Mapping[str, str]) -> None:
    """Point every external-data reference at the stored side file it names, in place.

    ``stored_names`` maps each uploaded side file's name to the name the server stored it
    under. A reference to anything else is refused before any file is opened.
    """
    for tensor in model_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        entries = {entry.key: entry for entry in tensor.external_data}
        location = entries.get("location")
        if location is None:
            raise InvalidModel(f"tensor {tensor.name!r} is marked external but names no location")
        name = location.value
        if name not in stored_names:
            why = (
                "absolute paths and directories are never followed"
                if Path(name).is_absolute() or "/" in name or "\\" in name or name in ("..", ".")
                else "no side file of that name was uploaded with the model"
            )
            raise InvalidModel(
                f"tensor {tensor.name!r} refers to external data {name!r}: {why}; "
                "upload the side file (e.g. model.onnx.data) together with the model"
            )
        location.value = stored_names[name]


def check_model(path: Path) -> None:
    """The onnx checker, run on the stored file so external data and >2 GB models work."""
    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InvalidModel(f"the ONNX checker rejected the model: {_hide_folder(first, path)}") from None
    except Exception as error:  # the checker's C++ side raises assorted types on fuzzed input
        raise InvalidModel(
            f"the ONNX checker could not read the model: {type(error).__name__}: {_hide_folder(str(error), path)}"
        ) from None


def _hide_folder(message: str, path: Path) -> str:
    """Library messages name the upload's folder on the server: keep that internal."""
    return message.replace(str(path.parent), "<upload>")
