"""Small torch reference networks and their ONNX exports, shared by the oracle tests.

Why these nets: each one reproduces the *graph shapes* that real vision models put in front of
the graph passes (residual Adds, depthwise convs, ReLU6 as ``Clip``, squeeze-excitation ``Mul``,
``Concat`` fan-in, ``ceil_mode`` pooling, ``LRN``, a Reshape with a baked batch of 1), at a size
that runs in milliseconds on a shared 2-core CI machine.  Weights are random but deterministic,
the nets are in eval mode, and BatchNorm statistics are calibrated then perturbed so no BN is
the identity (a BN rule that ignores ``scale``/``var`` must fail).

Every rectifier is its own ``nn.ReLU`` / ``nn.ReLU6`` module, used once and never in place:
Captum's ``GuidedBackprop``/``Deconvolution`` rewrite gradients only through hooks on
``nn.ReLU`` modules, so a functional ``F.relu`` would silently escape the oracle.

Both exporters are covered because they write different graphs for the same net: the TorchScript
exporter (pinned to opset 17, IR 8, like most deployed exports) folds BN into Conv and names
tensors ``/layer/op_output_0``; the dynamo exporter (opset 20, IR 10) keeps its own names,
turns global pooling into ``ReduceMean`` and can spill weights to a ``.onnx.data`` side file.
"""

from __future__ import annotations

import functools
import io
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import onnx
import torch
import torch.nn.functional as F
from onnxscript import opset18 as onnx_op
from torch import nn

Exporter = Literal["torchscript", "dynamo"]
EXPORTERS: tuple[Exporter, ...] = ("torchscript", "dynamo")

INPUT_NAME = "input"
OUTPUT_NAME = "output"
TORCHSCRIPT_OPSET = 17
# onnxruntime 1.31 refuses IR versions above this one.
MAX_IR_VERSION = 13
NUM_CLASSES = 10

__all__ = [
    "EXPORTERS",
    "INPUT_NAME",
    "NETS",
    "NUM_CLASSES",
    "OUTPUT_NAME",
    "DenseNetStyle",
    "DepthwiseReLU6Net",
    "Exporter",
    "HardcodedReshapeNet",
    "MobileNetV3Style",
    "NetSpec",
    "ResNetStyle",
    "SqueezeNetStyle",
    "VGGLRNStyle",
    "export_onnx",
    "exported",
    "reference_net",
]


# --------------------------------------------------------------------------------------------
# LRN: exported as the ONNX ``LRN`` op by both exporters.
#
# Left alone, both exporters decompose ``nn.LocalResponseNorm``: TorchScript into
# Pad/AveragePool(3-D)/Pow/Div with a Shape→Equal→``If`` chain, dynamo into
# Mul/Reshape/Pad/AveragePool(3-D)/Squeeze/Add/Pow/Div.  Real LRN models (AlexNet, CaffeNet,
# GoogLeNet from the ONNX model zoo) carry the single ``LRN`` op, whose gradient rule is the one
# we want to check, so during export the module routes through a custom op that maps to it.
# --------------------------------------------------------------------------------------------


@torch.library.custom_op("convscope_tests::lrn", mutates_args=())
def _lrn_op(x: torch.Tensor, size: int, alpha: float, beta: float, k: float) -> torch.Tensor:
    return F.local_response_norm(x, size, alpha, beta, k)


@_lrn_op.register_fake
def _lrn_fake(x: torch.Tensor, size: int, alpha: float, beta: float, k: float) -> torch.Tensor:
    return torch.empty_like(x)


def _lrn_onnx(x, size: int, alpha: float, beta: float, k: float):  # type: ignore[no-untyped-def]
    """onnxscript translation of ``convscope_tests::lrn`` for the dynamo exporter."""
    return onnx_op.LRN(x, size=size, alpha=alpha, beta=beta, bias=k)


class _LRNFunction(torch.autograd.Function):
    """Carries the ``symbolic`` that makes the TorchScript exporter write one ``LRN`` node."""

    @staticmethod
    def forward(ctx, x, size, alpha, beta, k):  # type: ignore[no-untyped-def,override]
        return F.local_response_norm(x, size, alpha, beta, k)

    @staticmethod
    def symbolic(g, x, size, alpha, beta, k):  # type: ignore[no-untyped-def]
        return g.op("LRN", x, size_i=size, alpha_f=alpha, beta_f=beta, bias_f=k)


_CUSTOM_TRANSLATIONS = {torch.ops.convscope_tests.lrn.default: _lrn_onnx}


