"""Embeddings of CNN codes: t-SNE (or PCA) of one layer's activations over a dataset, with the
thumbnails that ``render/dataset_figures.py`` draws as a grid of the images and as a scatter.

van der Maaten & Hinton, "Visualizing Data using t-SNE" (JMLR 2008), who also recommend reducing
to 50 dimensions with PCA first; Karpathy's "t-SNE visualization of CNN codes" for the CNN code
(the 4096-d fc7 of AlexNet: the tensor that feeds the classifier, after its ReLU) and for
snapping the embedded images to a square grid (drawn in ``render/dataset_figures.py``).

Memory: the codes of every image (N × D floats: spatial codes are average-pooled to one vector
per image) and thumbnails of a seeded reservoir sample of at most ``MAX_GRID_IMAGES`` images.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from threadpoolctl import threadpool_limits

from convscope.choices import parse
from convscope.data.pictures import shrink
from convscope.data.streams import Ref, Sample
from convscope.errors import InvalidArgument
from convscope.graph.analysis import data_tensors, producers
from convscope.model.types import ModelRecord
from convscope.runtime.context import available_cores
from convscope_client.choices import EmbeddingMethod

PCA_DIMENSIONS = 50  # before t-SNE (van der Maaten & Hinton 2008, §4)
MAX_GRID_IMAGES = 1024  # the grid and scatter draw a random sample of at most this many images
THUMBNAIL = 48  # grid cells: large enough to tell what a photo shows at the figure's own size
TSNE_THREADS = max(1, available_cores() // 2)
MAX_CODE_FLOATS = 1 << 28  # 1 GiB of float32 codes: refuse before running out of memory

CLASSIFIER_OPS = frozenset({"Gemm", "MatMul", "Conv"})
# Between the classifier and the model output: normalizers, reshapes, pooling of a conv classifier.
HEAD_OPS = frozenset(
    {
        "Softmax",
        "LogSoftmax",
        "Sigmoid",
        "Identity",
        "Dropout",
        "Flatten",
        "Reshape",
        "Squeeze",
        "Cast",
        "Add",
        "Relu",
        "GlobalAveragePool",
        "GlobalMaxPool",
        "AveragePool",
        "ReduceMean",
    }
)


@dataclass(frozen=True)
class EmbeddingResult:
    layer: str
    method: EmbeddingMethod
    coords: np.ndarray  # (N, 2)
    images: tuple[Ref, ...]
    indices: np.ndarray  # position in the stream of each row
    perplexity: float  # the one used (t-SNE needs perplexity < N / 3)
    png: bytes = b""  # the grid, drawn by render/dataset_figures.py
    scatter_png: bytes = b""
    # The rows drawn (a random sample of at most MAX_GRID_IMAGES) and their pictures, longer
    # side at most THUMBNAIL: empty when no figure was asked for.
    thumbnail_rows: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    thumbnails: tuple[np.ndarray, ...] = dataclasses.field(default=(), repr=False)


def code_layer(model: onnx.ModelProto, record: ModelRecord) -> str:
    """The CNN code: the data input of the final classifier (Gemm/MatMul, or a conv classifier
    as in SqueezeNet), found by walking back from the first model output through the head."""
    graph = model.graph
    made_by = producers(graph)
    carrying = set(data_tensors(graph))
    tensor = record.outputs[0].name
    while tensor in made_by:
        _, node = made_by[tensor]
        inputs = [name for name in node.input if name in carrying]
        if len(inputs) != 1:
            break
        if node.op_type in CLASSIFIER_OPS:
            record.layer(inputs[0])
            return inputs[0]
        if node.op_type not in HEAD_OPS:
            break
        tensor = inputs[0]
    raise InvalidArgument("could not find the tensor that feeds the model's classifier; name a layer for the embedding")


def codes_of(value: np.ndarray) -> np.ndarray:
    """One vector per sample: spatial codes average-pooled over their positions."""
    if value.ndim <= 1:
        return value.reshape(-1, 1).astype(np.float32)
    if value.ndim == 2:
        return value.astype(np.float32)
    return value.reshape(value.shape[0], value.shape[1], -1).mean(axis=2, dtype=np.float32)


class Embedding:
    """Collects codes over batches, then embeds them in 2-D and draws the figures."""

    def __init__(
        self,
        record: ModelRecord,
        layer: str,
        *,
        method: EmbeddingMethod | str = EmbeddingMethod.TSNE,
        perplexity: float = 30.0,
        seed: int = 0,
        render: bool = True,
    ) -> None:
        method = parse(EmbeddingMethod, method)
        if not perplexity > 0:
            raise InvalidArgument(f"perplexity must be positive, got {perplexity}")
        record.layer(layer)  # an unknown layer: NOT_FOUND before any data is read
        self.layer = layer
        self.method = method
        self.perplexity = float(perplexity)
        self.seed = int(seed)
        self.render = render
        self._codes: list[np.ndarray] = []
        self._refs: list[Ref] = []
        self._indices: list[int] = []
        self._rng = np.random.default_rng(seed)
        self._reservoir: list[tuple[int, np.ndarray]] = []  # (row, thumbnail)
        self._seen = 0

    @property
    def tensors(self) -> list[str]:
        return [self.layer]

    @property
    def needs_pictures(self) -> bool:
        return self.render

    def add(self, samples: Sequence[Sample], values: dict[str, np.ndarray]) -> None:
        self.add_reduced(samples, self.reduce(values))

    def reduce(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """What ``add`` keeps of a batch's tensors (computed where the batch ran, for Ray)."""
        return {"codes": codes_of(values[self.layer])}

    def add_reduced(self, samples: Sequence[Sample], reduced: dict[str, np.ndarray]) -> None:
        codes = reduced["codes"]
        if (len(self._refs) + len(samples)) * codes.shape[1] > MAX_CODE_FLOATS:
            raise InvalidArgument(
                f"the codes of {self.layer!r} ({codes.shape[1]} floats per image) would exceed "
                f"{MAX_CODE_FLOATS * 4 >> 30} GiB; embed fewer images or a smaller layer"
            )
        for sample in samples:
            row = len(self._refs)
            self._refs.append(sample.ref)
            self._indices.append(sample.index)
            if self.render and sample.picture is not None:
                self._sample_thumbnail(row, sample.picture)
        self._codes.append(codes)

    def _sample_thumbnail(self, row: int, picture: np.ndarray) -> None:
        """Reservoir sampling: every image has the same chance to be drawn, memory stays bounded."""
        self._seen += 1
        if len(self._reservoir) < MAX_GRID_IMAGES:
            self._reservoir.append((row, shrink(picture, THUMBNAIL)[0]))
            return
        slot = int(self._rng.integers(0, self._seen))
        if slot < MAX_GRID_IMAGES:
            self._reservoir[slot] = (row, shrink(picture, THUMBNAIL)[0])

    def result(self) -> EmbeddingResult:
        count = len(self._refs)
        if count < 2:
            raise InvalidArgument(f"an embedding needs at least 2 images, the dataset gave {count}")
        codes = np.concatenate(self._codes)
        coords, perplexity = embed(codes, self.method, perplexity=self.perplexity, seed=self.seed)
        return EmbeddingResult(
            self.layer,
            self.method,
            coords,
            tuple(self._refs),
            np.asarray(self._indices, np.int64),
            perplexity,
            thumbnail_rows=np.array([row for row, _ in self._reservoir], np.int64),
            thumbnails=tuple(thumbnail for _, thumbnail in self._reservoir),
        )


