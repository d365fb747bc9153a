"""What a caller may pass as model input, turned into the protobuf Input message."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np

from convscope_client._proto import convscope_pb2 as pb

ImageLike = Union[str, os.PathLike, bytes, Any]  # Any: a PIL image
# A dict names the model's inputs ({"image": photo, "scale_factor": array}) for models with several.
Inputs = Union[np.ndarray, ImageLike, Sequence[ImageLike], Mapping[str, Any]]


def tensor_data(array: np.ndarray) -> np.ndarray:
    """What a Tensor's ``data`` holds for ``array``: its elements in C order, little-endian, as a
    flat uint8 array (a view where the array is laid out so already)."""
    array = np.asarray(array, order="C")  # not ascontiguousarray: it makes 0-d arrays 1-d
    return array.astype(array.dtype.newbyteorder("<"), copy=False).reshape(-1).view(np.uint8)


def fill_tensor(message: pb.Tensor, array: np.ndarray) -> pb.Tensor:
    """Write ``array`` into ``message`` in place: building a Tensor and then assigning it to a
    field would copy the bytes once more, which shows on responses of tens of MB."""
    array = np.asarray(array)
    message.dtype = str(array.dtype)
    message.shape[:] = array.shape
    message.data = tensor_data(array).tobytes()
    return message


def from_tensor(message: pb.Tensor, data: bytes | memoryview | None = None, *, copy: bool = True) -> np.ndarray:
    """The Tensor's array: a writable copy, or (``copy=False``) a read-only view of the bytes
    where they are little-endian already.  ``data``: its bytes, when kept out of ``message``."""
    dtype = np.dtype(message.dtype)
    little_endian = np.frombuffer(message.data if data is None else data, dtype=dtype.newbyteorder("<"))
    return little_endian.astype(dtype, copy=copy).reshape(tuple(message.shape))


def _image_bytes(item: ImageLike) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, (str, os.PathLike)):
        return Path(item).read_bytes()
    if hasattr(item, "save"):  # PIL image
        buffer = io.BytesIO()
        item.save(buffer, format="PNG")
        return buffer.getvalue()
    raise TypeError(f"cannot send {type(item).__name__} as an image: pass a path, bytes, a PIL image or a numpy array")


def input_array(inputs: Inputs) -> np.ndarray | None:
    """The array when ``inputs`` go as a raw tensor (a numpy array, or a .npy path), else None."""
    if isinstance(inputs, (str, os.PathLike)) and str(inputs).endswith(".npy"):
        return np.load(inputs)
    return inputs if isinstance(inputs, np.ndarray) else None


def fill_input(message: pb.Input, inputs: Inputs) -> None:
    """Write ``inputs`` into a request's Input in place (a built Input assigned to the request
    would be copied whole once more): arrays go as raw tensors, used exactly as given; images
    as encoded bytes.  A dict names the model's inputs: its image input (the entry holding
    images, else the first 4-D array) goes as above, the others as arrays by name."""
    if isinstance(inputs, Mapping):
        image = next((name for name, value in inputs.items() if input_array(value) is None), None)
        image = image or next((name for name, value in inputs.items() if np.ndim(value) == 4), next(iter(inputs)))
        for name, value in inputs.items():
            if name != image:
                fill_tensor(message.others[name], np.asarray(value))
        message.name = image
        inputs = inputs[image]
    array = input_array(inputs)
    if array is not None:
        fill_tensor(message.tensor, array)
        return
    items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    message.images.images[:] = [_image_bytes(item) for item in items]
