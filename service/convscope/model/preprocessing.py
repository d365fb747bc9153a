"""Turn what a client sent — a raw tensor or encoded images — into the model's input batch."""

from __future__ import annotations

import dataclasses
import io
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from convscope.errors import InvalidArgument, ResourceExhausted
from convscope.limits import DEFAULT_MAX_IMAGE_PIXELS, check_pixels
from convscope.model.types import ModelRecord, Preprocessing
from convscope_client.choices import Interpolation

# Pillow's own bomb check is a warning until 2× its limit; we make it an error. The operator's
# limit (RequestLimits.max_image_pixels) is checked on the header before decoding.
Image.MAX_IMAGE_PIXELS = DEFAULT_MAX_IMAGE_PIXELS
# What a model's input needs; TIFF and the rest bring decoders with a long CVE history.
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP")
# Recognized by their first bytes only, to say what was sent without parsing it.
REFUSED_FORMATS = {b"II*\x00": "TIFF", b"MM\x00*": "TIFF", b"GIF8": "GIF", b"%PDF": "PDF", b"\x00\x00\x01\x00": "ICO"}


def allow_pixels(limit: int) -> None:
    """Raise Pillow's process-wide bomb limit to at least ``limit``, so the operator's own limit
    (checked on each header, with its flag in the message) is the one that applies."""
    Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, limit)


def _other_format(data: bytes) -> str | None:
    return next((name for magic, name in REFUSED_FORMATS.items() if data.startswith(magic)), None)


# Maps drawn on the image as sent use it at most this large (long side): a 12-megapixel photo
# would otherwise cost a 48 MB map in every response and a second to encode its PNG.
MAX_SHOWN_SIDE = 1024

RESAMPLING = {
    Interpolation.BILINEAR: Image.Resampling.BILINEAR,
    Interpolation.BICUBIC: Image.Resampling.BICUBIC,
    Interpolation.NEAREST: Image.Resampling.NEAREST,
}


@dataclass(frozen=True)
class ModelInput:
    """The batch to feed, and (for images) what the model saw, for drawing overlays."""

    batch: np.ndarray
    pictures: tuple[np.ndarray, ...] = ()  # uint8 H×W×3 per sample, after resize/crop
    originals: tuple[np.ndarray, ...] = ()  # uint8 H×W×3 per sample, the images as sent (≤ MAX_SHOWN_SIDE)
    placements: tuple[Placement, ...] = ()  # where each picture lies in its original
    # The model's other inputs by name (a scale factor, an image size, a mask), fed as given.
    others: Mapping[str, np.ndarray] = field(default_factory=dict)


def with_others(record: ModelRecord, model_input: ModelInput, others: Mapping[str, np.ndarray]) -> ModelInput:
    """``model_input`` with the model's other inputs, checked (``checked_others``)."""
    return dataclasses.replace(model_input, others=checked_others(record, others, len(model_input.batch)))


def checked_others(record: ModelRecord, others: Mapping[str, np.ndarray], samples: int) -> dict[str, np.ndarray]:
    """The model's other inputs, checked: every one present, by its name, dtype and rank,
    batched ones (symbolic first axis) with ``samples`` samples."""
    expected = {spec.name: spec for spec in record.inputs[1:]}
    unknown, missing = set(others) - set(expected), set(expected) - set(others)
    if unknown or missing:
        raise InvalidArgument(
            f"the model's inputs besides {record.input.name!r} are {sorted(expected)}; "
            + (f"send {sorted(missing)} too" if missing else f"it has no input(s) {sorted(unknown)}")
        )
    checked = {}
    for name, value in others.items():
        spec = expected[name]
        if str(value.dtype) != spec.dtype or value.ndim != len(spec.shape):
            raise InvalidArgument(
                f"input {name!r} takes {spec.dtype} of rank {len(spec.shape)}, got {value.dtype} of shape {list(value.shape)}"
            )
        if spec.shape and spec.shape[0] == -1 and len(value) != samples:
            raise InvalidArgument(f"input {name!r} has {len(value)} samples; {samples} expected")
        checked[name] = np.ascontiguousarray(value)
    return checked