def embed(codes: np.ndarray, method: EmbeddingMethod, *, perplexity: float = 30.0, seed: int = 0) -> tuple[np.ndarray, float]:
    """(N, D) codes → (N, 2) coordinates, and the perplexity used (t-SNE only)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    count, dimensions = codes.shape
    data = np.nan_to_num(codes.astype(np.float32))
    if method is EmbeddingMethod.PCA or count < 4:
        components = min(2, count, dimensions)
        coords = PCA(components, random_state=seed).fit_transform(data) if components else np.zeros((count, 0))
        return _two_columns(coords).astype(np.float32), 0.0
    if dimensions > PCA_DIMENSIONS and count > PCA_DIMENSIONS:
        data = PCA(PCA_DIMENSIONS, random_state=seed).fit_transform(data).astype(np.float32)
    used = float(min(perplexity, (count - 1) / 3))
    tsne = TSNE(2, perplexity=used, init="pca", learning_rate="auto", random_state=seed)
    # OpenMP threads busy-wait; beside onnxruntime's pool on the same cores they stall each
    # other, so t-SNE gets half the cores.
    with threadpool_limits(TSNE_THREADS, user_api="openmp"):
        return tsne.fit_transform(data).astype(np.float32), used


def _two_columns(coords: np.ndarray) -> np.ndarray:
    if coords.shape[1] == 2:
        return coords
    return np.concatenate([coords, np.zeros((len(coords), 2 - coords.shape[1]), coords.dtype)], axis=1)
