"""Strings that select behaviour are parsed once, where a request enters (rpc/convert.py,
rpc/dataset.py): a known one becomes its enum member, an unknown one INVALID_ARGUMENT with the
message it always had. Python callers that pass plain strings get the same members."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import grpc
import pytest

from convscope.choices import Choice
from convscope.errors import InvalidArgument
from convscope.methods.adversarial import AdversarialOptions
from convscope.methods.attribution import AttributionOptions
from convscope.methods.faithfulness import curves
from convscope.methods.occlusion_options import OcclusionOptions
from convscope.model.types import Preprocessing
from convscope.rpc.convert import attribution_request, preprocessing_from_proto, rectifier_rule, rectifier_scope
from convscope.rpc.dataset import job_from_proto
from convscope.rpc.synthesis import adversarial_options, inversion_options
from convscope_client._proto import convscope_pb2 as pb
from convscope_client.choices import (
    AdversarialMethod,
    AdversarialNorm,
    AttributionMethod,
    ChannelOrder,
    EmbeddingMethod,
    FaithfulnessMetric,
    IntegrationRule,
    Interpolation,
    InversionStart,
    Layout,
    OcclusionEngine,
    OcclusionFill,
    OcclusionScore,
    Rectifier,
    RectifierScope,
)


@contextlib.contextmanager
def refused(message: str) -> Iterator[None]:
    with pytest.raises(InvalidArgument) as caught:
        yield
    assert str(caught.value) == message


def test_an_attribution_request_becomes_members() -> None:
    request = pb.AttributionRequest(method="integrated_gradients", integration="riemann_trapezoid", rectifiers=pb.RECTIFIERS_RELU)
    method, options = attribution_request(request)
    assert method is AttributionMethod.INTEGRATED_GRADIENTS
    assert options.integration is IntegrationRule.RIEMANN_TRAPEZOID and options.rectifiers is RectifierScope.RELU
    _, defaults = attribution_request(pb.AttributionRequest(method="saliency"))
    assert defaults.integration is IntegrationRule.GAUSS_LEGENDRE and defaults.rectifiers is RectifierScope.ALL


def test_unknown_attribution_choices_keep_their_messages() -> None:
    names = sorted(
        [
            "gradient",
            "saliency",
            "input_x_gradient",
            "deconvnet",
            "guided_backprop",
            "grad_cam",
            "guided_grad_cam",
            "integrated_gradients",
            "smoothgrad",
        ]
    )
    with refused(f"unknown method 'shap'; choose one of {names}"):
        attribution_request(pb.AttributionRequest(method="shap"))
    rules = "('gausslegendre', 'riemann_left', 'riemann_right', 'riemann_middle', 'riemann_trapezoid')"
    with refused(f"integration must be one of {rules}, not 'simpson'"):
        attribution_request(pb.AttributionRequest(method="integrated_gradients", integration="simpson"))
    assert InvalidArgument.status == grpc.StatusCode.INVALID_ARGUMENT


def test_rectifier_choices() -> None:
    assert rectifier_rule("") is Rectifier.PLAIN and rectifier_rule("guided") is Rectifier.GUIDED
    assert rectifier_scope(pb.RECTIFIERS_RELU) is RectifierScope.RELU
    with refused("rectifier must be one of ('plain', 'guided', 'deconvnet'), not 'leaky'"):
        rectifier_rule("leaky")
    with refused("rectifiers must be 'all' or 'relu', not 'some'"):
        AttributionOptions(rectifiers="some")  # type: ignore[arg-type]


def test_preprocessing_choices_become_members_and_unknown_ones_keep_their_messages() -> None:
    spec = preprocessing_from_proto(pb.Preprocessing(layout="NHWC", channel_order="BGR", interpolation="nearest"))
    assert (spec.layout, spec.channel_order, spec.interpolation) == (Layout.NHWC, ChannelOrder.BGR, Interpolation.NEAREST)
    assert type(spec.layout) is Layout and Preprocessing.from_dict(spec.to_dict()) == spec  # the store's JSON round trip
    assert spec.to_dict()["layout"] == "NHWC" and f"{spec.layout}" == "NHWC"
    with refused("preprocessing layout must be NCHW or NHWC, not 'CHW'"):
        preprocessing_from_proto(pb.Preprocessing(layout="CHW"))
    with refused("preprocessing channel_order must be RGB or BGR, not 'GBR'"):
        preprocessing_from_proto(pb.Preprocessing(channel_order="GBR"))
    with refused("preprocessing interpolation must be bilinear, bicubic or nearest, not 'lanczos'"):
        Preprocessing(interpolation="lanczos")  # type: ignore[arg-type]


def test_the_embedding_method() -> None:
    start = pb.DatasetJobStart(embedding=pb.EmbeddingJob(method="pca"))
    assert job_from_proto(start).method is EmbeddingMethod.PCA  # type: ignore[union-attr]
    assert job_from_proto(pb.DatasetJobStart(embedding=pb.EmbeddingJob())).method is EmbeddingMethod.TSNE  # type: ignore[union-attr]
    with refused("embedding method must be one of ('tsne', 'pca'), not 'umap'"):
        job_from_proto(pb.DatasetJobStart(embedding=pb.EmbeddingJob(method="umap")))


def test_occlusion_choices_keep_their_messages() -> None:
    options = OcclusionOptions.parse(fill="blur", score="raw", engine="approximate", tolerance=0.01)
    assert (options.fill, options.score, options.engine) == (OcclusionFill.BLUR, OcclusionScore.RAW, OcclusionEngine.APPROXIMATE)
    assert OcclusionOptions.parse(fill=0.5).fill == 0.5 and OcclusionOptions.parse().engine is OcclusionEngine.AUTO
    with refused("fill must be one of ['mean', 'blur'], not 'zero'"):
        OcclusionOptions.parse(fill="zero")
    with refused("score must be one of ['probability', 'raw'], not 'logit'"):
        OcclusionOptions.parse(score="logit")
    with refused("engine must be one of ['auto', 'batched', 'incremental', 'approximate'], not 'gpu'"):
        OcclusionOptions.parse(engine="gpu")


def test_every_choice_says_how_it_refuses_a_value() -> None:
    kinds = [
        Rectifier,
        RectifierScope,
        AttributionMethod,
        IntegrationRule,
        EmbeddingMethod,
        Layout,
        ChannelOrder,
        Interpolation,
        OcclusionScore,
        OcclusionFill,
        OcclusionEngine,
        AdversarialMethod,
        AdversarialNorm,
        InversionStart,
        FaithfulnessMetric,
    ]
    assert set(kinds) <= set(Choice.__subclasses__())
    for kind in Choice.__subclasses__():
        message = kind.refusal("nonsense")
        assert "'nonsense'" in message and kind.parse(kind.values()[0]) is next(iter(kind))


def test_synthesis_and_faithfulness_choices_keep_their_messages() -> None:
    options = adversarial_options(pb.AdversarialRequest(method="pgd", norm="l2"))
    assert (options.method, options.norm) == (AdversarialMethod.PGD, AdversarialNorm.L2)
    assert AdversarialOptions(method="pgd").method is AdversarialMethod.PGD and AdversarialOptions().norm is AdversarialNorm.LINF
    with refused("method must be one of ('fgsm', 'pgd'), not 'cw'"):
        adversarial_options(pb.AdversarialRequest(method="cw"))
    with refused("norm must be one of ('linf', 'l2'), not 'l1'"):
        AdversarialOptions(norm="l1")
    assert inversion_options(pb.InvertRequest(layer="conv", init="grey")).init is InversionStart.GREY
    assert inversion_options(pb.InvertRequest(layer="conv")).init is InversionStart.NOISE
    with refused("init must be one of ('noise', 'grey'), not 'zeros'"):
        inversion_options(pb.InvertRequest(layer="conv", init="zeros"))
    with refused("unknown metrics ['auc']; choose from ['deletion', 'insertion']"):
        curves(None, None, None, None, [], ["deletion", "auc"])  # type: ignore[arg-type]  # refused before anything is read
