from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Rectifiers(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RECTIFIERS_ALL: _ClassVar[Rectifiers]
    RECTIFIERS_RELU: _ClassVar[Rectifiers]
RECTIFIERS_ALL: Rectifiers
RECTIFIERS_RELU: Rectifiers

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "data")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class ImageBatch(_message.Message):
    __slots__ = ("images",)
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, images: _Optional[_Iterable[bytes]] = ...) -> None: ...

class Input(_message.Message):
    __slots__ = ("tensor", "images")
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    tensor: Tensor
    images: ImageBatch
    def __init__(self, tensor: _Optional[_Union[Tensor, _Mapping]] = ..., images: _Optional[_Union[ImageBatch, _Mapping]] = ...) -> None: ...

class Preprocessing(_message.Message):
    __slots__ = ("resize", "size", "scale", "mean", "std", "layout", "channel_order", "interpolation", "grayscale")
    RESIZE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_ORDER_FIELD_NUMBER: _ClassVar[int]
    INTERPOLATION_FIELD_NUMBER: _ClassVar[int]
    GRAYSCALE_FIELD_NUMBER: _ClassVar[int]
    resize: int
    size: _containers.RepeatedScalarFieldContainer[int]
    scale: float
    mean: _containers.RepeatedScalarFieldContainer[float]
    std: _containers.RepeatedScalarFieldContainer[float]
    layout: str
    channel_order: str
    interpolation: str
    grayscale: bool
    def __init__(self, resize: _Optional[int] = ..., size: _Optional[_Iterable[int]] = ..., scale: _Optional[float] = ..., mean: _Optional[_Iterable[float]] = ..., std: _Optional[_Iterable[float]] = ..., layout: _Optional[str] = ..., channel_order: _Optional[str] = ..., interpolation: _Optional[str] = ..., grayscale: _Optional[bool] = ...) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ("name", "preprocessing", "has_preprocessing", "labels")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PREPROCESSING_FIELD_NUMBER: _ClassVar[int]
    HAS_PREPROCESSING_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    name: str
    preprocessing: Preprocessing
    has_preprocessing: bool
    labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., preprocessing: _Optional[_Union[Preprocessing, _Mapping]] = ..., has_preprocessing: _Optional[bool] = ..., labels: _Optional[_Iterable[str]] = ...) -> None: ...

class FileChunk(_message.Message):
    __slots__ = ("file", "data")
    FILE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    file: str
    data: bytes
    def __init__(self, file: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class UploadModelRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    chunk: FileChunk
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., chunk: _Optional[_Union[FileChunk, _Mapping]] = ...) -> None: ...

class TensorInfo(_message.Message):
    __slots__ = ("name", "dtype", "shape")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ...) -> None: ...

class ReceptiveField(_message.Message):
    __slots__ = ("known", "stride", "size", "offset")
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    STRIDE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    known: bool
    stride: _containers.RepeatedScalarFieldContainer[int]
    size: _containers.RepeatedScalarFieldContainer[int]
    offset: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, known: _Optional[bool] = ..., stride: _Optional[_Iterable[int]] = ..., size: _Optional[_Iterable[int]] = ..., offset: _Optional[_Iterable[float]] = ...) -> None: ...

class Layer(_message.Message):
    __slots__ = ("name", "op_type", "tensor", "shape", "dtype", "receptive_field")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OP_TYPE_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    RECEPTIVE_FIELD_FIELD_NUMBER: _ClassVar[int]
    name: str
    op_type: str
    tensor: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: str
    receptive_field: ReceptiveField
    def __init__(self, name: _Optional[str] = ..., op_type: _Optional[str] = ..., tensor: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[str] = ..., receptive_field: _Optional[_Union[ReceptiveField, _Mapping]] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("id", "name", "inputs", "outputs", "layers", "preprocessing", "labels", "size_bytes", "dynamic_batch", "opset", "created")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    PREPROCESSING_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    DYNAMIC_BATCH_FIELD_NUMBER: _ClassVar[int]
    OPSET_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    inputs: _containers.RepeatedCompositeFieldContainer[TensorInfo]
    outputs: _containers.RepeatedCompositeFieldContainer[TensorInfo]
    layers: _containers.RepeatedCompositeFieldContainer[Layer]
    preprocessing: Preprocessing
    labels: _containers.RepeatedScalarFieldContainer[str]
    size_bytes: int
    dynamic_batch: bool
    opset: int
    created: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[TensorInfo, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[TensorInfo, _Mapping]]] = ..., layers: _Optional[_Iterable[_Union[Layer, _Mapping]]] = ..., preprocessing: _Optional[_Union[Preprocessing, _Mapping]] = ..., labels: _Optional[_Iterable[str]] = ..., size_bytes: _Optional[int] = ..., dynamic_batch: _Optional[bool] = ..., opset: _Optional[int] = ..., created: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("model_id",)
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    def __init__(self, model_id: _Optional[str] = ...) -> None: ...

