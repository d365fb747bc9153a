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
    __slots__ = ("tensor", "images", "others", "name")
    class OthersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Tensor
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    OTHERS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    tensor: Tensor
    images: ImageBatch
    others: _containers.MessageMap[str, Tensor]
    name: str
    def __init__(self, tensor: _Optional[_Union[Tensor, _Mapping]] = ..., images: _Optional[_Union[ImageBatch, _Mapping]] = ..., others: _Optional[_Mapping[str, Tensor]] = ..., name: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("name", "preprocessing", "has_preprocessing", "labels", "input_shape", "input_dims")
    class InputDimsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    PREPROCESSING_FIELD_NUMBER: _ClassVar[int]
    HAS_PREPROCESSING_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    INPUT_DIMS_FIELD_NUMBER: _ClassVar[int]
    name: str
    preprocessing: Preprocessing
    has_preprocessing: bool
    labels: _containers.RepeatedScalarFieldContainer[str]
    input_shape: _containers.RepeatedScalarFieldContainer[int]
    input_dims: _containers.ScalarMap[str, int]
    def __init__(self, name: _Optional[str] = ..., preprocessing: _Optional[_Union[Preprocessing, _Mapping]] = ..., has_preprocessing: _Optional[bool] = ..., labels: _Optional[_Iterable[str]] = ..., input_shape: _Optional[_Iterable[int]] = ..., input_dims: _Optional[_Mapping[str, int]] = ...) -> None: ...

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
    __slots__ = ("known", "stride", "size", "offset", "global_context")
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    STRIDE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    known: bool
    stride: _containers.RepeatedScalarFieldContainer[int]
    size: _containers.RepeatedScalarFieldContainer[int]
    offset: _containers.RepeatedScalarFieldContainer[float]
    global_context: bool
    def __init__(self, known: _Optional[bool] = ..., stride: _Optional[_Iterable[int]] = ..., size: _Optional[_Iterable[int]] = ..., offset: _Optional[_Iterable[float]] = ..., global_context: _Optional[bool] = ...) -> None: ...

class Layer(_message.Message):
    __slots__ = ("name", "op_type", "tensor", "shape", "dtype", "receptive_field", "symbolic_shape", "dim_names")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OP_TYPE_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    RECEPTIVE_FIELD_FIELD_NUMBER: _ClassVar[int]
    SYMBOLIC_SHAPE_FIELD_NUMBER: _ClassVar[int]
    DIM_NAMES_FIELD_NUMBER: _ClassVar[int]
    name: str
    op_type: str
    tensor: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: str
    receptive_field: ReceptiveField
    symbolic_shape: _containers.RepeatedScalarFieldContainer[int]
    dim_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., op_type: _Optional[str] = ..., tensor: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[str] = ..., receptive_field: _Optional[_Union[ReceptiveField, _Mapping]] = ..., symbolic_shape: _Optional[_Iterable[int]] = ..., dim_names: _Optional[_Iterable[str]] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("id", "name", "inputs", "outputs", "layers", "preprocessing", "labels", "size_bytes", "dynamic_batch", "opset", "created", "layer_count", "probe_shape")
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
    LAYER_COUNT_FIELD_NUMBER: _ClassVar[int]
    PROBE_SHAPE_FIELD_NUMBER: _ClassVar[int]
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
    layer_count: int
    probe_shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[TensorInfo, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[TensorInfo, _Mapping]]] = ..., layers: _Optional[_Iterable[_Union[Layer, _Mapping]]] = ..., preprocessing: _Optional[_Union[Preprocessing, _Mapping]] = ..., labels: _Optional[_Iterable[str]] = ..., size_bytes: _Optional[int] = ..., dynamic_batch: _Optional[bool] = ..., opset: _Optional[int] = ..., created: _Optional[str] = ..., layer_count: _Optional[int] = ..., probe_shape: _Optional[_Iterable[int]] = ...) -> None: ...

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
    __slots__ = ("model_id", "input", "layers", "render", "omit_values", "omit_statistics", "channels", "top_channels")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    RENDER_FIELD_NUMBER: _ClassVar[int]
    OMIT_VALUES_FIELD_NUMBER: _ClassVar[int]
    OMIT_STATISTICS_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    TOP_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    input: Input
    layers: _containers.RepeatedScalarFieldContainer[str]
    render: bool
    omit_values: bool
    omit_statistics: bool
    channels: _containers.RepeatedScalarFieldContainer[int]
    top_channels: int
    def __init__(self, model_id: _Optional[str] = ..., input: _Optional[_Union[Input, _Mapping]] = ..., layers: _Optional[_Iterable[str]] = ..., render: _Optional[bool] = ..., omit_values: _Optional[bool] = ..., omit_statistics: _Optional[bool] = ..., channels: _Optional[_Iterable[int]] = ..., top_channels: _Optional[int] = ...) -> None: ...

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
    __slots__ = ("tensor", "value", "stats", "png", "shown_channels")
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    SHOWN_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    tensor: str
    value: Tensor
    stats: ChannelStats
    png: bytes
    shown_channels: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, tensor: _Optional[str] = ..., value: _Optional[_Union[Tensor, _Mapping]] = ..., stats: _Optional[_Union[ChannelStats, _Mapping]] = ..., png: _Optional[bytes] = ..., shown_channels: _Optional[_Iterable[int]] = ...) -> None: ...

