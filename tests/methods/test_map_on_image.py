"""Maps projected back onto the image as sent: the resize and center crop undone."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from convscope.core import Convscope
from convscope.methods.attribution import AttributionOptions
from convscope.model.types import Preprocessing

CROP = 96
ROW, COL = 10, 12  # the target unit, in the model's 96×96 picture


def local_conv_model() -> bytes:
    """x[N,3,96,96] → Conv(2, 5×5, pad 2): unit (ROW, COL) sees only a 5×5 window around it."""
    weight = np.random.default_rng(4).standard_normal((2, 3, 5, 5)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[2, 2, 2, 2])],
        "local",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, CROP, CROP])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, CROP, CROP])],
        initializer=[numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model.SerializeToString()


def test_map_on_image_lands_where_the_crop_came_from(tmp_path: Path) -> None:
    service = Convscope(tmp_path / "store", providers=["CPUExecutionProvider"])
    record = service.upload([("", local_conv_model())], preprocessing=Preprocessing(resize=100, size=(CROP, CROP)))
    photo = np.random.default_rng(1).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    encoded = io.BytesIO()
    Image.fromarray(photo).save(encoded, format="PNG")
    model_input = service.prepare(record, images=[encoded.getvalue()])
    target = ROW * CROP + COL  # channel 0
    result, png = service.attribution(record.id, model_input, "saliency", AttributionOptions(target=target))

    # 200×300 resized by 100/200 is 100×150; the 96² center crop starts at (2, 27) there, so
    # at (4, 54) in the photo, each crop pixel covering 2×2 of the photo's.
    on_image = result.map_on_image
    assert on_image is not None and on_image.shape == (200, 300)
    inside = np.zeros_like(on_image, bool)
    inside[4 : 4 + 2 * CROP, 54 : 54 + 2 * CROP] = True
    assert not np.any(on_image[~inside]) and np.any(on_image[inside])
    row, col = np.unravel_index(np.abs(on_image).argmax(), on_image.shape)
    crop_row, crop_col = np.unravel_index(np.abs(result.map[0]).argmax(), result.map[0].shape)
    assert abs(row - (4 + 2 * crop_row + 0.5)) <= 2 and abs(col - (54 + 2 * crop_col + 0.5)) <= 2
    assert abs(crop_row - ROW) <= 2 and abs(crop_col - COL) <= 2  # the unit's own window
    # The figure: the crop's map (96 px, drawn ×4) beside the whole photo (drawn ×2), not the crop.
    width, height = Image.open(io.BytesIO(png)).size
    assert width >= 4 * CROP + 2 * 300 and height >= 2 * 200
    assert (
        service.attribution(
            record.id, service.prepare(record, tensor=model_input.batch), "saliency", AttributionOptions(target=target)
        )[0].map_on_image
        is None
    )


def test_a_large_photo_is_drawn_scaled_down(tmp_path: Path) -> None:
    service = Convscope(tmp_path / "store", providers=["CPUExecutionProvider"])
    record = service.upload([("", local_conv_model())], preprocessing=Preprocessing(resize=100, size=(CROP, CROP)))
    encoded = io.BytesIO()
    Image.fromarray(np.full((1500, 3000, 3), 128, np.uint8)).save(encoded, format="PNG")
    model_input = service.prepare(record, images=[encoded.getvalue()])
    result, png = service.attribution(record.id, model_input, "saliency", AttributionOptions(target=ROW * CROP + COL))
    # 1500×3000 shown at 512×1024; the 96² crop of its 100×200 resize starts at (2, 52): at
    # (10.24, 266.24) in the shown image, 5.12 shown pixels per crop pixel.
    assert result.map_on_image is not None and result.map_on_image.shape == (512, 1024)
    width, height = Image.open(io.BytesIO(png)).size  # the crop's map (drawn ×4) beside the shown photo
    assert width >= 4 * CROP + 1024 and height >= 512
    rows, cols = np.nonzero(result.map_on_image)
    assert rows.min() >= 10 and rows.max() < 10 + 5.12 * CROP + 1 and cols.min() >= 266 and cols.max() < 266 + 5.12 * CROP + 1
