"""Activations requests and responses whose tensor bytes are copied once on each side, not three
or four times.

An all-layers Activations response carries tens of MB.  Through the generated protobuf code the
server copies each tensor to ``bytes``, into the message and again when serializing; the client
copies on parsing, on reading ``value.data`` and on converting to numpy — on a 50 MiB response
that was most of the call.  Both ends here speak standard protobuf wire format (any other client
parses these messages with its generated code); they only move the one large field,
``Activation.value.data``, as a raw buffer: written after the rest of the message, read as a
slice of the received bytes.  The request's input tensor is written the same way: on a one-layer
call the request's own copies cost as much as the response's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convscope_client._proto import convscope_pb2 as pb
from convscope_client.inputs import from_tensor

ACTIVATION_VALUE = 2  # field number of Activation.value
REQUEST_INPUT, INPUT_TENSOR = 2, 1  # field numbers of ActivationsRequest.input and Input.tensor
TENSOR_DTYPE, TENSOR_SHAPE, TENSOR_DATA = 1, 2, 3  # field numbers in Tensor
VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5  # protobuf wire types


@dataclass(frozen=True)
class ActivationFrame:
    """One streamed Activation: every field in ``message`` but the tensor, which is ``value``."""

    message: pb.Activation
    value: np.ndarray | None


@dataclass(frozen=True)
class ActivationsRequestFrame:
    """An ActivationsRequest whose input is ``input_tensor`` when that is set (``message``
    leaves its input unset then), or the images in ``message``."""

    message: pb.ActivationsRequest
    input_tensor: np.ndarray | None


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        low, number = number & 0x7F, number >> 7
        out.append(low | (0x80 if number else 0))
        if not number:
            return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _read_varint(buffer: memoryview, position: int) -> tuple[int, int]:
    number, shift = 0, 0
    while True:
        if position >= len(buffer):
            raise ValueError("truncated varint in an Activation message")
        byte = buffer[position]
        number |= (byte & 0x7F) << shift
        position += 1
        if not byte & 0x80:
            return number, position
        shift += 7


def _field_end(buffer: memoryview, wire_type: int, position: int) -> tuple[int, int]:
    """(start of the field's payload, end of the field) for a field whose key ends at ``position``."""
    if wire_type == VARINT:
        return position, _read_varint(buffer, position)[1]
    if wire_type == FIXED64:
        return position, position + 8
    if wire_type == FIXED32:
        return position, position + 4
    if wire_type == LENGTH_DELIMITED:
        length, start = _read_varint(buffer, position)
        return start, start + length
    raise ValueError(f"unsupported protobuf wire type {wire_type} in an Activation message")


def _tensor_field(path: tuple[int, ...], array: np.ndarray) -> list[bytes | np.ndarray]:
    """The parts of a serialized field at ``path`` (field numbers, outermost first) holding
    ``array`` as a Tensor; joined after the rest of its message, the array's bytes are copied
    once, into the result."""
    array = np.asarray(array, order="C")  # keeps 0-d arrays 0-d, unlike ascontiguousarray
    little_endian = array.astype(array.dtype.newbyteorder("<"), copy=False)
    meta = pb.Tensor(dtype=str(array.dtype), shape=array.shape).SerializeToString()
    data_header = _key(TENSOR_DATA, LENGTH_DELIMITED) + _varint(array.nbytes)
    length = len(meta) + len(data_header) + array.nbytes
    headers: list[bytes] = []
    for field in reversed(path):
        header = _key(field, LENGTH_DELIMITED) + _varint(length)
        headers.insert(0, header)
        length += len(header)
    return [*headers, meta, data_header, little_endian.reshape(-1).view(np.uint8)]


def encode_activation(frame: ActivationFrame) -> bytes:
    """The serialized Activation, with the tensor's bytes copied once (into the result)."""
    head = frame.message.SerializeToString()
    if frame.value is None:
        return head
    return b"".join([head, *_tensor_field((ACTIVATION_VALUE,), frame.value)])


def encode_activations_request(frame: ActivationsRequestFrame) -> bytes:
    """The serialized ActivationsRequest, with the input tensor's bytes copied once."""
    head = frame.message.SerializeToString()
    if frame.input_tensor is None:
        return head
    return b"".join([head, *_tensor_field((REQUEST_INPUT, INPUT_TENSOR), frame.input_tensor)])


def decode_activation(wire: bytes) -> tuple[pb.Activation, np.ndarray | None]:
    """The Activation without its tensor, and the tensor as a writable array (one copy)."""
    buffer = memoryview(wire)
    value, rest, merged = _split(buffer, 0, len(buffer), ACTIVATION_VALUE)
    data, meta, merged_data = _split(buffer, *value, TENSOR_DATA) if value else (None, b"", False)
    if merged or merged_data:  # a field sent in parts: protobuf merges them
        message = pb.Activation.FromString(wire)
        array = from_tensor(message.value)
        message.ClearField("value")
        return message, array
    message = pb.Activation.FromString(rest)
    if value is None:
        return message, None
    tensor = pb.Tensor.FromString(meta)
    if data is None:
        return message, from_tensor(tensor)
    dtype = np.dtype(tensor.dtype)
    count = (data[1] - data[0]) // max(dtype.itemsize, 1)
    flat = np.frombuffer(buffer, dtype=dtype.newbyteorder("<"), count=count, offset=data[0])
    return message, flat.astype(dtype).reshape(tuple(tensor.shape))


def _split(buffer: memoryview, start: int, end: int, field: int) -> tuple[tuple[int, int] | None, bytes, bool]:
    """For the message in ``buffer[start:end]``: where the payload of length-delimited ``field``
    lies, the bytes of every other field, and whether ``field`` comes more than once (or in
    another wire type), when only protobuf's own parsing gives the merged value."""
    span: tuple[int, int] | None = None
    others: list[memoryview] = []
    merged = False
    position = start
    while position < end:
        key, after_key = _read_varint(buffer, position)
        payload_start, field_end = _field_end(buffer, key & 7, after_key)
        if field_end > end:
            raise ValueError("truncated field in an Activation message")
        if key >> 3 == field:
            merged = merged or span is not None or key & 7 != LENGTH_DELIMITED
            span = (payload_start, field_end)
        else:
            others.append(buffer[position:field_end])
        position = field_end
    return span, b"".join(others), merged