class ActivationsResponse(_message.Message):
    __slots__ = ("activations",)
    ACTIVATIONS_FIELD_NUMBER: _ClassVar[int]
    activations: _containers.RepeatedCompositeFieldContainer[Activation]
    def __init__(self, activations: _Optional[_Iterable[_Union[Activation, _Mapping]]] = ...) -> None: ...

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
    __slots__ = ("model_id", "input", "method", "has_target", "target", "output", "layer", "steps", "baseline", "samples", "noise", "seed", "rectifiers", "integration", "render", "target_weights", "wrt", "metrics", "pixels_per_step")
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
    TARGET_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    WRT_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    PIXELS_PER_STEP_FIELD_NUMBER: _ClassVar[int]
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
    target_weights: Tensor
    wrt: str
    metrics: _containers.RepeatedScalarFieldContainer[str]
    pixels_per_step: int
    def __init__(self, model_id: _Optional[str] = ..., input: _Optional[_Union[Input, _Mapping]] = ..., method: _Optional[str] = ..., has_target: _Optional[bool] = ..., target: _Optional[int] = ..., output: _Optional[str] = ..., layer: _Optional[str] = ..., steps: _Optional[int] = ..., baseline: _Optional[_Union[Tensor, _Mapping]] = ..., samples: _Optional[int] = ..., noise: _Optional[float] = ..., seed: _Optional[int] = ..., rectifiers: _Optional[_Union[Rectifiers, str]] = ..., integration: _Optional[str] = ..., render: _Optional[bool] = ..., target_weights: _Optional[_Union[Tensor, _Mapping]] = ..., wrt: _Optional[str] = ..., metrics: _Optional[_Iterable[str]] = ..., pixels_per_step: _Optional[int] = ...) -> None: ...

class AttributionResponse(_message.Message):
    __slots__ = ("map", "png", "target", "score", "output", "target_label", "layer_map", "layer", "warnings", "map_on_image", "metrics")
    MAP_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    TARGET_LABEL_FIELD_NUMBER: _ClassVar[int]
    LAYER_MAP_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    MAP_ON_IMAGE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    map: Tensor
    png: bytes
    target: _containers.RepeatedScalarFieldContainer[int]
    score: _containers.RepeatedScalarFieldContainer[float]
    output: str
    target_label: _containers.RepeatedScalarFieldContainer[str]
    layer_map: Tensor
    layer: str
    warnings: _containers.RepeatedScalarFieldContainer[str]
    map_on_image: Tensor
    metrics: _containers.RepeatedCompositeFieldContainer[FaithfulnessCurve]
    def __init__(self, map: _Optional[_Union[Tensor, _Mapping]] = ..., png: _Optional[bytes] = ..., target: _Optional[_Iterable[int]] = ..., score: _Optional[_Iterable[float]] = ..., output: _Optional[str] = ..., target_label: _Optional[_Iterable[str]] = ..., layer_map: _Optional[_Union[Tensor, _Mapping]] = ..., layer: _Optional[str] = ..., warnings: _Optional[_Iterable[str]] = ..., map_on_image: _Optional[_Union[Tensor, _Mapping]] = ..., metrics: _Optional[_Iterable[_Union[FaithfulnessCurve, _Mapping]]] = ...) -> None: ...

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

