"""The gradient engine under every gradient method: seeds, batched backward runs, targets.

A score is one entry of a tensor (a model output or any intermediate) per sample, addressed by
a flat index into one sample's tensor — a class logit, a box coordinate, a pixel of a
segmentation map, or a unit of a hidden layer — or a weighted sum Σ w·y over one sample's
tensor (a segmentation class mask, one detection box's entries, as pytorch-grad-cam's
segmentation and detection targets).  Its gradient comes from the backward graph
(graph/backward) run by onnxruntime with the seed one-hot, or the weights themselves.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from convscope.choices import parse
from convscope.errors import InvalidArgument
from convscope.graph.backward import grad_output_name, seed_input_name, top_target_name
from convscope.model.preprocessing import split_feeds
from convscope.model.types import ModelRecord
from convscope.runtime.context import MethodContext, available_cores, in_flight, parallel_runs, worker_threads
from convscope.runtime.graphs import BackwardGraph, GraphSpec
from convscope.runtime.sessions import iter_batches
from convscope_client.choices import Rectifier, RectifierScope

# A backward run keeps every forward activation and about as many gradients alive.
BACKWARD_MEMORY_FACTOR = 3
# On the CPU provider a backward run is fastest with its activations this small: every saved
# activation is read again by the backward half, and a large batch evicts them from cache
# between the two.  Measured on EfficientNet-Lite0 (50 MiB of layer tensors per sample,
# single-threaded CPU time, batch 8 in chunks): 1 sample 3.5×, 2: 3.7×, 4: 4.2×, 8: 4.7× the
# plain batch-8 forward; ResNet-18 (22 MiB) 2.8× at every chunk size (docs/backward_speed.md).
BACKWARD_CACHE_BYTES = 64 << 20


WEIGHTED_TARGET = -1  # the per-sample target reported for a weighted score


@dataclass(frozen=True)
class Score:
    """What is differentiated: ``tensor`` at flat index ``targets[n]`` for sample n, or, with
    ``targets`` None, at each sample's top-scoring entry, found inside the backward run; with
    ``weights`` ([N, *one sample's shape]), Σ weights[n]·tensor[n] (targets WEIGHTED_TARGET)."""

    tensor: str
    targets: np.ndarray | None  # int64 [N]
    weights: np.ndarray | None = None

    def tiled(self, times: int) -> Score:
        """The same targets for ``times`` stacked copies of the batch (IG steps, noise samples)."""
        if self.targets is None:
            raise ValueError("resolve the top targets before repeating a score")
        weights = None if self.weights is None else np.tile(self.weights, (times, *[1] * (self.weights.ndim - 1)))
        return Score(self.tensor, np.tile(self.targets, times), weights)

    def of(self, values: np.ndarray) -> np.ndarray:
        """Each sample's score from the scored tensor's values [N, ...]."""
        flat = values.reshape(len(values), -1)
        if self.weights is not None:
            return np.einsum("ij,ij->i", flat, self.weights.reshape(len(values), -1).astype(flat.dtype))
        return flat[np.arange(len(values)), self.targets]


@dataclass(frozen=True)
class Gradients:
    input: np.ndarray  # d score / d input, input-shaped
    score: Score  # what was differentiated, targets resolved
    scores: np.ndarray  # [N] the score values
    wrt: dict[str, np.ndarray]  # gradients at intermediate tensors
    kept: dict[str, np.ndarray]  # forward values of intermediate tensors


def resolve_score(
    record: ModelRecord, samples: int, *, output: str | None, target: int | Sequence[int] | np.ndarray | None
) -> Score:
    """The tensor to score (default: the first model output) and a checked target for each of
    ``samples`` (default None: each sample's top-scoring entry, found where the scores are); a
    float array of one sample's shape (or [samples, ...]) weighs the tensor's entries instead."""
    tensor = record.tensor(output) if output else record.outputs[0].name
    size = int(np.prod(record.layer(tensor).shape[1:], dtype=np.int64))
    if size == 0 or not np.issubdtype(np.dtype(record.layer(tensor).dtype), np.floating):
        raise InvalidArgument(f"tensor {tensor!r} is not a float tensor with entries to score")
    if target is None:
        return Score(tensor, None)
    if isinstance(target, np.ndarray) and np.issubdtype(target.dtype, np.floating):
        return weighted_score(record, samples, tensor, target)
    targets = np.broadcast_to(np.asarray(target, dtype=np.int64).reshape(-1), (samples,)).copy()
    bad = targets[(targets < 0) | (targets >= size)]
    if bad.size:
        raise InvalidArgument(
            f"target {int(bad[0])} is out of range: {tensor!r} has {size} entries per sample (flat indices 0..{size - 1})"
        )
    return Score(tensor, targets)


def weighted_score(record: ModelRecord, samples: int, tensor: str, weights: np.ndarray) -> Score:
    sample_shape = record.layer(tensor).shape[1:]
    if weights.shape not in (sample_shape, (samples, *sample_shape)):
        raise InvalidArgument(
            f"target weights of shape {list(weights.shape)} do not fit {tensor!r}: give one sample's shape "
            f"{list(sample_shape)} or [{samples}, ...] of it (at this input size)"
        )
    if not np.isfinite(weights).all():
        raise InvalidArgument("target weights must be finite")
    dtype = np.dtype(record.layer(tensor).dtype)
    per_sample = np.ascontiguousarray(np.broadcast_to(weights, (samples, *sample_shape)), dtype=dtype)
    return Score(tensor, np.full(samples, WEIGHTED_TARGET, np.int64), per_sample)


def score_seed(record: ModelRecord, score: Score, count: int) -> np.ndarray:
    """The seed gradient of the scored tensor: the weights, or one-hot at the targets."""
    return score.weights if score.weights is not None else one_hot_seed(record, score, count)


def one_hot_seed(record: ModelRecord, score: Score, count: int) -> np.ndarray:
    shape = record.layer(score.tensor).shape[1:]
    seed = np.zeros((count, int(np.prod(shape, dtype=np.int64))), np.dtype(record.layer(score.tensor).dtype))
    seed[np.arange(count), score.targets] = 1
    return seed.reshape(count, *shape)


def backward_workers(context: MethodContext) -> int:
    """Backward runs in flight at once.  On the CPU provider, chunks of a batch run side by side
    (as many as the runtime executes at once), each on its share of the cores: a backward graph
    is hundreds of small ops (depthwise convolutions, masks) that intra-op threads split poorly,
    every op ending at a barrier, while independent chunks keep each core busy.  GPUs run one
    batch."""
    runs = parallel_runs(context.runtime)
    cpu_only = context.runtime.providers == ("CPUExecutionProvider",)
    return runs if cpu_only and available_cores() >= runs else 1


def backward_batch_size(context: MethodContext, record: ModelRecord) -> int:
    """Samples per backward run: what the memory budget holds with ``backward_workers`` runs in
    flight and, on the CPU provider, what keeps the activations near the cache (GPUs want large
    batches)."""
    per_sample = max(1, sum(layer.sample_bytes for layer in record.layers))
    fits = max(1, context.batch_budget_bytes // (per_sample * BACKWARD_MEMORY_FACTOR) // backward_workers(context))
    if context.runtime.providers == ("CPUExecutionProvider",):
        fits = min(fits, max(1, BACKWARD_CACHE_BYTES // per_sample))
    return fits


def backward_call_size(context: MethodContext, record: ModelRecord) -> int:
    """Samples worth handing ``run_backward`` at once: a backward run for each worker."""
    return backward_batch_size(context, record) * backward_workers(context)


def run_backward(
    context: MethodContext,
    record: ModelRecord,
    spec: GraphSpec,
    feeds: Mapping[str, np.ndarray],
    outputs: Sequence[str],
    *,
    fixed: Mapping[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """``spec``'s outputs for ``feeds`` (batch-first; ``fixed`` feeds go whole to every run), in
    runs of ``backward_batch_size`` samples, ``backward_workers`` of them at once."""
    batch_size = backward_batch_size(context, record) if record.dynamic_batch else 1
    workers = backward_workers(context)
    total = len(next(iter(feeds.values())))
    if total <= batch_size or workers == 1:
        return context.runtime.run_batched(
            record.id, spec, feeds, outputs, dynamic_batch=record.dynamic_batch, batch_size=batch_size, fixed=fixed
        )
    # Every run is on one session with the workers' thread count: sessions are cached per count.
    threads = worker_threads(workers)
    # The batch goes in ``workers`` consecutive groups, each run by one worker in runs of
    # ``batch_size``: the same runs as one at a time, and a sandbox exchanges once per group.
    runs = -(-total // batch_size)
    group_size = -(-runs // workers) * batch_size

    def run(group: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return context.runtime.run_batched(
            record.id,
            spec,
            group,
            outputs,
            dynamic_batch=record.dynamic_batch,
            batch_size=batch_size,
            threads=threads,
            fixed=fixed,
        )

    return _joined(in_flight(run, iter_batches(feeds, group_size), workers=workers), outputs, total)


def _joined(
    runs: Iterator[tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]]], outputs: Sequence[str], total: int
) -> dict[str, np.ndarray]:
    """The ``outputs`` of runs over consecutive slices of a batch of ``total``, copied into place
    as each arrives. A sandbox worker's results are views into its shared block: dropping each
    run's before the next starts lets that worker write there again instead of making a fresh
    block per run (three per worker for a batch of 8, each created, faulted in and unlinked)."""
    joined: dict[str, np.ndarray] = {}
    start = 0
    for chunk, values in runs:
        count = len(next(iter(chunk.values())))
        for name in outputs:
            if name not in joined:
                joined[name] = np.empty((total, *values[name].shape[1:]), values[name].dtype)
            joined[name][start : start + count] = values[name]
        start += count
        del values
    return joined


def gradients(
    context: MethodContext,
    record: ModelRecord,
    batch: np.ndarray,
    score: Score,
    *,
    wrt: Sequence[str] = (),
    keep: Sequence[str] = (),
    rectifier: Rectifier | str = Rectifier.PLAIN,
    rectifiers: RectifierScope | str = RectifierScope.ALL,
    others: Mapping[str, np.ndarray] | None = None,
    wrt_input: str | None = None,
) -> Gradients:
    """One backward pass per sample of ``batch`` (run in memory-sized batches).  ``batch`` feeds
    ``wrt_input`` (default: the image input), the input the gradient is taken with respect to;
    ``others`` feed the model's other inputs as given."""
    rectifier, rectifiers = parse(Rectifier, rectifier), parse(RectifierScope, rectifiers)
    for name in (*wrt, *keep):
        record.layer(name)
    top = score.targets is None
    spec = BackwardGraph(
        seeds=(score.tensor,),
        wrt=tuple(wrt),
        keep=tuple(dict.fromkeys((score.tensor, *keep))),
        rectifier=rectifier,
        rectifiers=rectifiers,
        top_target=top,
    )
    input_name = wrt_input or record.input.name
    outputs = [grad_output_name(input_name), *spec.keep, *(grad_output_name(t) for t in wrt)]
    batched, fixed = split_feeds(record, others or {})
    feeds = {input_name: batch, **batched}
    if top:
        outputs.append(top_target_name(score.tensor))
    else:
        feeds[seed_input_name(score.tensor)] = score_seed(record, score, len(batch))
    values = run_backward(context, record, spec, feeds, outputs, fixed=fixed)
    resolved = Score(score.tensor, values[top_target_name(score.tensor)].astype(np.int64)) if top else score
    scored = resolved.of(values[score.tensor])
    return Gradients(
        input=values[grad_output_name(input_name)],
        score=resolved,
        scores=scored,
        wrt={t: values[grad_output_name(t)] for t in wrt},
        kept={t: values[t] for t in keep},
    )
