"""Results as small dataclasses holding numpy arrays."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]  # -1 where symbolic


@dataclass(frozen=True)
class ReceptiveField:
    """The input pixels a unit sees: unit (y, x) covers ``offset ± (size − 1) / 2 + (y, x)·stride``."""

    stride: tuple[int, int]
    size: tuple[int, int]
    offset: tuple[float, float]  # centre of unit (0, 0) in input pixels
    global_context: bool = False  # also depends on the whole image through pooled context


@dataclass(frozen=True)
class LayerInfo:
    name: str  # producing node
    op_type: str
    tensor: str  # what requests refer to
    shape: tuple[int, ...]  # at batch 1
    dtype: str
    receptive_field: ReceptiveField | None = None  # None: not derivable for this tensor
    symbolic_shape: tuple[int, ...] = ()  # -1 where the size follows the input's symbolic sizes
    dim_names: tuple[str, ...] = ()  # their names ("" where fixed)


@dataclass(frozen=True)
class ModelInfo:
    id: str
    name: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    layers: tuple[LayerInfo, ...]
    labels: tuple[str, ...] = ()
    preprocessing: dict[str, object] = field(default_factory=dict)
    dynamic_batch: bool = True
    size_bytes: int = 0
    layer_count: int = 0  # ``layers`` is empty in list_models; this is not
    probe_shape: tuple[int, ...] = ()  # the input shape the layer table was taken at


@dataclass(frozen=True)
class ChannelStats:
    mean: np.ndarray
    max: np.ndarray
    zero_fraction: np.ndarray


@dataclass(frozen=True)
class Activation:
    tensor: str
    value: np.ndarray | None
    stats: ChannelStats | None  # None when statistics=False
    png: bytes
    shown_channels: tuple[int, ...] = ()  # the channels the PNG draws, in its order


@dataclass(frozen=True)
class Filters:
    node: str
    weights: np.ndarray
    png: bytes
    smoothness: np.ndarray  # per output filter; NaN for 1×1 kernels
    mean_smoothness: float


@dataclass(frozen=True)
class Attribution:
    method: str
    map: np.ndarray  # input-shaped; [N, H, W] for saliency and grad_cam
    png: bytes  # the first sample's map over its image
    target: int | list[int]  # the entry scored (per sample when the batch has several)
    score: float | list[float]  # the score's value, as the model gives it
    output: str  # the tensor scored
    target_label: str | list[str] = ""
    layer_map: np.ndarray | None = None  # grad_cam at the layer, before upsampling
    layer: str = ""
    warnings: tuple[str, ...] = ()  # why the map is all zero, where it is
    map_on_image: np.ndarray | None = None  # images: the first map on the image as sent, H×W
    metrics: dict[str, FaithfulnessCurve] = field(default_factory=dict)  # "deletion"/"insertion", when asked for


@dataclass(frozen=True)
class FaithfulnessCurve:
    """A map's deletion or insertion curve (Petsiuk et al. 2018): the target's softmax probability
    as the most important pixels are removed (or restored into a blurred copy)."""

    fractions: np.ndarray  # [S] share of pixels changed
    scores: np.ndarray  # [N, S]
    auc: np.ndarray  # [N]


@dataclass(frozen=True)
class Occlusion:
    """Occlusion sensitivity of one image (Zeiler & Fergus 2014)."""

    positions: np.ndarray  # [targets, Ho, Wo]: the score with the box at each position
    attribution: np.ndarray  # [targets, *input without batch]: Captum's Occlusion attribution
    png: bytes  # each target's attribution over the image, side by side
    target: int | list[int]  # a list when a list was asked for
    baseline_score: float | list[float]  # the unoccluded score(s)
    output: str  # the tensor scored
    target_label: str | list[str] = ""
    engine: str = ""  # "batched", "incremental" or "approximate": what computed the numbers
    window: tuple[int, int] = (32, 32)
    stride: tuple[int, int] = (16, 16)
    error_bound: float = 0.0  # engine "approximate": the largest error it allowed per position
    evaluated: int = 0  # positions the model ran on (the rest were interpolated)


# -- dataset jobs


@dataclass(frozen=True)
class Progress:
    done: int  # images run through the model
    skipped: int
    total: int | None  # None: unknown
    seconds: float
    rate: float  # images per second
    eta: float | None  # seconds left; None: unknown


@dataclass(frozen=True)
class SkippedItem:
    image: int | str  # index in the stream, or path / given name
    reason: str


@dataclass(frozen=True)
class Hit:
    image: int | str  # index in the stream, or path / given name
    value: float
    location: tuple[int, int]  # (y, x) in the feature map
    box: tuple[int, int, int, int] | None  # (y0, x0, y1, x1) input pixels, half-open, clipped; None: unknown field


class TopActivations(dict[int, list[Hit]]):
    """Channel (or direction row) → its best hits, best first; with the figures and the job's counts."""

    def __init__(
        self,
        hits: dict[int, list[Hit]],
        *,
        layer: str,
        pngs: dict[int, bytes],
        skipped: list[SkippedItem],
        images: int,
    ) -> None:
        super().__init__(hits)
        self.layer = layer
        self.pngs = pngs  # per key: the k crops with their values beside the images with the box
        self.skipped = skipped
        self.images = images  # images run through the model