class OcclusionRequest(_message.Message):
    __slots__ = ("model_id", "input", "targets", "output", "window", "stride", "fill_value", "fill_mode", "score", "engine", "batch_size", "occluded", "tolerance")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    STRIDE_FIELD_NUMBER: _ClassVar[int]
    FILL_VALUE_FIELD_NUMBER: _ClassVar[int]
    FILL_MODE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    OCCLUDED_FIELD_NUMBER: _ClassVar[int]
    TOLERANCE_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    input: Input
    targets: _containers.RepeatedScalarFieldContainer[int]
    output: str
    window: _containers.RepeatedScalarFieldContainer[int]
    stride: _containers.RepeatedScalarFieldContainer[int]
    fill_value: float
    fill_mode: str
    score: str
    engine: str
    batch_size: int
    occluded: str
    tolerance: float
    def __init__(self, model_id: _Optional[str] = ..., input: _Optional[_Union[Input, _Mapping]] = ..., targets: _Optional[_Iterable[int]] = ..., output: _Optional[str] = ..., window: _Optional[_Iterable[int]] = ..., stride: _Optional[_Iterable[int]] = ..., fill_value: _Optional[float] = ..., fill_mode: _Optional[str] = ..., score: _Optional[str] = ..., engine: _Optional[str] = ..., batch_size: _Optional[int] = ..., occluded: _Optional[str] = ..., tolerance: _Optional[float] = ...) -> None: ...

class OcclusionProgress(_message.Message):
    __slots__ = ("done", "total")
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    done: int
    total: int
    def __init__(self, done: _Optional[int] = ..., total: _Optional[int] = ...) -> None: ...

class OcclusionResult(_message.Message):
    __slots__ = ("positions", "attribution", "png", "targets", "baseline_scores", "output", "target_labels", "engine", "window", "stride", "error_bound", "evaluated_positions")
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    BASELINE_SCORES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    TARGET_LABELS_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    STRIDE_FIELD_NUMBER: _ClassVar[int]
    ERROR_BOUND_FIELD_NUMBER: _ClassVar[int]
    EVALUATED_POSITIONS_FIELD_NUMBER: _ClassVar[int]
    positions: Tensor
    attribution: Tensor
    png: bytes
    targets: _containers.RepeatedScalarFieldContainer[int]
    baseline_scores: _containers.RepeatedScalarFieldContainer[float]
    output: str
    target_labels: _containers.RepeatedScalarFieldContainer[str]
    engine: str
    window: _containers.RepeatedScalarFieldContainer[int]
    stride: _containers.RepeatedScalarFieldContainer[int]
    error_bound: float
    evaluated_positions: int
    def __init__(self, positions: _Optional[_Union[Tensor, _Mapping]] = ..., attribution: _Optional[_Union[Tensor, _Mapping]] = ..., png: _Optional[bytes] = ..., targets: _Optional[_Iterable[int]] = ..., baseline_scores: _Optional[_Iterable[float]] = ..., output: _Optional[str] = ..., target_labels: _Optional[_Iterable[str]] = ..., engine: _Optional[str] = ..., window: _Optional[_Iterable[int]] = ..., stride: _Optional[_Iterable[int]] = ..., error_bound: _Optional[float] = ..., evaluated_positions: _Optional[int] = ...) -> None: ...

