"""Activations requests and responses whose tensor bytes are copied once on each side, not three
or four times.

An all-layers Activations response carries tens of MB.  Through the generated protobuf code the
server copies each tensor to ``bytes``, into the message and again when serializing; the client
copies on parsing, on reading ``value.data`` and on converting to numpy — on a 50 MiB response
that was most of the call.  Both ends here speak standard protobuf wire format (any other client
parses these messages with its generated code); they only move the one large field,
``Activation.value.data``, as a raw buffer: written after the rest of the message, read as a
slice of the received bytes.  The request's input tensor is written the same way: on a one-layer
call the request's own copies cost as much as the response's, and the server reads it as a view of
the received bytes.  A unary ActivationsResponse is the same Activation messages, each framed as
one element of its repeated field.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from convscope_client._proto import convscope_pb2 as pb
from convscope_client.inputs import from_tensor, tensor_data

ACTIVATION_VALUE = 2  # field number of Activation.value
RESPONSE_ACTIVATIONS = 1  # field number of ActivationsResponse.activations
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


@dataclass(frozen=True)
class ReceivedActivationsRequest:
    """An ActivationsRequest as the server reads it: ``message`` without its input tensor's
    bytes, which are ``tensor_data`` (a read-only view of the received bytes) when the input is
    a tensor.  None for images, and for a message only protobuf's own parser merges (fields sent
    in parts): ``message`` is whole then."""

    message: pb.ActivationsRequest
    tensor_data: memoryview | None


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
            raise ValueError("truncated varint in a protobuf message")
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
    raise ValueError(f"unsupported protobuf wire type {wire_type}")


def _tensor_field(path: tuple[int, ...], array: np.ndarray) -> list[bytes | np.ndarray]:
    """The parts of a serialized field at ``path`` (field numbers, outermost first) holding
    ``array`` as a Tensor; joined after the rest of its message, the array's bytes are copied
    once, into the result."""
    data = tensor_data(array)
    meta = pb.Tensor(dtype=str(array.dtype), shape=array.shape).SerializeToString()
    data_header = _key(TENSOR_DATA, LENGTH_DELIMITED) + _varint(data.nbytes)
    length = len(meta) + len(data_header) + data.nbytes
    headers: list[bytes] = []
    for field in reversed(path):
        header = _key(field, LENGTH_DELIMITED) + _varint(length)
        headers.insert(0, header)
        length += len(header)
    return [*headers, meta, data_header, data]


def _activation_parts(frame: ActivationFrame) -> list[bytes | np.ndarray]:
    head = frame.message.SerializeToString()
    if frame.value is None:
        return [head]
    return [head, *_tensor_field((ACTIVATION_VALUE,), frame.value)]


def encode_activation(frame: ActivationFrame) -> bytes:
    """The serialized Activation, with the tensor's bytes copied once (into the result)."""
    return b"".join(_activation_parts(frame))  # type: ignore[arg-type]  # ndarrays are buffers; numpy declares it only from Python 3.12


def encode_activations_response(frames: Sequence[ActivationFrame]) -> bytes:
    """The serialized ActivationsResponse of ``frames``, each tensor's bytes copied once."""
    parts: list[bytes | np.ndarray] = []
    for frame in frames:
        activation = _activation_parts(frame)  # bytes, and the tensor as a flat uint8 array
        parts += [_key(RESPONSE_ACTIVATIONS, LENGTH_DELIMITED) + _varint(sum(map(len, activation))), *activation]
    return b"".join(parts)  # type: ignore[arg-type]  # ndarrays are buffers; numpy declares it only from Python 3.12


def encode_activations_request(frame: ActivationsRequestFrame) -> bytes:
    """The serialized ActivationsRequest, with the input tensor's bytes copied once."""
    head = frame.message.SerializeToString()
    if frame.input_tensor is None:
        return head
    return b"".join([head, *_tensor_field((REQUEST_INPUT, INPUT_TENSOR), frame.input_tensor)])  # type: ignore[list-item]  # as above


def decode_activation(wire: bytes) -> tuple[pb.Activation, np.ndarray | None]:
    """The Activation without its tensor, and the tensor as a writable array (one copy)."""
    return _decode_activation(memoryview(wire), 0, len(wire))


