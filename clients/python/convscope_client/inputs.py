"""What a caller may pass as model input, turned into the protobuf Input message."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np

from convscope_client._proto import convscope_pb2 as pb

ImageLike = Union[str, os.PathLike, bytes, Any]  # Any: a PIL image
Inputs = Union[np.ndarray, ImageLike, Sequence[ImageLike]]


def fill_tensor(message: pb.Tensor, array: np.ndarray) -> pb.Tensor:
    """Write ``array`` into ``message`` in place: building a Tensor and then assigning it to a
    field would copy the bytes once more, which shows on responses of tens of MB."""
    array = np.asarray(array, order="C")  # not ascontiguousarray: it makes 0-d arrays 1-d
    message.dtype = str(array.dtype)
    message.shape[:] = array.shape
    message.data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    return message


def to_tensor(array: np.ndarray) -> pb.Tensor:
    return fill_tensor(pb.Tensor(), array)


def from_tensor(message: pb.Tensor) -> np.ndarray:
    dtype = np.dtype(message.dtype)
    return np.frombuffer(message.data, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(tuple(message.shape))


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


def to_input(inputs: Inputs) -> pb.Input:
    """numpy arrays go as raw tensors (used exactly as given, .npy paths too); images as encoded bytes."""
    if isinstance(inputs, np.ndarray):
        return pb.Input(tensor=to_tensor(inputs))
    if isinstance(inputs, (str, os.PathLike)) and str(inputs).endswith(".npy"):
        return pb.Input(tensor=to_tensor(np.load(inputs)))
    items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    return pb.Input(images=pb.ImageBatch(images=[_image_bytes(item) for item in items]))
