"""Tensors as the Open Inference Protocol carries them: a datatype name, a shape, and either the
row-major little-endian bytes (``raw_*_contents``) or a typed repeated field."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from convscope.errors import InvalidArgument

# The protocol's tensor datatypes and numpy's names for them (BYTES has no fixed-size dtype).
DATATYPES = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
}
DTYPES = {dtype: datatype for datatype, dtype in DATATYPES.items()}

# Which repeated field of InferTensorContents holds each datatype (FP16 travels raw only).
CONTENTS_FIELDS = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}


def datatype_of(dtype: str | np.dtype) -> str:
    """The protocol's name for a numpy dtype."""
    name = str(np.dtype(dtype))
    if name not in DTYPES:
        raise InvalidArgument(f"dtype {name} has no Open Inference Protocol datatype")
    return DTYPES[name]


def dtype_of(datatype: str, tensor: str) -> np.dtype:
    """The numpy dtype of a protocol datatype, refusing those convscope cannot feed a model."""
    if datatype not in DATATYPES:
        raise InvalidArgument(f"input {tensor!r}: datatype {datatype!r} is not one of {sorted(DATATYPES)}")
    return np.dtype(DATATYPES[datatype]).newbyteorder("<")


def from_raw(data: bytes, datatype: str, shape: Sequence[int], tensor: str) -> np.ndarray:
    """A tensor from its raw contents, checked against its declared shape (a read-only view)."""
    dtype = dtype_of(datatype, tensor)
    if any(d < 0 for d in shape):
        raise InvalidArgument(f"input {tensor!r}: shape {list(shape)} has a negative dimension")
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise InvalidArgument(
            f"input {tensor!r}: {len(data)} bytes of raw contents, but {datatype} of shape {list(shape)} takes {expected}"
        )
    return np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def from_contents(contents: object, datatype: str, shape: Sequence[int], tensor: str) -> np.ndarray:
    """A tensor from the typed repeated field that matches its datatype."""
    dtype = dtype_of(datatype, tensor)
    if datatype not in CONTENTS_FIELDS:
        raise InvalidArgument(f"input {tensor!r}: {datatype} travels as raw contents only")
    values = np.asarray(getattr(contents, CONTENTS_FIELDS[datatype]), dtype=dtype)
    count = int(np.prod(shape, dtype=np.int64))
    if any(d < 0 for d in shape) or values.size != count:
        raise InvalidArgument(f"input {tensor!r}: {values.size} values in contents, but shape {list(shape)} holds {count}")
    return values.reshape(shape)


def to_raw(array: np.ndarray) -> bytes:
    """The raw contents of a tensor: row-major, little-endian."""
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
