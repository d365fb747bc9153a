"""Domain types of the model store: plain dataclasses, no protobuf, no onnxruntime."""

from __future__ import annotations

import collections
import difflib
import functools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from convscope.choices import parse
from convscope_client.choices import ChannelOrder, Interpolation, Layout


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[int, ...]  # -1 where symbolic


@dataclass(frozen=True)
class ReceptiveField:
    """Input-pixel box seen by unit (0, 0) of a tensor, and how it moves per unit."""

    stride: tuple[int, int]
    size: tuple[int, int]
    offset: tuple[float, float]  # centre of unit (0, 0) in input pixels
    # The unit also depends on the whole image through pooled context (squeeze-excitation gates,
    # instance-norm statistics); stride/size/offset describe the local window only.
    global_context: bool = False


@dataclass(frozen=True)
class LayerInfo:
    """One tensor a user can request, as learned by the probe run."""

    name: str  # producing node's name; "<op>#<index>" when the node is unnamed
    op_type: str
    tensor: str
    shape: tuple[int, ...]  # at batch 1
    dtype: str
    receptive_field: ReceptiveField | None = None
    # Per axis: "" where the size is fixed, else the name of the symbolic size it follows from
    # the input's (``shape`` holds its value at the probe shape); () where not known.
    dim_names: tuple[str, ...] = ()
    # The axes along the input's height and width, where the receptive-field pass traced them:
    # a tf2onnx export takes NHWC images but computes in NCHW after its first Transpose.
    spatial_axes: tuple[int, ...] = ()

    @property
    def symbolic_shape(self) -> tuple[int, ...]:
        """``shape`` with -1 where the size depends on the input's size."""
        return tuple(-1 if name else size for size, name in zip(self.shape, self.dim_names or ("",) * len(self.shape)))

    @functools.cached_property
    def sample_bytes(self) -> int:
        """Bytes of this tensor for one sample (its shape is taken at batch 1)."""
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class Preprocessing:
    """How an encoded image becomes the model's input tensor (see model/preprocessing.py)."""

    resize: int = 0
    size: tuple[int, int] | None = None
    scale: float = 1 / 255
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    layout: Layout = Layout.NCHW
    channel_order: ChannelOrder = ChannelOrder.RGB
    interpolation: Interpolation = Interpolation.BILINEAR
    grayscale: bool = False

    def __post_init__(self) -> None:
        # Every way in (a request, the store's JSON, a model's metadata, Python callers) builds
        # one of these: its choices are parsed here, once.
        object.__setattr__(self, "layout", parse(Layout, self.layout))
        object.__setattr__(self, "channel_order", parse(ChannelOrder, self.channel_order))
        object.__setattr__(self, "interpolation", parse(Interpolation, self.interpolation))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Preprocessing:
        from convscope.errors import InvalidArgument

        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise InvalidArgument(f"unknown preprocessing field(s) {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        values = dict(raw)
        for key in ("size", "mean", "std"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        if values.get("size") == ():
            values["size"] = None
        spec = cls(**values)
        spec.validate()
        return spec

    def validate(self) -> None:
        from convscope.errors import InvalidArgument

        if self.size is not None and (len(self.size) != 2 or min(self.size) <= 0):
            raise InvalidArgument(f"preprocessing size must be [height, width], got {list(self.size)}")
        if any(s == 0 for s in self.std):
            raise InvalidArgument("preprocessing std must not contain 0")
        if self.resize < 0 or self.scale <= 0:
            raise InvalidArgument("preprocessing resize must be ≥ 0 and scale > 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelRecord:
    """Everything the store knows about one model, persisted as JSON in the index."""

    id: str
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    layers: tuple[LayerInfo, ...]
    preprocessing: Preprocessing
    labels: tuple[str, ...]
    size_bytes: int
    dynamic_batch: bool
    opset: int
    created: str
    files: tuple[str, ...] = field(default=("model.onnx",))
    # The input shape the layer table was taken at (batch 1); () in records stored before it
    # was kept: their probe filled symbolic sizes from the preprocessing.
    probe_shape: tuple[int, ...] = ()

    @property
    def input(self) -> TensorSpec:
        return self.inputs[0]

    @functools.cached_property
    def _layers_by_tensor(self) -> dict[str, LayerInfo]:
        return {layer.tensor: layer for layer in self.layers}

    @functools.cached_property
    def _layers_by_node(self) -> dict[str, LayerInfo]:
        # A node with several outputs names none of them.
        counts = collections.Counter(layer.name for layer in self.layers)
        return {layer.name: layer for layer in self.layers if layer.name and counts[layer.name] == 1}

    def layer(self, name: str) -> LayerInfo:
        """The layer of a tensor name, or of the name of the node that produces it."""
        from convscope.errors import NotFound

        found = self._layers_by_tensor.get(name) or self._layers_by_node.get(name)
        if found is not None:
            return found
        close = difflib.get_close_matches(name, [*self._layers_by_tensor, *self._layers_by_node], n=3, cutoff=0.5)
        suggestion = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise NotFound(
            f"model {self.id[:12]} has no tensor or node {name!r}{suggestion} "
            f"(`convscope model {self.id[:12]}` / get_model lists its {len(self.layers)} tensors)"
        )

    def feature_axes(self, name: str) -> tuple[int, int, int]:
        """(channel, row, column) axes of a 4-D feature map: as the graph places them where the
        receptive-field pass traced them, else as the input's layout places its own."""
        layer = self.layer(name)
        if len(layer.shape) == 4 and len(layer.spatial_axes) == 2:
            rows, columns = layer.spatial_axes
            return next(axis for axis in (1, 2, 3) if axis not in layer.spatial_axes), rows, columns
        return (1, 2, 3) if self.preprocessing.layout == "NCHW" else (3, 1, 2)

    def tensor(self, name: str) -> str:
        """The tensor a request means by ``name``: a tensor name, or its producing node's name."""
        return self.layer(name).tensor

    def target_labels(self, output: str, targets: Sequence[int]) -> tuple[str, ...]:
        """The class names of ``targets`` of ``output`` ("" where unknown: labels name the entries
        of the first output only)."""
        labels = self.labels if output == self.outputs[0].name else ()
        return tuple(labels[t] if 0 <= t < len(labels) else "" for t in targets)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ModelRecord:
        def layer(item: dict[str, Any]) -> LayerInfo:
            rf = item.get("receptive_field")
            return LayerInfo(
                name=item["name"],
                op_type=item["op_type"],
                tensor=item["tensor"],
                shape=tuple(item["shape"]),
                dtype=item["dtype"],
                receptive_field=ReceptiveField(
                    tuple(rf["stride"]), tuple(rf["size"]), tuple(rf["offset"]), bool(rf.get("global_context", False))
                )
                if rf
                else None,
                dim_names=tuple(item.get("dim_names", ())),
                spatial_axes=tuple(item.get("spatial_axes", ())),
            )

        def spec(item: dict[str, Any]) -> TensorSpec:
            return TensorSpec(item["name"], item["dtype"], tuple(item["shape"]))

        return cls(
            id=raw["id"],
            name=raw["name"],
            inputs=tuple(spec(i) for i in raw["inputs"]),
            outputs=tuple(spec(o) for o in raw["outputs"]),
            layers=tuple(layer(item) for item in raw["layers"]),
            preprocessing=Preprocessing.from_dict(raw["preprocessing"]),
            labels=tuple(raw["labels"]),
            size_bytes=raw["size_bytes"],
            dynamic_batch=raw["dynamic_batch"],
            opset=raw["opset"],
            created=raw["created"],
            files=tuple(raw["files"]),
            probe_shape=tuple(raw.get("probe_shape", ())),
        )
