"""A TensorFlow model exported by tf2onnx (tests/foreign_corpus.py), uploaded and asked about
a photo as its package feeds it (NHWC, BGR, ImageNet means subtracted, 256 then a 224² crop).

Oracles: onnxruntime on the unmodified model for every activation; for the input gradient of one
logit, torch autograd on a float64 twin of the graph (tests/onnx_twin.py, itself checked against
onnxruntime), rel. L2 ≤ 1e-2 and cosine ≥ 0.999: at 224² float64 central differences through
onnx's reference evaluator would take minutes.  The model's size is fixed: one size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import skimage.data
import torch

from convscope.core import Convscope
from convscope.methods.attribution import AttributionOptions
from convscope.model.types import Preprocessing
from convscope.render import encode_png
from tests.foreign_corpus import NSFW_CLASSIFIER, model_bytes
from tests.methods.test_foreign_models import scored_tensor
from tests.onnx_twin import torch_twin
from tests.oracles import assert_maps_agree, every_tensor_run

FEATURES = "Relu_48:0"  # the last ReLU, before the global average pool
OPEN_NSFW = Preprocessing(resize=256, size=(224, 224), scale=1.0, mean=(104.0, 117.0, 123.0), layout="NHWC", channel_order="BGR")


@pytest.fixture
def service(tmp_path: Path) -> Convscope:
    return Convscope(tmp_path / "store", providers=["CPUExecutionProvider"])


@pytest.mark.slow
def test_tf2onnx_classifier(service: Convscope) -> None:
    data = model_bytes(NSFW_CLASSIFIER)
    proto = onnx.load_from_string(data)
    assert proto.producer_name == NSFW_CLASSIFIER.exporter
    record = service.upload([("", data)], preprocessing=OPEN_NSFW)
    assert record.input.shape == (-1, 224, 224, 3) and record.dynamic_batch
    model_input = service.prepare(record, images=[encode_png(skimage.data.chelsea())])
    x = model_input.batch
    assert x.shape == (1, 224, 224, 3)

    reference = every_tensor_run(data, {record.input.name: x})
    ours = {r.tensor: r.value for r in service.activations(record.id, model_input, None, statistics=False)}
    assert len(ours) > 100
    for name, value in ours.items():
        scale = max(1.0, float(np.abs(reference[name]).max(initial=0)))
        np.testing.assert_allclose(value, reference[name], rtol=1e-4, atol=1e-4 * scale, err_msg=name)

    logits = scored_tensor(proto)
    target = int(np.argmax(ours[logits][0]))
    options = AttributionOptions(output=logits, target=target)
    result, _ = service.attribution(record.id, model_input, "gradient", options, render=False)
    twin = torch_twin(proto)
    image = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
    values = twin(image)
    np.testing.assert_allclose(values[logits].detach().numpy(), reference[logits], rtol=1e-4, atol=1e-4)  # the oracle itself
    cam, cam_png = service.attribution(record.id, model_input, "grad_cam", options)
    # Inside, the graph is NCHW after tf2onnx's first Transpose: the last feature map is
    # [1, 2048, 7, 7], not 2048 rows of 7 columns of 7 channels as the input's layout would say.
    assert cam.layer == FEATURES and cam.layer_map is not None and cam.layer_map.shape == (1, 7, 7)
    values[FEATURES].retain_grad()
    values[logits][0, target].backward()
    assert image.grad is not None and values[FEATURES].grad is not None
    assert_maps_agree(result.map[0], image.grad.numpy()[0])
    features, features_grad = values[FEATURES].detach(), values[FEATURES].grad
    expected_cam = torch.relu((features_grad.mean(dim=(2, 3), keepdim=True) * features).sum(dim=1)).numpy()
    assert_maps_agree(cam.layer_map, expected_cam)

    guided = service.attribution(record.id, model_input, "guided_backprop", options)
    for answered, png in (guided, (cam, cam_png)):
        assert np.isfinite(answered.map).all() and np.abs(answered.map).max() > 0 and png
        assert answered.map_on_image is not None and answered.map_on_image.shape == skimage.data.chelsea().shape[:2]