class OcclusionEvent(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: OcclusionProgress
    result: OcclusionResult
    def __init__(self, progress: _Optional[_Union[OcclusionProgress, _Mapping]] = ..., result: _Optional[_Union[OcclusionResult, _Mapping]] = ...) -> None: ...

class TopActivationsJob(_message.Message):
    __slots__ = ("layer", "channels", "k", "directions", "render")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    DIRECTIONS_FIELD_NUMBER: _ClassVar[int]
    RENDER_FIELD_NUMBER: _ClassVar[int]
    layer: str
    channels: _containers.RepeatedScalarFieldContainer[int]
    k: int
    directions: Tensor
    render: bool
    def __init__(self, layer: _Optional[str] = ..., channels: _Optional[_Iterable[int]] = ..., k: _Optional[int] = ..., directions: _Optional[_Union[Tensor, _Mapping]] = ..., render: _Optional[bool] = ...) -> None: ...

class EmbeddingJob(_message.Message):
    __slots__ = ("layer", "method", "perplexity", "seed", "render")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PERPLEXITY_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    RENDER_FIELD_NUMBER: _ClassVar[int]
    layer: str
    method: str
    perplexity: float
    seed: int
    render: bool
    def __init__(self, layer: _Optional[str] = ..., method: _Optional[str] = ..., perplexity: _Optional[float] = ..., seed: _Optional[int] = ..., render: _Optional[bool] = ...) -> None: ...

class DeadFiltersJob(_message.Message):
    __slots__ = ("layers",)
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    layers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, layers: _Optional[_Iterable[str]] = ...) -> None: ...

class DatasetJobStart(_message.Message):
    __slots__ = ("model_id", "top_activations", "embedding", "dead_filters", "folder", "expected", "others")
    class OthersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Tensor
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    TOP_ACTIVATIONS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    DEAD_FILTERS_FIELD_NUMBER: _ClassVar[int]
    FOLDER_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FIELD_NUMBER: _ClassVar[int]
    OTHERS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    top_activations: TopActivationsJob
    embedding: EmbeddingJob
    dead_filters: DeadFiltersJob
    folder: str
    expected: int
    others: _containers.MessageMap[str, Tensor]
    def __init__(self, model_id: _Optional[str] = ..., top_activations: _Optional[_Union[TopActivationsJob, _Mapping]] = ..., embedding: _Optional[_Union[EmbeddingJob, _Mapping]] = ..., dead_filters: _Optional[_Union[DeadFiltersJob, _Mapping]] = ..., folder: _Optional[str] = ..., expected: _Optional[int] = ..., others: _Optional[_Mapping[str, Tensor]] = ...) -> None: ...

class DatasetItem(_message.Message):
    __slots__ = ("encoded", "path", "tensor", "name")
    ENCODED_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    encoded: bytes
    path: str
    tensor: Tensor
    name: str
    def __init__(self, encoded: _Optional[bytes] = ..., path: _Optional[str] = ..., tensor: _Optional[_Union[Tensor, _Mapping]] = ..., name: _Optional[str] = ...) -> None: ...