class ExportableLRN(nn.LocalResponseNorm):
    """``nn.LocalResponseNorm`` in eager mode (so autograd and Captum see plain torch ops);
    the ONNX ``LRN`` op when exported."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.onnx.is_in_onnx_export():
            return super().forward(x)
        if torch.jit.is_tracing():
            return _LRNFunction.apply(x, self.size, self.alpha, self.beta, self.k)
        return torch.ops.convscope_tests.lrn(x, self.size, self.alpha, self.beta, self.k)


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------

ActivationFactory = Callable[[], nn.Module]


def _conv_bn_act(
    cin: int, cout: int, kernel: int, *, stride: int = 1, groups: int = 1, act: ActivationFactory | None
) -> list[nn.Module]:
    """Conv (no bias: BN follows) → BN → optional activation, the unit every CNN repeats."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act())
    return layers


class _BasicBlock(nn.Module):
    """ResNet basic block; a 1×1 conv + BN projects the shortcut when shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(y + shortcut)


class _SqueezeExcite(nn.Module):
    """Channel gating: global pool → 1×1 conv → ReLU → 1×1 conv → Hardsigmoid → Mul."""

    def __init__(self, channels: int, squeezed: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeezed, 1)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(squeezed, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))


class _InvertedResidual(nn.Module):
    """MobileNetV2/V3 block: 1×1 expand → depthwise 3×3 → [SE] → 1×1 linear project, plus the
    shortcut Add when input and output shapes agree."""

    def __init__(self, cin: int, expanded: int, cout: int, *, stride: int, act: ActivationFactory, se: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if expanded != cin:
            layers += _conv_bn_act(cin, expanded, 1, act=act)
        layers += _conv_bn_act(expanded, expanded, 3, stride=stride, groups=expanded, act=act)
        if se:
            layers.append(_SqueezeExcite(expanded, max(expanded // 4, 4)))
        layers += _conv_bn_act(expanded, cout, 1, act=None)
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class _Fire(nn.Module):
    """SqueezeNet Fire module: squeeze 1×1, then expand 1×1 and 3×3 side by side, concatenated."""

    def __init__(self, cin: int, squeeze: int, expand1: int, expand3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.squeeze_relu = nn.ReLU()
        self.expand1 = nn.Conv2d(squeeze, expand1, 1)
        self.expand1_relu = nn.ReLU()
        self.expand3 = nn.Conv2d(squeeze, expand3, 3, padding=1)
        self.expand3_relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze_relu(self.squeeze(x))
        return torch.cat([self.expand1_relu(self.expand1(s)), self.expand3_relu(self.expand3(s))], dim=1)


class _DenseLayer(nn.Module):
    """DenseNet layer, pre-activation order BN → ReLU → Conv (the BN after a Concat cannot be
    folded into a Conv, so exports keep a real ``BatchNormalization`` node)."""

    def __init__(self, cin: int, growth: int, bottleneck: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(cin, bottleneck, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bottleneck)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(bottleneck, growth, 3, padding=1, bias=False)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(features, dim=1)
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class _DenseBlock(nn.Module):
    """Each layer sees the concatenation of all earlier outputs: one multi-input Concat per layer."""

    def __init__(self, cin: int, layers: int, growth: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_DenseLayer(cin + i * growth, growth, 2 * growth) for i in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(features))
        return torch.cat(features, dim=1)


# --------------------------------------------------------------------------------------------
# The reference nets (3×32×32 inputs, 10 classes)
# --------------------------------------------------------------------------------------------


class ResNetStyle(nn.Module):
    """ResNet-18 in miniature; ``layer2`` is the Grad-CAM layer (last conv feature map)."""

    def __init__(self, width: int = 8, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn_act(3, width, 3, act=nn.ReLU))
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = _BasicBlock(width, width, stride=1)
        self.layer2 = _BasicBlock(width, 2 * width, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.maxpool(self.stem(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class MobileNetV3Style(nn.Module):
    """MobileNetV3 in miniature: HardSwish and ReLU6 blocks, squeeze-excitation, residual Adds."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_conv_bn_act(3, 8, 3, stride=2, act=nn.Hardswish),
            _InvertedResidual(8, 16, 8, stride=1, act=nn.Hardswish, se=True),
            _InvertedResidual(8, 24, 16, stride=2, act=nn.ReLU6),
            _InvertedResidual(16, 32, 16, stride=1, act=nn.Hardswish, se=True),
            *_conv_bn_act(16, 32, 1, act=nn.Hardswish),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(32, 32), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(32, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class DepthwiseReLU6Net(nn.Module):
    """MobileNetV2 in miniature: depthwise convs, BN, ReLU6 (``Clip``) everywhere in the body.

    The classifier's hidden layer uses one ``nn.ReLU`` so that guided backprop restricted to
    ReLU (Captum's semantics) still changes something, while every ``Clip`` keeps its plain
    gradient.
    """

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_conv_bn_act(3, 8, 3, stride=2, act=nn.ReLU6),
            _InvertedResidual(8, 8, 8, stride=1, act=nn.ReLU6),
            _InvertedResidual(8, 24, 12, stride=2, act=nn.ReLU6),
            _InvertedResidual(12, 36, 12, stride=1, act=nn.ReLU6),
            *_conv_bn_act(12, 32, 1, act=nn.ReLU6),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class SqueezeNetStyle(nn.Module):
    """SqueezeNet in miniature: Fire modules, ``ceil_mode`` max pools (16→8 and 8→4, where floor
    would give 7 and 3), a 1×1 conv classifier and an ``AveragePool`` head."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=2, ceil_mode=True),
            _Fire(16, 4, 8, 8),
            _Fire(16, 4, 8, 8),
            nn.MaxPool2d(3, stride=2, ceil_mode=True),
            _Fire(16, 8, 16, 16),
        )
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(32, num_classes, 1), nn.ReLU(), nn.AvgPool2d(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


class DenseNetStyle(nn.Module):
    """DenseNet in miniature: two dense blocks (many Concats), a BN-ReLU-Conv-AvgPool transition."""

    def __init__(self, growth: int = 4, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn_act(3, 8, 3, stride=2, act=nn.ReLU))
        self.block1 = _DenseBlock(8, layers=3, growth=growth)
        c1 = 8 + 3 * growth
        self.transition = nn.Sequential(
            nn.BatchNorm2d(c1), nn.ReLU(), nn.Conv2d(c1, c1 // 2, 1, bias=False), nn.AvgPool2d(2, stride=2)
        )
        self.block2 = _DenseBlock(c1 // 2, layers=3, growth=growth)
        c2 = c1 // 2 + 3 * growth
        self.head = nn.Sequential(nn.BatchNorm2d(c2), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(c2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.transition(self.block1(self.stem(x))))
        return self.fc(torch.flatten(self.head(x), 1))


class VGGLRNStyle(nn.Module):
    """AlexNet/VGG-M in miniature: conv → ReLU → LRN → MaxPool, a Flatten + Linear head with Dropout.

    LRN's ``alpha`` is far above AlexNet's 1e-4 so the cross-channel term of its gradient
    matters (with 1e-4 LRN is a constant scale and a rule missing that term would pass).
    """

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            ExportableLRN(5, alpha=1.0, beta=0.75, k=1.0),
            nn.MaxPool2d(2, stride=2),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.ReLU(),
            ExportableLRN(3, alpha=0.5, beta=0.75, k=2.0),
            nn.MaxPool2d(2, stride=2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2, stride=2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.5),
            nn.Linear(32 * 4 * 4, 32),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(32, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class HardcodedReshapeNet(nn.Module):
    """A conv net whose head does ``x.reshape(1, -1)``: its export bakes a batch of 1 into a
    ``Reshape`` shape constant, as many published models do (the ``dynamic_batch`` pass's case)."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.fc = nn.Linear(16 * 8 * 8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).reshape(1, -1))


# --------------------------------------------------------------------------------------------
# Deterministic, realistic weights
# --------------------------------------------------------------------------------------------


def _initialize(model: nn.Module, input_shape: tuple[int, ...], batch: int, seed: int) -> nn.Module:
    """Random weights at healthy scales, BN statistics that are not the identity, eval mode.

    Kaiming-normal weights keep activations O(1) through the ReLU stacks (torch's default init
    shrinks them layer by layer, which would make LRN linear and ReLU6 never reach 6).  BN
    running statistics are first *calibrated* on a random batch of ``batch`` (so activations stay
    O(1)), then perturbed, and BN's affine weights are drawn in [0.5, 3] so ReLU6 saturates sometimes.
    Runs under ``fork_rng`` so building a net does not disturb the caller's torch RNG.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for module in model.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.uniform_(module.bias, -0.1, 0.1)
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_running_stats()
                module.momentum = None  # cumulative average over the calibration batch
                nn.init.uniform_(module.weight, 0.5, 3.0)
                nn.init.uniform_(module.bias, -0.5, 0.5)
        model.train()
        with torch.no_grad():
            model(torch.randn(batch, *input_shape))
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                assert module.running_mean is not None and module.running_var is not None
                module.running_mean.add_(0.1 * torch.randn_like(module.running_mean))
                module.running_var.mul_(torch.empty_like(module.running_var).uniform_(0.8, 1.25))
    return model.eval()


@dataclass(frozen=True)
class NetSpec:
    """A registry row: how to build a reference net and what it accepts.

    ``fixed_batch`` is set for nets whose graph bakes in a batch size: they are exported with a
    static batch and only run at that size (until the ``dynamic_batch`` pass rewrites them).
    ``gradcam_layer`` names the submodule whose output is the last conv feature map.
    """

    name: str
    cls: Callable[[], nn.Module]
    input_shape: tuple[int, int, int] = (3, 32, 32)
    fixed_batch: int | None = None
    gradcam_layer: str | None = None
    num_classes: int = NUM_CLASSES

    def build(self) -> nn.Module:
        """A fresh instance; the same weights every time (seeded by the name)."""
        seed = sum(self.name.encode())  # stable across processes, unlike hash()
        return _initialize(self.cls(), self.input_shape, self.fixed_batch or 8, seed)

    @property
    def dynamic_batch(self) -> bool:
        return self.fixed_batch is None

    def batch_sizes(self, wanted: tuple[int, ...]) -> tuple[int, ...]:
        """The batch sizes a test can use: ``wanted``, or the baked one."""
        return wanted if self.fixed_batch is None else (self.fixed_batch,)


NETS: dict[str, NetSpec] = {
    spec.name: spec
    for spec in (
        NetSpec("ResNetStyle", ResNetStyle, gradcam_layer="layer2"),
        NetSpec("MobileNetV3Style", MobileNetV3Style),
        NetSpec("DepthwiseReLU6Net", DepthwiseReLU6Net),
        NetSpec("SqueezeNetStyle", SqueezeNetStyle),
        NetSpec("DenseNetStyle", DenseNetStyle),
        NetSpec("VGGLRNStyle", VGGLRNStyle),
        NetSpec("HardcodedReshapeNet", HardcodedReshapeNet, fixed_batch=1),
    )
}


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


def export_onnx(
    model: nn.Module,
    example: torch.Tensor,
    path: str | Path | None = None,
    *,
    exporter: Exporter,
    dynamic_batch: bool = True,
) -> onnx.ModelProto:
    """Export ``model`` with one input ``"input"`` and one output ``"output"``.

    Returns a self-contained in-memory model (external data pulled in) whose IR version
    onnxruntime accepts.  With ``path`` the model is also written there, as one file.
    ``dynamic_batch`` makes axis 0 symbolic (``dynamic_axes`` for TorchScript, a ``Dim`` for
    dynamo); a net that bakes its batch needs ``False``.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"unknown exporter {exporter!r}")
    with warnings.catch_warnings():
        # Expected noise: the TorchScript exporter is deprecated (we export with it on purpose,
        # deployed models come from it), tracing LRN warns about a Python bool, pytree warns.
        for category in (DeprecationWarning, FutureWarning, torch.jit.TracerWarning):
            warnings.simplefilter("ignore", category)
        if exporter == "torchscript":
            model_proto = _export_torchscript(model, example, dynamic_batch)
        else:
            model_proto = _export_dynamo(model, example, dynamic_batch)
    model_proto.ir_version = min(model_proto.ir_version, MAX_IR_VERSION)
    if path is not None:
        onnx.save(model_proto, str(path))
    return model_proto


def _export_torchscript(model: nn.Module, example: torch.Tensor, dynamic_batch: bool) -> onnx.ModelProto:
    buffer = io.BytesIO()
    dynamic_axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    torch.onnx.export(
        model,
        (example,),
        buffer,
        dynamo=False,
        opset_version=TORCHSCRIPT_OPSET,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes=dynamic_axes,
    )
    return onnx.load_from_string(buffer.getvalue())


def _export_dynamo(model: nn.Module, example: torch.Tensor, dynamic_batch: bool) -> onnx.ModelProto:
    dynamic_shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=dynamic_shapes,
        custom_translation_table=_CUSTOM_TRANSLATIONS,
        verbose=False,
    )
    assert program is not None
    # Round-trip through a file: ``onnx.load`` pulls any ``.onnx.data`` side file back in, so the
    # result never holds a reference to a temp file that is about to disappear.
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        program.save(path)
        return onnx.load(str(path), load_external_data=True)


@functools.cache
def reference_net(name: str) -> nn.Module:
    """The registry net ``name``, built once per test session (read-only: do not train it)."""
    return NETS[name].build()


@functools.cache
def _exported(name: str, exporter: Exporter) -> bytes:
    spec = NETS[name]
    example = torch.zeros(spec.fixed_batch or 1, *spec.input_shape)
    model_proto = export_onnx(reference_net(name), example, exporter=exporter, dynamic_batch=spec.dynamic_batch)
    return model_proto.SerializeToString()


def exported(name: str, exporter: Exporter) -> onnx.ModelProto:
    """The registry net ``name`` exported by ``exporter``; exported once per test session (the
    dynamo exporter takes seconds per net), and a fresh copy per call so no test sees another's
    edits."""
    return onnx.load_from_string(_exported(name, exporter))