def decode_activations_response(wire: bytes) -> list[tuple[pb.Activation, np.ndarray | None]]:
    """Each Activation of a serialized ActivationsResponse, as :func:`decode_activation` gives it."""
    buffer = memoryview(wire)
    return [
        _decode_activation(buffer, payload_start, field_end)
        for key, _, payload_start, field_end in _fields(buffer, 0, len(buffer))
        if key == RESPONSE_ACTIVATIONS << 3 | LENGTH_DELIMITED
    ]


def decode_activations_request(wire: bytes) -> ReceivedActivationsRequest:
    """The request without copying its input tensor's bytes (see ReceivedActivationsRequest)."""
    buffer = memoryview(wire)
    lifted = _lift(buffer, 0, len(buffer), (REQUEST_INPUT, INPUT_TENSOR, TENSOR_DATA))
    # Anything but one tensor input (images, no input, both kinds of the oneof, repeated fields).
    if lifted is None or len(lifted[0]) < 3 or lifted[0][1]:
        return ReceivedActivationsRequest(pb.ActivationsRequest.FromString(wire), None)
    (rest, _, tensor_meta), data = lifted
    message = pb.ActivationsRequest.FromString(b"".join(rest))
    message.input.tensor.SetInParent()
    message.input.tensor.MergeFromString(b"".join(tensor_meta))
    return ReceivedActivationsRequest(message, buffer[slice(*data)] if data else buffer[:0])


def _decode_activation(buffer: memoryview, start: int, end: int) -> tuple[pb.Activation, np.ndarray | None]:
    lifted = _lift(buffer, start, end, (ACTIVATION_VALUE, TENSOR_DATA))
    if lifted is None:  # a field sent in parts: protobuf merges them
        message = pb.Activation.FromString(bytes(buffer[start:end]))
        array = from_tensor(message.value)
        message.ClearField("value")
        return message, array
    others, data = lifted
    message = pb.Activation.FromString(b"".join(others[0]))
    if len(others) == 1:
        return message, None
    tensor = pb.Tensor.FromString(b"".join(others[1]))
    return message, from_tensor(tensor, buffer[slice(*data)] if data else None)


def _lift(
    buffer: memoryview, start: int, end: int, path: tuple[int, ...]
) -> tuple[list[list[memoryview]], tuple[int, int] | None] | None:
    """Follow ``path`` (field numbers of nested messages, outermost first) into the message in
    ``buffer[start:end]``: at each level reached, the fields off the path (views, joined only
    where parsed); and where the last field's payload lies (None when the path stops short).
    None when a field on the path comes more than once or in another wire type: only
    protobuf's own parser merges those."""
    others: list[list[memoryview]] = []
    span = (start, end)
    for field in path:
        found, rest, merged = _split(buffer, *span, field)
        if merged:
            return None
        others.append(rest)
        if found is None:
            return others, None
        span = found
    return others, span


def _split(buffer: memoryview, start: int, end: int, field: int) -> tuple[tuple[int, int] | None, list[memoryview], bool]:
    """For the message in ``buffer[start:end]``: where the payload of length-delimited ``field``
    lies, every other field, and whether ``field`` comes more than once (or in another wire
    type), when only protobuf's own parsing gives the merged value."""
    span: tuple[int, int] | None = None
    others: list[memoryview] = []
    merged = False
    for key, field_start, payload_start, field_end in _fields(buffer, start, end):
        if key >> 3 == field:
            merged = merged or span is not None or key & 7 != LENGTH_DELIMITED
            span = (payload_start, field_end)
        else:
            others.append(buffer[field_start:field_end])
    return span, others, merged


def _fields(buffer: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(key, where the field starts, where its payload starts, where it ends) for each field of
    the message in ``buffer[start:end]``."""
    position = start
    while position < end:
        key, after_key = _read_varint(buffer, position)
        payload_start, field_end = _field_end(buffer, key & 7, after_key)
        if field_end > end:
            raise ValueError("truncated field in a protobuf message")
        yield key, position, payload_start, field_end
        position = field_end