def constant_others(record: ModelRecord, others: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The model's other inputs for a dataset job: one sample's values each (with or without
    the batch axis where the input has one), checked as ``with_others`` checks them."""
    single = {
        spec.name: others[spec.name][None]
        if spec.shape[:1] == (-1,) and others[spec.name].ndim == len(spec.shape) - 1
        else others[spec.name]
        for spec in record.inputs[1:]
        if spec.name in others
    }
    return checked_others(record, {**others, **single}, 1)


def split_feeds(record: ModelRecord, others: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(batched, fixed): other inputs with a symbolic first axis go with the batch's slices;
    the rest are fed whole to every run."""
    batched = {spec.name: others[spec.name] for spec in record.inputs if spec.name in others and spec.shape[:1] == (-1,)}
    return batched, {name: value for name, value in others.items() if name not in batched}


def tiled_others(record: ModelRecord, others: Mapping[str, np.ndarray], times: int) -> dict[str, np.ndarray]:
    """The other inputs for ``times`` stacked copies of the batch (IG steps, noise samples)."""
    batched, fixed = split_feeds(record, others)
    return {**{name: np.concatenate([value] * times) for name, value in batched.items()}, **fixed}


def input_from_tensor(record: ModelRecord, array: np.ndarray) -> ModelInput:
    """A raw tensor is used exactly as given, after checking dtype and shape against the model."""
    spec = record.input
    if str(array.dtype) != spec.dtype:
        raise InvalidArgument(f"input {spec.name!r} takes {spec.dtype}, got {array.dtype}; convert it before sending")
    if array.ndim == len(spec.shape) - 1:
        array = array[None]
    if array.ndim != len(spec.shape) or any(want not in (-1, got) for want, got in zip(spec.shape, array.shape)):
        expected = ["N" if d == -1 and i == 0 else ("?" if d == -1 else d) for i, d in enumerate(spec.shape)]
        raise InvalidArgument(f"input {spec.name!r} takes shape {expected}, got {list(array.shape)}")
    if array.shape[0] == 0:
        raise InvalidArgument("the input batch is empty")
    return ModelInput(np.ascontiguousarray(array))


def from_images(record: ModelRecord, images: Sequence[bytes], *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> ModelInput:
    if not images:
        raise InvalidArgument("no images were sent")
    spec = record.preprocessing
    dtype = _image_dtype(record)
    opened = [_open(data, index, spec, max_pixels) for index, data in enumerate(images)]
    fitted = [_fit(image, spec, spec.size or _spatial_size(record)) for image in opened]
    samples = [ImageSample(picture, spec, dtype) for picture, _ in fitted]
    shown = [_shown(image) for image in opened]
    return ModelInput(
        batch_of(samples),
        tuple(sample.picture for sample in samples),
        tuple(rgb(np.asarray(image)) for image in shown),
        tuple(placement.resized((image.height, image.width)) for (_, placement), image in zip(fitted, shown)),
    )


def _shown(image: Image.Image) -> Image.Image:
    """``image`` scaled down to at most MAX_SHOWN_SIDE on its long side."""
    if max(image.size) <= MAX_SHOWN_SIDE:
        return image
    shown = image.copy()
    shown.thumbnail((MAX_SHOWN_SIDE, MAX_SHOWN_SIDE), Image.Resampling.BILINEAR)
    return shown


def decode_sample(record: ModelRecord, data: bytes, index: int = 0, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> ImageSample:
    """One encoded image → its ImageSample (the picture the model sees, normalized when written).

    Raises InvalidArgument (not an image) or ResourceExhausted (too many pixels), naming ``index``.
    """
    return decode_sized(record, data, index, max_pixels=max_pixels)[0]


def decode_sized(
    record: ModelRecord, data: bytes, index: int = 0, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> tuple[ImageSample, tuple[int, int]]:
    """``decode_sample``, and the image's stored (width, height) from the same decode."""
    spec = record.preprocessing
    image = _open(data, index, spec, max_pixels)
    picture, _ = _fit(image, spec, spec.size or _spatial_size(record))
    return ImageSample(picture, spec, _image_dtype(record)), image.size


def _image_dtype(record: ModelRecord) -> np.dtype:
    dtype = np.dtype(record.input.dtype)
    if not np.issubdtype(dtype, np.floating):
        raise InvalidArgument(f"the model's input takes {dtype}; send a raw tensor instead of images")
    return dtype


def batch_of(values: Sequence[np.ndarray | ImageSample]) -> np.ndarray:
    """Samples (arrays, or images normalized straight into their row) stacked into one batch."""
    first = values[0]
    batch = np.empty((len(values), *first.shape), first.dtype)
    for row, value in zip(batch, values):
        if isinstance(value, ImageSample):
            value.write(row)
        else:
            row[...] = value
    return batch


@dataclass(frozen=True)
class ImageSample:
    """A decoded image and how it becomes its model input sample, normalized only when written
    (``batch_of``): each sample goes straight into its batch, one pass over its floats instead of
    normalizing ahead and stacking, which leaves more of the cores it shares with inference to
    inference (benchmarks/dataset.py measures dataset jobs' throughput)."""

    picture: np.ndarray  # H×W×3 uint8, what the model sees
    spec: Preprocessing
    dtype: np.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return laid_out(self.picture, self.spec).shape

    def value(self) -> np.ndarray:
        return normalize(self.picture, self.spec).astype(self.dtype, copy=False)

    def write(self, out: np.ndarray) -> None:
        if out.dtype == np.float32:
            normalize(self.picture, self.spec, out=out)
        else:
            out[...] = self.value()


def _spatial_size(record: ModelRecord) -> tuple[int, int]:
    """The model's fixed height and width, else the ones the store probed it at."""
    for shape in (record.input.shape, record.probe_shape):
        dims = shape[2:4] if record.preprocessing.layout == "NCHW" else shape[1:3]
        if len(dims) == 2 and min(dims) > 0:
            return int(dims[0]), int(dims[1])
    raise InvalidArgument("the model's input has no fixed height and width; upload it with preprocessing {'size': [H, W]}")


@dataclass(frozen=True)
class Placement:
    """Where the picture a model saw came from in the user's image: a box in its pixels."""

    top: float
    left: float
    height: float
    width: float
    image_size: tuple[int, int]  # the user's image, [H, W]

    def resized(self, size: tuple[int, int]) -> Placement:
        """The same box in the image resized to ``size`` [H, W]."""
        y_scale, x_scale = size[0] / self.image_size[0], size[1] / self.image_size[1]
        return Placement(self.top * y_scale, self.left * x_scale, self.height * y_scale, self.width * x_scale, size)

    def project(self, values: np.ndarray) -> np.ndarray:
        """An H×W map over the model's picture, at the user's image's resolution and where the
        picture came from in it (undoing the resize and crop); zero outside the crop."""
        image_height, image_width = self.image_size
        top, left = round(self.top), round(self.left)
        height, width = max(1, round(self.height)), max(1, round(self.width))
        resized = np.asarray(
            Image.fromarray(values.astype(np.float32), mode="F").resize((width, height), Image.Resampling.BILINEAR)
        )
        projected = np.zeros((image_height, image_width), np.float32)
        rows, cols = slice(max(0, top), min(image_height, top + height)), slice(max(0, left), min(image_width, left + width))
        projected[rows, cols] = resized[rows.start - top : rows.stop - top, cols.start - left : cols.stop - left]
        return projected


def _open(data: bytes, index: int, spec: Preprocessing, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
            check_pixels(image.width, image.height, max_pixels, index)  # the header only: nothing decoded yet
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ResourceExhausted(f"image {index} refused as a decompression bomb ({error}); send it scaled down") from None
    except ResourceExhausted:
        raise
    except Image.UnidentifiedImageError:
        kind = _other_format(data)
        what = (
            f"is {kind}, which the server does not decode"
            if kind
            else "could not be decoded (not an image, or an unknown format)"
        )
        raise InvalidArgument(f"image {index} {what}; send {', '.join(IMAGE_FORMATS)} bytes") from None
    except Exception as error:
        raise InvalidArgument(
            f"image {index} could not be decoded ({type(error).__name__}: truncated or corrupt?); send {', '.join(IMAGE_FORMATS)} bytes"
        ) from None
    return image.convert("L" if spec.grayscale else "RGB")


def _fit(image: Image.Image, spec: Preprocessing, size: tuple[int, int]) -> tuple[np.ndarray, Placement]:
    """The picture the model sees (resized, center-cropped), and where it lies in ``image``."""
    height, width = size
    resample = RESAMPLING[spec.interpolation]
    placement = Placement(0, 0, image.height, image.width, (image.height, image.width))
    if spec.resize:
        scale = spec.resize / min(image.size)
        resized = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
        left, top = (resized[0] - width) // 2, (resized[1] - height) // 2
        x_scale, y_scale = image.width / resized[0], image.height / resized[1]
        placement = Placement(top * y_scale, left * x_scale, height * y_scale, width * x_scale, placement.image_size)
        image = image.resize(resized, resample).crop((left, top, left + width, top + height))
    else:
        image = image.resize((width, height), resample)
    return rgb(np.asarray(image)), placement


def rgb(picture: np.ndarray) -> np.ndarray:
    return np.repeat(picture[..., None], 3, axis=2) if picture.ndim == 2 else picture


def laid_out(picture: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """H×W×3 pixels as the model takes its channels and layout (a view, not yet scaled)."""
    pixels = picture[..., :1] if spec.grayscale else picture
    if spec.channel_order == "BGR":
        pixels = pixels[..., ::-1]
    return pixels.transpose(2, 0, 1) if spec.layout == "NCHW" else pixels


def normalize(picture: np.ndarray, spec: Preprocessing, out: np.ndarray | None = None) -> np.ndarray:
    """H×W×3 uint8 → the model's float32 sample (its layout; into ``out`` when given, else a new
    contiguous array): pixel · scale − mean, then ÷ std, in float32.  Each step writes in place:
    dataset jobs normalize thousands of images beside inference, and temporaries made this 3×
    slower."""
    pixels = laid_out(picture, spec)
    per_channel = (-1, 1, 1) if spec.layout == "NCHW" else (-1,)
    out = np.empty(pixels.shape, np.float32) if out is None else out
    np.multiply(pixels, np.float32(spec.scale), out=out, dtype=np.float32)
    if spec.mean:
        np.subtract(out, np.asarray(spec.mean, np.float32).reshape(per_channel), out=out)
    if spec.std:
        np.divide(out, np.asarray(spec.std, np.float32).reshape(per_channel), out=out)
    return out