class DatasetItems(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[DatasetItem]
    def __init__(self, items: _Optional[_Iterable[_Union[DatasetItem, _Mapping]]] = ...) -> None: ...

class DatasetJobRequest(_message.Message):
    __slots__ = ("start", "items")
    START_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    start: DatasetJobStart
    items: DatasetItems
    def __init__(self, start: _Optional[_Union[DatasetJobStart, _Mapping]] = ..., items: _Optional[_Union[DatasetItems, _Mapping]] = ...) -> None: ...

class ItemRef(_message.Message):
    __slots__ = ("index", "name")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    index: int
    name: str
    def __init__(self, index: _Optional[int] = ..., name: _Optional[str] = ...) -> None: ...

class JobProgress(_message.Message):
    __slots__ = ("done", "skipped", "total", "seconds", "rate", "eta")
    DONE_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    ETA_FIELD_NUMBER: _ClassVar[int]
    done: int
    skipped: int
    total: int
    seconds: float
    rate: float
    eta: float
    def __init__(self, done: _Optional[int] = ..., skipped: _Optional[int] = ..., total: _Optional[int] = ..., seconds: _Optional[float] = ..., rate: _Optional[float] = ..., eta: _Optional[float] = ...) -> None: ...

class SkippedItem(_message.Message):
    __slots__ = ("item", "reason")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    item: ItemRef
    reason: str
    def __init__(self, item: _Optional[_Union[ItemRef, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class Hit(_message.Message):
    __slots__ = ("image", "value", "location", "box")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    image: ItemRef
    value: float
    location: _containers.RepeatedScalarFieldContainer[int]
    box: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, image: _Optional[_Union[ItemRef, _Mapping]] = ..., value: _Optional[float] = ..., location: _Optional[_Iterable[int]] = ..., box: _Optional[_Iterable[int]] = ...) -> None: ...

class ChannelHits(_message.Message):
    __slots__ = ("layer", "channel", "direction", "hits", "png")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    layer: str
    channel: int
    direction: bool
    hits: _containers.RepeatedCompositeFieldContainer[Hit]
    png: bytes
    def __init__(self, layer: _Optional[str] = ..., channel: _Optional[int] = ..., direction: _Optional[bool] = ..., hits: _Optional[_Iterable[_Union[Hit, _Mapping]]] = ..., png: _Optional[bytes] = ...) -> None: ...

class EmbeddingResult(_message.Message):
    __slots__ = ("layer", "method", "coords", "images", "perplexity", "png", "scatter_png")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    COORDS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    PERPLEXITY_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    SCATTER_PNG_FIELD_NUMBER: _ClassVar[int]
    layer: str
    method: str
    coords: Tensor
    images: _containers.RepeatedCompositeFieldContainer[ItemRef]
    perplexity: float
    png: bytes
    scatter_png: bytes
    def __init__(self, layer: _Optional[str] = ..., method: _Optional[str] = ..., coords: _Optional[_Union[Tensor, _Mapping]] = ..., images: _Optional[_Iterable[_Union[ItemRef, _Mapping]]] = ..., perplexity: _Optional[float] = ..., png: _Optional[bytes] = ..., scatter_png: _Optional[bytes] = ...) -> None: ...

class DeadFiltersResult(_message.Message):
    __slots__ = ("layers", "samples")
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    layers: _containers.RepeatedCompositeFieldContainer[LayerDeadFilters]
    samples: int
    def __init__(self, layers: _Optional[_Iterable[_Union[LayerDeadFilters, _Mapping]]] = ..., samples: _Optional[int] = ...) -> None: ...

class DatasetJobEvent(_message.Message):
    __slots__ = ("progress", "skipped", "channel_hits", "embedding", "dead_filters", "done")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_HITS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    DEAD_FILTERS_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    progress: JobProgress
    skipped: SkippedItem
    channel_hits: ChannelHits
    embedding: EmbeddingResult
    dead_filters: DeadFiltersResult
    done: JobProgress
    def __init__(self, progress: _Optional[_Union[JobProgress, _Mapping]] = ..., skipped: _Optional[_Union[SkippedItem, _Mapping]] = ..., channel_hits: _Optional[_Union[ChannelHits, _Mapping]] = ..., embedding: _Optional[_Union[EmbeddingResult, _Mapping]] = ..., dead_filters: _Optional[_Union[DeadFiltersResult, _Mapping]] = ..., done: _Optional[_Union[JobProgress, _Mapping]] = ...) -> None: ...

class OptimizationProgress(_message.Message):
    __slots__ = ("step", "steps", "loss")
    STEP_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    step: int
    steps: int
    loss: float
    def __init__(self, step: _Optional[int] = ..., steps: _Optional[int] = ..., loss: _Optional[float] = ...) -> None: ...

class InvertRequest(_message.Message):
    __slots__ = ("model_id", "input", "layer", "steps", "lr", "tv_weight", "norm_weight", "jitter", "init", "seed")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    LR_FIELD_NUMBER: _ClassVar[int]
    TV_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    NORM_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    JITTER_FIELD_NUMBER: _ClassVar[int]
    INIT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    input: Input
    layer: str
    steps: int
    lr: float
    tv_weight: float
    norm_weight: float
    jitter: int
    init: str
    seed: int
    def __init__(self, model_id: _Optional[str] = ..., input: _Optional[_Union[Input, _Mapping]] = ..., layer: _Optional[str] = ..., steps: _Optional[int] = ..., lr: _Optional[float] = ..., tv_weight: _Optional[float] = ..., norm_weight: _Optional[float] = ..., jitter: _Optional[int] = ..., init: _Optional[str] = ..., seed: _Optional[int] = ...) -> None: ...

class InversionResult(_message.Message):
    __slots__ = ("images", "array", "png", "code_error", "history", "layer")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    ARRAY_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    CODE_ERROR_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    images: Tensor
    array: Tensor
    png: bytes
    code_error: _containers.RepeatedScalarFieldContainer[float]
    history: Tensor
    layer: str
    def __init__(self, images: _Optional[_Union[Tensor, _Mapping]] = ..., array: _Optional[_Union[Tensor, _Mapping]] = ..., png: _Optional[bytes] = ..., code_error: _Optional[_Iterable[float]] = ..., history: _Optional[_Union[Tensor, _Mapping]] = ..., layer: _Optional[str] = ...) -> None: ...

class InvertEvent(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: OptimizationProgress
    result: InversionResult
    def __init__(self, progress: _Optional[_Union[OptimizationProgress, _Mapping]] = ..., result: _Optional[_Union[InversionResult, _Mapping]] = ...) -> None: ...

class VisualizeRequest(_message.Message):
    __slots__ = ("model_id", "targets", "layer", "channel", "steps", "lr", "l2", "blur_every", "blur_sigma", "jitter", "seed", "batch", "norm_percentile")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    LR_FIELD_NUMBER: _ClassVar[int]
    L2_FIELD_NUMBER: _ClassVar[int]
    BLUR_EVERY_FIELD_NUMBER: _ClassVar[int]
    BLUR_SIGMA_FIELD_NUMBER: _ClassVar[int]
    JITTER_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    NORM_PERCENTILE_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    targets: _containers.RepeatedScalarFieldContainer[int]
    layer: str
    channel: int
    steps: int
    lr: float
    l2: float
    blur_every: int
    blur_sigma: float
    jitter: int
    seed: int
    batch: int
    norm_percentile: float
    def __init__(self, model_id: _Optional[str] = ..., targets: _Optional[_Iterable[int]] = ..., layer: _Optional[str] = ..., channel: _Optional[int] = ..., steps: _Optional[int] = ..., lr: _Optional[float] = ..., l2: _Optional[float] = ..., blur_every: _Optional[int] = ..., blur_sigma: _Optional[float] = ..., jitter: _Optional[int] = ..., seed: _Optional[int] = ..., batch: _Optional[int] = ..., norm_percentile: _Optional[float] = ...) -> None: ...

class VisualizationResult(_message.Message):
    __slots__ = ("images", "array", "png", "score_history", "scores", "probabilities", "targets", "target_labels", "tensor")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    ARRAY_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    SCORE_HISTORY_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    TARGET_LABELS_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    images: Tensor
    array: Tensor
    png: bytes
    score_history: Tensor
    scores: _containers.RepeatedScalarFieldContainer[float]
    probabilities: _containers.RepeatedScalarFieldContainer[float]
    targets: _containers.RepeatedScalarFieldContainer[int]
    target_labels: _containers.RepeatedScalarFieldContainer[str]
    tensor: str
    def __init__(self, images: _Optional[_Union[Tensor, _Mapping]] = ..., array: _Optional[_Union[Tensor, _Mapping]] = ..., png: _Optional[bytes] = ..., score_history: _Optional[_Union[Tensor, _Mapping]] = ..., scores: _Optional[_Iterable[float]] = ..., probabilities: _Optional[_Iterable[float]] = ..., targets: _Optional[_Iterable[int]] = ..., target_labels: _Optional[_Iterable[str]] = ..., tensor: _Optional[str] = ...) -> None: ...

class VisualizeEvent(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: OptimizationProgress
    result: VisualizationResult
    def __init__(self, progress: _Optional[_Union[OptimizationProgress, _Mapping]] = ..., result: _Optional[_Union[VisualizationResult, _Mapping]] = ...) -> None: ...

class AdversarialRequest(_message.Message):
    __slots__ = ("model_id", "input", "method", "epsilon", "step_size", "steps", "target", "norm", "random_start", "seed", "bounds")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    STEP_SIZE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    NORM_FIELD_NUMBER: _ClassVar[int]
    RANDOM_START_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    BOUNDS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    input: Input
    method: str
    epsilon: float
    step_size: float
    steps: int
    target: int
    norm: str
    random_start: bool
    seed: int
    bounds: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, model_id: _Optional[str] = ..., input: _Optional[_Union[Input, _Mapping]] = ..., method: _Optional[str] = ..., epsilon: _Optional[float] = ..., step_size: _Optional[float] = ..., steps: _Optional[int] = ..., target: _Optional[int] = ..., norm: _Optional[str] = ..., random_start: _Optional[bool] = ..., seed: _Optional[int] = ..., bounds: _Optional[_Iterable[float]] = ...) -> None: ...

class Prediction(_message.Message):
    __slots__ = ("classes", "probabilities", "labels")
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    classes: _containers.RepeatedScalarFieldContainer[int]
    probabilities: _containers.RepeatedScalarFieldContainer[float]
    labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, classes: _Optional[_Iterable[int]] = ..., probabilities: _Optional[_Iterable[float]] = ..., labels: _Optional[_Iterable[str]] = ...) -> None: ...

class AdversarialResult(_message.Message):
    __slots__ = ("images", "array", "png", "prediction", "adversarial_prediction", "success", "linf", "l2", "label")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    ARRAY_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    ADVERSARIAL_PREDICTION_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    LINF_FIELD_NUMBER: _ClassVar[int]
    L2_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    images: Tensor
    array: Tensor
    png: bytes
    prediction: _containers.RepeatedCompositeFieldContainer[Prediction]
    adversarial_prediction: _containers.RepeatedCompositeFieldContainer[Prediction]
    success: _containers.RepeatedScalarFieldContainer[bool]
    linf: _containers.RepeatedScalarFieldContainer[float]
    l2: _containers.RepeatedScalarFieldContainer[float]
    label: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, images: _Optional[_Union[Tensor, _Mapping]] = ..., array: _Optional[_Union[Tensor, _Mapping]] = ..., png: _Optional[bytes] = ..., prediction: _Optional[_Iterable[_Union[Prediction, _Mapping]]] = ..., adversarial_prediction: _Optional[_Iterable[_Union[Prediction, _Mapping]]] = ..., success: _Optional[_Iterable[bool]] = ..., linf: _Optional[_Iterable[float]] = ..., l2: _Optional[_Iterable[float]] = ..., label: _Optional[_Iterable[int]] = ...) -> None: ...

class AdversarialEvent(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: OptimizationProgress
    result: AdversarialResult
    def __init__(self, progress: _Optional[_Union[OptimizationProgress, _Mapping]] = ..., result: _Optional[_Union[AdversarialResult, _Mapping]] = ...) -> None: ...

class CorrespondenceRequest(_message.Message):
    __slots__ = ("model_id", "input", "layers", "points", "hypercolumn", "reflections")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    HYPERCOLUMN_FIELD_NUMBER: _ClassVar[int]
    REFLECTIONS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    input: Input
    layers: _containers.RepeatedScalarFieldContainer[str]
    points: Tensor
    hypercolumn: bool
    reflections: bool
    def __init__(self, model_id: _Optional[str] = ..., input: _Optional[_Union[Input, _Mapping]] = ..., layers: _Optional[_Iterable[str]] = ..., points: _Optional[_Union[Tensor, _Mapping]] = ..., hypercolumn: _Optional[bool] = ..., reflections: _Optional[bool] = ...) -> None: ...

class CorrespondenceResponse(_message.Message):
    __slots__ = ("points", "matches", "similarity", "png", "layers", "mirrored")
    POINTS_FIELD_NUMBER: _ClassVar[int]
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    MIRRORED_FIELD_NUMBER: _ClassVar[int]
    points: Tensor
    matches: Tensor
    similarity: _containers.RepeatedScalarFieldContainer[float]
    png: bytes
    layers: _containers.RepeatedScalarFieldContainer[str]
    mirrored: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, points: _Optional[_Union[Tensor, _Mapping]] = ..., matches: _Optional[_Union[Tensor, _Mapping]] = ..., similarity: _Optional[_Iterable[float]] = ..., png: _Optional[bytes] = ..., layers: _Optional[_Iterable[str]] = ..., mirrored: _Optional[_Iterable[bool]] = ...) -> None: ...

class FaithfulnessCurve(_message.Message):
    __slots__ = ("metric", "fractions", "scores", "auc")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    FRACTIONS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    AUC_FIELD_NUMBER: _ClassVar[int]
    metric: str
    fractions: _containers.RepeatedScalarFieldContainer[float]
    scores: Tensor
    auc: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, metric: _Optional[str] = ..., fractions: _Optional[_Iterable[float]] = ..., scores: _Optional[_Union[Tensor, _Mapping]] = ..., auc: _Optional[_Iterable[float]] = ...) -> None: ...

class AuditRequest(_message.Message):
    __slots__ = ("model_id", "data", "labels", "human", "config_toml")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    HUMAN_FIELD_NUMBER: _ClassVar[int]
    CONFIG_TOML_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    data: str
    labels: str
    human: str
    config_toml: str
    def __init__(self, model_id: _Optional[str] = ..., data: _Optional[str] = ..., labels: _Optional[str] = ..., human: _Optional[str] = ..., config_toml: _Optional[str] = ...) -> None: ...

class AuditCheck(_message.Message):
    __slots__ = ("name", "status", "message", "seconds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    status: str
    message: str
    seconds: float
    def __init__(self, name: _Optional[str] = ..., status: _Optional[str] = ..., message: _Optional[str] = ..., seconds: _Optional[float] = ...) -> None: ...

class AuditReport(_message.Message):
    __slots__ = ("passed", "errored", "report_json", "junit_xml", "report_html")
    PASSED_FIELD_NUMBER: _ClassVar[int]
    ERRORED_FIELD_NUMBER: _ClassVar[int]
    REPORT_JSON_FIELD_NUMBER: _ClassVar[int]
    JUNIT_XML_FIELD_NUMBER: _ClassVar[int]
    REPORT_HTML_FIELD_NUMBER: _ClassVar[int]
    passed: bool
    errored: bool
    report_json: bytes
    junit_xml: bytes
    report_html: bytes
    def __init__(self, passed: _Optional[bool] = ..., errored: _Optional[bool] = ..., report_json: _Optional[bytes] = ..., junit_xml: _Optional[bytes] = ..., report_html: _Optional[bytes] = ...) -> None: ...

class AuditEvent(_message.Message):
    __slots__ = ("progress", "check", "report")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    CHECK_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    progress: JobProgress
    check: AuditCheck
    report: AuditReport
    def __init__(self, progress: _Optional[_Union[JobProgress, _Mapping]] = ..., check: _Optional[_Union[AuditCheck, _Mapping]] = ..., report: _Optional[_Union[AuditReport, _Mapping]] = ...) -> None: ...
