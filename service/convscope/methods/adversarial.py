"""Adversarial examples: FGSM (Goodfellow, Shlens & Szegedy 2015) and PGD (Madry et al. 2018).

The loss is the cross-entropy of the logits (the model's first output): of the original top
class, raised (untargeted), or of ``target``, lowered (targeted: "make it be classified as any
class").  Image inputs are attacked in pixel space p ∈ [0, 1], ε included, with the model's
normalization inside the loop (one step moves channel c of the model's input by ε/σ_c) and
pixels clipped to [0, 1]; array inputs are attacked in the model's input units and clipped to
``bounds`` when given.

Steps follow Captum's ``FGSM`` and ``PGD`` (tests compare them): a sign step skips entries
whose gradient magnitude is ≤ 1e-6; each PGD step is bounded, projected onto the ε-ball around
the original and bounded again.  Captum's L2 PGD also takes sign steps; ours takes the
normalized-gradient step of Madry et al. (step_size · g/‖g‖₂), then the same projection.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from convscope.choices import parse
from convscope.errors import InvalidArgument
from convscope.graph.loss_seed import rule_input_names
from convscope.methods.optimize import Objective, PixelSpace, StepProgress, check_steps, float_layer, loss_gradient
from convscope.model.preprocessing import ModelInput
from convscope.model.types import ModelRecord
from convscope.runtime.context import MethodContext
from convscope_client.choices import AdversarialMethod, AdversarialNorm

# Captum's FGSM.zero_thresh: entries whose loss gradient is this small are not moved.
ZERO_GRADIENT = 1e-6


@dataclass(frozen=True)
class AdversarialOptions:
    method: AdversarialMethod | str = AdversarialMethod.FGSM
    epsilon: float = 2 / 255
    step_size: float | None = None  # PGD's; default 2.5·ε/steps (Madry et al.); FGSM steps ε
    steps: int = 10  # PGD only; FGSM is one step
    target: int | None = None
    norm: AdversarialNorm | str = AdversarialNorm.LINF
    random_start: bool = False
    seed: int = 0
    bounds: tuple[float, float] | None = None  # array inputs: the valid range of the input

    def __post_init__(self) -> None:
        # Plain strings (the audit's configured attacks, Python callers) become members here.
        object.__setattr__(self, "method", parse(AdversarialMethod, self.method))
        object.__setattr__(self, "norm", parse(AdversarialNorm, self.norm))

    def checked(self, max_steps: int) -> AdversarialOptions:
        if not self.epsilon >= 0:
            raise InvalidArgument(f"epsilon must be ≥ 0, got {self.epsilon}")
        if self.step_size is not None and not self.step_size > 0:
            raise InvalidArgument(f"step_size must be > 0, got {self.step_size}")
        if self.bounds is not None and not self.bounds[0] < self.bounds[1]:
            raise InvalidArgument(f"bounds must be (low, high) with low < high, got {self.bounds}")
        if self.method is AdversarialMethod.FGSM and self.norm is not AdversarialNorm.LINF:
            raise InvalidArgument("FGSM is an L∞ attack; use method='pgd' for norm='l2'")
        check_steps(self.steps, max_steps)
        return self

    @property
    def step_count(self) -> int:
        return 1 if self.method is AdversarialMethod.FGSM else self.steps

    @property
    def step_length(self) -> float:
        if self.method is AdversarialMethod.FGSM:
            return self.epsilon
        return self.step_size if self.step_size is not None else 2.5 * self.epsilon / self.steps


@dataclass(frozen=True)
class AdversarialResult:
    array: np.ndarray  # the adversarial model input
    pictures: np.ndarray | None  # [N, H, W, 3] uint8 for image inputs
    original_pictures: np.ndarray | None
    logits: np.ndarray  # [N, C] at the original input
    adversarial_logits: np.ndarray  # [N, C] at the adversarial input
    label: np.ndarray  # [N] the class whose loss was raised, or the target
    targeted: bool
    success: np.ndarray  # [N] bool: top-1 moved off the label, or onto the target
    linf: np.ndarray  # [N] of the perturbation, in the attack's space (pixels or input units)
    l2: np.ndarray


def adversarial(
    context: MethodContext, record: ModelRecord, model_input: ModelInput, options: AdversarialOptions, *, max_steps: int
) -> Iterator[StepProgress | AdversarialResult]:
    options = options.checked(max_steps)
    logits_name = record.outputs[0].name
    shape = float_layer(record, logits_name)
    if len(shape) != 1:
        raise InvalidArgument(
            f"adversarial examples need class logits [N, C]; the first output {logits_name!r} is {list(shape)} per sample"
        )
    classes = shape[0]
    if options.target is not None and not 0 <= options.target < classes:
        raise InvalidArgument(f"target {options.target} is out of range: the model has {classes} classes (0..{classes - 1})")
    batch = model_input.batch
    space = PixelSpace.of(record) if model_input.pictures else None
    original = space.to_pixels(batch) if space else batch
    low, high = (0.0, 1.0) if space else (options.bounds or (-np.inf, np.inf))

    def bound(values: np.ndarray) -> np.ndarray:
        return np.clip(values, low, high).astype(np.float32, copy=False)

    logits = context.forward(record, batch, [logits_name])[logits_name]
    label = np.full(len(batch), options.target) if options.target is not None else logits.argmax(axis=1)
    onehot = np.zeros((len(batch), classes), np.float32)
    onehot[np.arange(len(batch)), label] = 1
    objective = Objective(logits_name, "cross_entropy", {rule_input_names(logits_name, "cross_entropy")[0]: onehot})
    direction = -1.0 if options.target is not None else 1.0
    current = bound(original + random_start(original.shape, options)) if options.random_start else original
    for step in range(options.step_count):
        values, gradient = loss_gradient(context, record, space.to_input(current) if space else current, objective)
        if space:
            gradient = space.input_gradient_to_pixels(gradient)
        current = bound(current + direction * ascent(gradient, options).astype(np.float32, copy=False))
        if options.method is AdversarialMethod.PGD:  # FGSM's one step of ε is in the ball already
            current = bound(project(original, current, options))
        yield StepProgress(step + 1, options.step_count, float(cross_entropy(values, label).mean()))
    array = space.to_input(current) if space else current
    adversarial_logits = context.forward(record, array, [logits_name])[logits_name]
    top = adversarial_logits.argmax(axis=1)
    delta = (current - original).reshape(len(batch), -1).astype(np.float64)
    yield AdversarialResult(
        array=array,
        pictures=space.pictures(current) if space else None,
        original_pictures=np.stack(model_input.pictures) if space else None,
        logits=logits,
        adversarial_logits=adversarial_logits,
        label=label,
        targeted=options.target is not None,
        success=top == label if options.target is not None else top != label,
        linf=np.abs(delta).max(axis=1),
        l2=np.linalg.norm(delta, axis=1),
    )


def ascent(gradient: np.ndarray, options: AdversarialOptions) -> np.ndarray:
    """The step that raises the loss: a sign step (L∞), or along the unit gradient (L2)."""
    if options.norm is AdversarialNorm.LINF:
        return np.where(np.abs(gradient) > ZERO_GRADIENT, options.step_length * np.sign(gradient), 0)
    norms = np.linalg.norm(gradient.reshape(len(gradient), -1), axis=1).reshape(-1, *[1] * (gradient.ndim - 1))
    return options.step_length * gradient / np.maximum(norms, 1e-12)


def project(original: np.ndarray, current: np.ndarray, options: AdversarialOptions) -> np.ndarray:
    """``current`` pulled back into the ε-ball around ``original`` (torch.renorm's rule for L2)."""
    delta = current - original
    if options.norm is AdversarialNorm.LINF:
        return original + np.clip(delta, -options.epsilon, options.epsilon)
    norms = np.linalg.norm(delta.reshape(len(delta), -1), axis=1).reshape(-1, *[1] * (delta.ndim - 1))
    return original + np.where(norms > options.epsilon, delta * (options.epsilon / (norms + 1e-7)), delta)


def random_start(shape: tuple[int, ...], options: AdversarialOptions) -> np.ndarray:
    """A uniform point of the ε-ball (L∞), or a random direction at a uniform radius (L2)."""
    rng = np.random.default_rng(options.seed)
    if options.norm is AdversarialNorm.LINF:
        return rng.uniform(-options.epsilon, options.epsilon, shape).astype(np.float32)
    direction = rng.standard_normal(shape)
    norms = np.linalg.norm(direction.reshape(shape[0], -1), axis=1).reshape(-1, *[1] * (len(shape) - 1))
    radius = rng.uniform(0, options.epsilon, (shape[0],) + (1,) * (len(shape) - 1))
    return (direction / norms * radius).astype(np.float32)


def cross_entropy(logits: np.ndarray, label: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(len(logits)), label]