class DeleteModelRequest(_message.Message):
    __slots__ = ("model_id",)
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    def __init__(self, model_id: _Optional[str] = ...) -> None: ...

class DeleteModelResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class ActivationsRequest(_message.Message):
    __slots__ = ("model_id", "input", "layers", "render", "omit_values", "omit_statistics")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    RENDER_FIELD_NUMBER: _ClassVar[int]
    OMIT_VALUES_FIELD_NUMBER: _ClassVar[int]
    OMIT_STATISTICS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    input: Input
    layers: _containers.RepeatedScalarFieldContainer[str]
    render: bool
    omit_values: bool
    omit_statistics: bool
    def __init__(self, model_id: _Optional[str] = ..., input: _Optional[_Union[Input, _Mapping]] = ..., layers: _Optional[_Iterable[str]] = ..., render: _Optional[bool] = ..., omit_values: _Optional[bool] = ..., omit_statistics: _Optional[bool] = ...) -> None: ...

class ChannelStats(_message.Message):
    __slots__ = ("mean", "max", "zero_fraction")
    MEAN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    ZERO_FRACTION_FIELD_NUMBER: _ClassVar[int]
    mean: _containers.RepeatedScalarFieldContainer[float]
    max: _containers.RepeatedScalarFieldContainer[float]
    zero_fraction: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, mean: _Optional[_Iterable[float]] = ..., max: _Optional[_Iterable[float]] = ..., zero_fraction: _Optional[_Iterable[float]] = ...) -> None: ...

class Activation(_message.Message):
    __slots__ = ("tensor", "value", "stats", "png")
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    tensor: str
    value: Tensor
    stats: ChannelStats
    png: bytes
    def __init__(self, tensor: _Optional[str] = ..., value: _Optional[_Union[Tensor, _Mapping]] = ..., stats: _Optional[_Union[ChannelStats, _Mapping]] = ..., png: _Optional[bytes] = ...) -> None: ...

class DeadFiltersRequest(_message.Message):
    __slots__ = ("model_id", "inputs", "layers", "threshold")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    inputs: _containers.RepeatedCompositeFieldContainer[Input]
    layers: _containers.RepeatedScalarFieldContainer[str]
    threshold: float
    def __init__(self, model_id: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[Input, _Mapping]]] = ..., layers: _Optional[_Iterable[str]] = ..., threshold: _Optional[float] = ...) -> None: ...

class LayerDeadFilters(_message.Message):
    __slots__ = ("tensor", "zero_fraction", "dead")
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    ZERO_FRACTION_FIELD_NUMBER: _ClassVar[int]
    DEAD_FIELD_NUMBER: _ClassVar[int]
    tensor: str
    zero_fraction: _containers.RepeatedScalarFieldContainer[float]
    dead: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, tensor: _Optional[str] = ..., zero_fraction: _Optional[_Iterable[float]] = ..., dead: _Optional[_Iterable[int]] = ...) -> None: ...

class DeadFiltersResponse(_message.Message):
    __slots__ = ("layers", "samples")
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    layers: _containers.RepeatedCompositeFieldContainer[LayerDeadFilters]
    samples: int
    def __init__(self, layers: _Optional[_Iterable[_Union[LayerDeadFilters, _Mapping]]] = ..., samples: _Optional[int] = ...) -> None: ...