@dataclass(frozen=True)
class Embedding:
    coords: np.ndarray  # (N, 2)
    images: list[int | str]  # what each row is: index in the stream, or path / given name
    png: bytes  # the images snapped to a square grid
    scatter_png: bytes = b""  # thumbnails at their coordinates
    layer: str = ""
    method: str = "tsne"
    perplexity: float = 0.0  # as used (t-SNE)
    skipped: list[SkippedItem] = field(default_factory=list)


class DeadFilterFractions(dict[str, np.ndarray]):
    """Layer → per channel, the fraction of images on which the channel is zero everywhere."""

    def __init__(self, fractions: dict[str, np.ndarray], *, samples: int, skipped: list[SkippedItem]) -> None:
        super().__init__(fractions)
        self.samples = samples
        self.skipped = skipped


# -- images made by gradients


@dataclass(frozen=True)
class Prediction:
    """Top-5 classes of one sample, most probable first."""

    classes: list[int]
    probabilities: list[float]
    labels: list[str]


@dataclass(frozen=True)
class Inversion:
    """An image whose code at ``layer`` matches the input's (Mahendran & Vedaldi 2015)."""

    image: np.ndarray  # uint8 H×W×3 (N×H×W×3 for a batch), the model's normalization undone
    array: np.ndarray  # the model input
    png: bytes  # original | inversion
    code_error: float | list[float]  # ‖Φ(x) − Φ₀‖² / ‖Φ₀‖² at the result
    history: np.ndarray  # [steps, 2]: loss, code error per step
    layer: str


@dataclass(frozen=True)
class Synthesis:
    """Class models or unit visualizations made by gradient ascent."""

    images: np.ndarray  # uint8 [N, H, W, 3]
    array: np.ndarray  # the model input
    png: bytes  # one image, or a labelled grid
    score_history: np.ndarray  # [steps, N]
    scores: list[float]  # the objective at the result
    probabilities: list[float]  # class models: the target's softmax probability
    targets: list[int]  # class or channel per sample
    target_labels: list[str]
    tensor: str  # what was maximized


@dataclass(frozen=True)
class Adversarial:
    """An adversarial example (FGSM or PGD) and what the model made of it."""

    image: np.ndarray | None  # uint8 H×W×3 (N×H×W×3 for a batch); None for array inputs
    array: np.ndarray  # the adversarial model input
    png: bytes  # original | amplified perturbation | adversarial, top-5 under each
    prediction: Prediction | list[Prediction]
    adversarial_prediction: Prediction | list[Prediction]
    success: bool | list[bool]
    linf: float | list[float]  # of the perturbation: pixels in [0, 1] for images, else input units
    l2: float | list[float]
    label: int | list[int]  # the class attacked away from, or the target


@dataclass(frozen=True)
class Correspondence:
    """Matches in image B for points of image A (Long, Zhang & Darrell 2014)."""

    points: np.ndarray  # [N, 2] (y, x) pixels of A as sent
    matches: np.ndarray  # [N, 2] (y, x) pixels of B as sent
    similarity: np.ndarray  # [N] cosine similarity of each match
    png: bytes  # A | B with match lines
    layers: list[str]
    mirrored: np.ndarray  # [N] bool: the match was found in B mirrored left-right


@dataclass(frozen=True)
class AuditCheck:
    name: str
    status: str  # "passed", "failed", "error", "disabled"
    message: str
    seconds: float


@dataclass(frozen=True)
class AuditReport:
    """An audit's verdict and its three files, by name: report.json, junit.xml, report.html."""

    passed: bool
    errored: bool  # a check raised and its config did not allow it
    checks: list[AuditCheck]
    files: dict[str, bytes]
