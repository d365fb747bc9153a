"""The strings that select behaviour, as enums: ``Rectifier.GUIDED`` and ``"guided"`` are the same
value, so callers may pass either.  Each is parsed once where a call enters the client, and a
value that names no member is refused there, before any RPC.  The server parses these same
enums (``convscope.choices.parse``), so both ends accept the same members and refuse with the
same message.

Members are ``str`` enums: they compare, hash, format and serialize as their value.
"""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

import grpc

from convscope_client.errors import ConvscopeError

Parsed = TypeVar("Parsed", bound="Choice")


class InvalidChoice(ConvscopeError, ValueError):
    """A string that names none of a choice's members: INVALID_ARGUMENT, raised before the call
    (a ValueError too, which the client raised for these before it had enums)."""

    def __init__(self, message: str) -> None:
        super().__init__(grpc.StatusCode.INVALID_ARGUMENT, message)


class Choice(str, Enum):
    """Base of every choice.  A subclass lists its members and says how a wrong value is refused:
    a format string over ``{value!r}``, ``{values}`` (a tuple of the members' values), ``{listed}``
    (a list) and ``{sorted}``."""

    refusal_format: str

    def __init_subclass__(cls, *, refusal: str = "{value!r} is not one of {values}", **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.refusal_format = refusal

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def parse(cls: type[Parsed], value: str) -> Parsed:
        """The member named by ``value`` (a member passes through), or ``InvalidChoice``."""
        try:
            return cls(value)
        except ValueError:
            raise InvalidChoice(cls.refusal(value)) from None

    @classmethod
    def values(cls) -> tuple[str, ...]:
        return tuple(member.value for member in cls)

    @classmethod
    def refusal(cls, value: str) -> str:
        """The message for a value that names no member."""
        values = cls.values()
        return cls.refusal_format.format(value=value, values=values, listed=list(values), sorted=sorted(values))


class AttributionMethod(Choice, refusal="unknown method {value!r}; choose one of {sorted}"):
    GRADIENT = "gradient"
    SALIENCY = "saliency"
    INPUT_X_GRADIENT = "input_x_gradient"
    DECONVNET = "deconvnet"
    GUIDED_BACKPROP = "guided_backprop"
    GRAD_CAM = "grad_cam"
    GUIDED_GRAD_CAM = "guided_grad_cam"
    INTEGRATED_GRADIENTS = "integrated_gradients"
    SMOOTHGRAD = "smoothgrad"

    @property
    def description(self) -> str:
        """What the method's map shows, for help texts."""
        return _ATTRIBUTION_DESCRIPTIONS[self]


_ATTRIBUTION_DESCRIPTIONS = {
    AttributionMethod.GRADIENT: "d score / d input",
    AttributionMethod.SALIENCY: "max |gradient| over channels (Simonyan et al.)",
    AttributionMethod.INPUT_X_GRADIENT: "input times gradient",
    AttributionMethod.DECONVNET: "backward pass through the ReLU's deconvnet rule (Zeiler & Fergus)",
    AttributionMethod.GUIDED_BACKPROP: "backward pass keeping positive gradients of positive units (Springenberg et al.)",
    AttributionMethod.GRAD_CAM: "class activation map at --layer (Selvaraju et al.)",
    AttributionMethod.GUIDED_GRAD_CAM: "guided backprop times Grad-CAM",
    AttributionMethod.INTEGRATED_GRADIENTS: "gradients integrated from --baseline to the input (Sundararajan et al.)",
    AttributionMethod.SMOOTHGRAD: "gradient averaged over noisy copies (Smilkov et al.)",
}


class IntegrationRule(Choice, refusal="integration must be one of {values}, not {value!r}"):
    """How integrated gradients samples the path, as Captum's approximation methods."""

    GAUSS_LEGENDRE = "gausslegendre"
    RIEMANN_LEFT = "riemann_left"
    RIEMANN_RIGHT = "riemann_right"
    RIEMANN_MIDDLE = "riemann_middle"
    RIEMANN_TRAPEZOID = "riemann_trapezoid"


class Rectifier(Choice, refusal="rectifier must be one of {values}, not {value!r}"):
    """How the backward pass treats rectifier units (Springenberg et al. 2015; Zeiler & Fergus 2014)."""

    PLAIN = "plain"  # the true gradient
    GUIDED = "guided"  # relu(dY)·(Y>0)
    DECONVNET = "deconvnet"  # relu(dY)


class RectifierScope(Choice, refusal="rectifiers must be 'all' or 'relu', not {value!r}"):
    """Which units the rectifier rule applies to."""

    ALL = "all"  # ReLU and Clip with min 0 (ReLU6)
    RELU = "relu"  # ReLU only, Captum's convention


class FaithfulnessMetric(Choice, refusal="unknown metrics [{value!r}]; choose from {listed}"):
    """Petsiuk et al.'s curves: pixels removed from the image, or added to a blurred copy, most salient first."""

    DELETION = "deletion"
    INSERTION = "insertion"


class EmbeddingMethod(Choice, refusal="embedding method must be one of {values}, not {value!r}"):
    TSNE = "tsne"
    PCA = "pca"


class Layout(Choice, refusal="preprocessing layout must be NCHW or NHWC, not {value!r}"):
    NCHW = "NCHW"
    NHWC = "NHWC"


class ChannelOrder(Choice, refusal="preprocessing channel_order must be RGB or BGR, not {value!r}"):
    RGB = "RGB"
    BGR = "BGR"


class Interpolation(Choice, refusal="preprocessing interpolation must be bilinear, bicubic or nearest, not {value!r}"):
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    NEAREST = "nearest"


class OcclusionScore(Choice, refusal="score must be one of {listed}, not {value!r}"):
    PROBABILITY = "probability"  # the target's softmax probability
    RAW = "raw"  # the output entry itself


class OcclusionFill(Choice, refusal="fill must be one of {listed}, not {value!r}"):
    """What the occluding box shows, when it is not a constant: the image's mean, or a blurred copy."""

    MEAN = "mean"
    BLUR = "blur"


class OcclusionEngine(Choice, refusal="engine must be one of {listed}, not {value!r}"):
    AUTO = "auto"
    BATCHED = "batched"  # every position a whole forward pass
    INCREMENTAL = "incremental"  # recompute only what the box changes
    APPROXIMATE = "approximate"  # evaluate part of the positions, interpolate the rest within a tolerance


class AdversarialMethod(Choice, refusal="method must be one of {values}, not {value!r}"):
    FGSM = "fgsm"  # one signed step
    PGD = "pgd"  # projected steps


class AdversarialNorm(Choice, refusal="norm must be one of {values}, not {value!r}"):
    LINF = "linf"
    L2 = "l2"


class InversionStart(Choice, refusal="init must be one of {values}, not {value!r}"):
    NOISE = "noise"  # grey plus Gaussian noise
    GREY = "grey"


PREPROCESSING_CHOICES: dict[str, type[Choice]] = {"layout": Layout, "channel_order": ChannelOrder, "interpolation": Interpolation}