class FiltersRequest(_message.Message):
    __slots__ = ("model_id", "layer", "render")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    RENDER_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    layer: str
    render: bool
    def __init__(self, model_id: _Optional[str] = ..., layer: _Optional[str] = ..., render: _Optional[bool] = ...) -> None: ...

class FiltersResponse(_message.Message):
    __slots__ = ("node", "weights", "png", "smoothness", "mean_smoothness")
    NODE_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    SMOOTHNESS_FIELD_NUMBER: _ClassVar[int]
    MEAN_SMOOTHNESS_FIELD_NUMBER: _ClassVar[int]
    node: str
    weights: Tensor
    png: bytes
    smoothness: _containers.RepeatedScalarFieldContainer[float]
    mean_smoothness: float
    def __init__(self, node: _Optional[str] = ..., weights: _Optional[_Union[Tensor, _Mapping]] = ..., png: _Optional[bytes] = ..., smoothness: _Optional[_Iterable[float]] = ..., mean_smoothness: _Optional[float] = ...) -> None: ...

class AttributionRequest(_message.Message):
    __slots__ = ("model_id", "input", "method", "has_target", "target", "output", "layer", "steps", "baseline", "samples", "noise", "seed", "rectifiers", "integration", "render")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    HAS_TARGET_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    NOISE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    RECTIFIERS_FIELD_NUMBER: _ClassVar[int]
    INTEGRATION_FIELD_NUMBER: _ClassVar[int]
    RENDER_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    input: Input
    method: str
    has_target: bool
    target: int
    output: str
    layer: str
    steps: int
    baseline: Tensor
    samples: int
    noise: float
    seed: int
    rectifiers: Rectifiers
    integration: str
    render: bool
    def __init__(self, model_id: _Optional[str] = ..., input: _Optional[_Union[Input, _Mapping]] = ..., method: _Optional[str] = ..., has_target: _Optional[bool] = ..., target: _Optional[int] = ..., output: _Optional[str] = ..., layer: _Optional[str] = ..., steps: _Optional[int] = ..., baseline: _Optional[_Union[Tensor, _Mapping]] = ..., samples: _Optional[int] = ..., noise: _Optional[float] = ..., seed: _Optional[int] = ..., rectifiers: _Optional[_Union[Rectifiers, str]] = ..., integration: _Optional[str] = ..., render: _Optional[bool] = ...) -> None: ...

class AttributionResponse(_message.Message):
    __slots__ = ("map", "png", "target", "score", "output", "target_label", "layer_map", "layer")
    MAP_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    TARGET_LABEL_FIELD_NUMBER: _ClassVar[int]
    LAYER_MAP_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    map: Tensor
    png: bytes
    target: _containers.RepeatedScalarFieldContainer[int]
    score: _containers.RepeatedScalarFieldContainer[float]
    output: str
    target_label: _containers.RepeatedScalarFieldContainer[str]
    layer_map: Tensor
    layer: str
    def __init__(self, map: _Optional[_Union[Tensor, _Mapping]] = ..., png: _Optional[bytes] = ..., target: _Optional[_Iterable[int]] = ..., score: _Optional[_Iterable[float]] = ..., output: _Optional[str] = ..., target_label: _Optional[_Iterable[str]] = ..., layer_map: _Optional[_Union[Tensor, _Mapping]] = ..., layer: _Optional[str] = ...) -> None: ...

class ExportBackwardRequest(_message.Message):
    __slots__ = ("model_id", "seeds", "wrt", "rectifier", "rectifiers")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    SEEDS_FIELD_NUMBER: _ClassVar[int]
    WRT_FIELD_NUMBER: _ClassVar[int]
    RECTIFIER_FIELD_NUMBER: _ClassVar[int]
    RECTIFIERS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    seeds: _containers.RepeatedScalarFieldContainer[str]
    wrt: _containers.RepeatedScalarFieldContainer[str]
    rectifier: str
    rectifiers: Rectifiers
    def __init__(self, model_id: _Optional[str] = ..., seeds: _Optional[_Iterable[str]] = ..., wrt: _Optional[_Iterable[str]] = ..., rectifier: _Optional[str] = ..., rectifiers: _Optional[_Union[Rectifiers, str]] = ...) -> None: ...
