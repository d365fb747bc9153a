"""Models other tools exported (tests/foreign_corpus.py), uploaded once and asked at two input
sizes where their sizes are symbolic.

Oracles: onnxruntime on the unmodified model for every activation; for input gradients of one
output unit, float64 central differences through onnx's reference evaluator on a few dozen
input elements (the strongest entries of our map and random ones), rel. L2 ≤ 1e-2 and cosine
≥ 0.999.  Sizes are small: CI has two cores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import skimage.data
from PIL import Image

from convscope.core import Convscope
from convscope.errors import InvalidArgument
from convscope.methods.attribution import AttributionOptions
from convscope.model.preprocessing import input_from_tensor
from tests.foreign_corpus import (
    DIRECTION_CLASSIFIER,
    ORIENTATION_CLASSIFIER,
    TEXT_DETECTOR,
    TEXT_RECOGNIZER,
    ForeignModel,
    model_bytes,
)
from tests.oracles import assert_maps_agree, central_differences, every_tensor_run

STRONGEST, RANDOM = 12, 6

CASES = [
    (TEXT_DETECTOR, None, [(1, 3, 32, 64), (1, 3, 64, 32)]),
    (DIRECTION_CLASSIFIER, None, [(1, 3, 48, 96), (1, 3, 48, 192)]),
    (TEXT_RECOGNIZER, [1, 3, 48, 320], [(1, 3, 48, 32), (1, 3, 48, 64)]),
    (ORIENTATION_CLASSIFIER, None, [(1, 3, 224, 224)]),  # fixed size: one
]


def text_crop(shape: tuple[int, ...]) -> np.ndarray:
    """A crop of scikit-image's text page as PP-OCR feeds it (RGB, (pixel/255 − 0.5)/0.5): the
    models' activations stay in the range they were trained on, unlike on noise, where float32
    already differs from float64 by ~1e-4 in the logits and masks flip at many kinks."""
    height, width = shape[2], shape[3]
    page = skimage.data.page()
    scaled = np.asarray(Image.fromarray(page).resize((page.shape[1] * height * 2 // page.shape[0], height * 2)))
    crop = scaled[height // 2 : height // 2 + height, :width] if scaled.shape[1] >= width else np.resize(scaled, (height, width))
    pixels = np.repeat(crop[None].astype(np.float32) / 255, 3, axis=0)
    return ((pixels - 0.5) / 0.5)[None]


def scored_tensor(model: onnx.ModelProto) -> str:
    """The logits under the model's sigmoid or softmax output, else the output: a saturated
    probability (a detector's map on random pixels, a confident class) leaves float32 nothing of
    y·(1 − y), and onnxruntime's fast sigmoid is accurate to an absolute, not a relative, error
    there, so no float32 gradient of it can match float64 finite differences."""
    output = model.graph.output[0].name
    squashing = [n for n in model.graph.node if n.op_type in ("Sigmoid", "Softmax") and n.output[0] == output]
    return squashing[0].input[0] if squashing else output


@pytest.fixture
def service(tmp_path: Path) -> Convscope:
    return Convscope(tmp_path / "store", providers=["CPUExecutionProvider"])


@pytest.mark.slow
@pytest.mark.parametrize(("model", "input_shape", "shapes"), CASES, ids=[f"{case[0].name}-{case[0].exporter}" for case in CASES])
def test_foreign_model_at_its_sizes(
    service: Convscope, model: ForeignModel, input_shape: list[int] | None, shapes: list[tuple[int, ...]]
) -> None:
    data = model_bytes(model)
    record = service.upload([("", data)], input_shape=input_shape)
    proto = onnx.load_from_string(data)
    input_name, output = record.input.name, scored_tensor(proto)
    for shape in shapes:
        x = text_crop(shape)
        model_input = input_from_tensor(record, x)
        reference = every_tensor_run(data, {input_name: x})
        ours = {r.tensor: r.value for r in service.activations(record.id, model_input, None, statistics=False)}
        assert record.outputs[0].name in ours and output in ours and len(ours) > 50
        for name, value in ours.items():
            scale = max(1.0, float(np.abs(reference[name]).max(initial=0)))
            np.testing.assert_allclose(value, reference[name], rtol=1e-4, atol=1e-4 * scale, err_msg=name)

        target = int(np.abs(ours[output][0]).argmax())
        options = AttributionOptions(output=output, target=target)
        result, _ = service.attribution(record.id, model_input, "gradient", options, render=False)
        ours_map = result.map.ravel()
        rng = np.random.default_rng(0)
        elements = np.unique(
            np.concatenate([np.argsort(-np.abs(ours_map))[:STRONGEST], rng.choice(ours_map.size, RANDOM, replace=False)])
        )
        assert_maps_agree(ours_map[elements], central_differences(proto, x, output, target, elements))

        for method in ("guided_backprop", "grad_cam"):
            answered, png = service.attribution(record.id, model_input, method, options)
            assert answered.map.shape[-2:] == shape[-2:] and np.isfinite(answered.map).all() and png


def test_recognizer_without_input_shape_fails_with_advice(service: Convscope) -> None:
    with pytest.raises(InvalidArgument) as raised:
        service.upload([("", model_bytes(TEXT_RECOGNIZER))])
    message = str(raised.value)
    assert "Concat" in message and "[1, 3, 224, 224]" in message and "pass input_shape" in message
    assert service.models() == []
