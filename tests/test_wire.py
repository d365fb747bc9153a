"""convscope_client.wire: Activations requests and responses written and read with one copy of
the tensor bytes must be the same protobuf messages the generated code writes and reads."""

from __future__ import annotations

import numpy as np
import pytest

from convscope_client._proto import convscope_pb2 as pb
from convscope_client.inputs import fill_tensor, from_tensor
from convscope_client.wire import (
    ACTIVATION_VALUE,
    INPUT_TENSOR,
    REQUEST_INPUT,
    RESPONSE_ACTIVATIONS,
    TENSOR_DATA,
    TENSOR_DTYPE,
    TENSOR_SHAPE,
    ActivationFrame,
    ActivationsRequestFrame,
    _varint,
    decode_activation,
    decode_activations_request,
    decode_activations_response,
    encode_activation,
    encode_activations_request,
    encode_activations_response,
)

ARRAYS = {
    "float32 map": np.random.default_rng(0).standard_normal((2, 3, 5, 7)).astype(np.float32),
    "big-endian float64": np.arange(12, dtype=">f8").reshape(3, 4),
    "int64 vector": np.arange(-5, 5, dtype=np.int64),
    "bool": np.array([[True, False], [False, True]]),
    "uint8 image": np.arange(48, dtype=np.uint8).reshape(4, 4, 3),
    "float16": np.linspace(-2, 2, 9, dtype=np.float16),
    "scalar": np.array(3.5, np.float32),
    "empty": np.zeros((0, 4), np.float32),
    "non-contiguous": np.arange(60, dtype=np.float32).reshape(6, 10)[:, ::3],
    "large": np.random.default_rng(1).standard_normal((1, 16, 128, 128)).astype(np.float32),
}


def header(with_extras: bool) -> pb.Activation:
    message = pb.Activation(tensor="/features/conv0/Conv_output_0")
    if with_extras:
        message.stats.mean[:] = [0.5, -1.0]
        message.stats.max[:] = [2.0, 3.0]
        message.stats.zero_fraction[:] = [0.25, 0.0]
        message.png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    return message


def reference(message: pb.Activation, array: np.ndarray | None) -> pb.Activation:
    """What the generated code would send for the same content."""
    full = pb.Activation()
    full.CopyFrom(message)
    if array is not None:
        fill_tensor(full.value, array)
    return full


@pytest.mark.parametrize("with_extras", [False, True], ids=["bare", "stats+png"])
@pytest.mark.parametrize("name", list(ARRAYS))
def test_encoded_message_is_the_generated_message(name: str, with_extras: bool) -> None:
    array = ARRAYS[name]
    wire = encode_activation(ActivationFrame(header(with_extras), array))
    parsed = pb.Activation.FromString(wire)
    assert parsed == reference(header(with_extras), array)
    assert np.array_equal(from_tensor(parsed.value), array)


@pytest.mark.parametrize("with_extras", [False, True], ids=["bare", "stats+png"])
@pytest.mark.parametrize("name", list(ARRAYS))
def test_decoding_generated_messages(name: str, with_extras: bool) -> None:
    array = ARRAYS[name]
    for wire in (
        reference(header(with_extras), array).SerializeToString(),  # any server's bytes
        encode_activation(ActivationFrame(header(with_extras), array)),  # ours
    ):
        message, value = decode_activation(wire)
        assert message == header(with_extras)
        assert value is not None
        assert value.dtype == array.dtype and value.shape == array.shape
        assert np.array_equal(value, array)
        assert value.flags.writeable  # a copy the caller owns, not a view of the wire bytes


def test_message_without_a_value() -> None:
    wire = encode_activation(ActivationFrame(header(True), None))
    assert wire == header(True).SerializeToString()
    assert decode_activation(wire) == (header(True), None)


def test_a_value_split_over_two_fields_is_merged_as_protobuf_does() -> None:
    array = ARRAYS["float32 map"]
    meta = pb.Activation(value=pb.Tensor(dtype="float32", shape=array.shape)).SerializeToString()
    data = pb.Activation(value=pb.Tensor(data=array.tobytes())).SerializeToString()
    message, value = decode_activation(header(True).SerializeToString() + meta + data)
    assert message == header(True)
    assert np.array_equal(value, array)


def test_a_repeated_data_field_keeps_the_last_as_protobuf_does() -> None:
    array = ARRAYS["float32 map"]
    stale = pb.Tensor(dtype="float32", shape=array.shape, data=bytes(array.nbytes)).SerializeToString()
    tensor = stale + pb.Tensor(data=array.tobytes()).SerializeToString()  # one Tensor, data twice
    value = bytes([ACTIVATION_VALUE << 3 | 2]) + _varint(len(tensor)) + tensor
    wire = header(False).SerializeToString() + value
    assert np.array_equal(from_tensor(pb.Activation.FromString(wire).value), array)
    message, decoded = decode_activation(wire)
    assert message == header(False)
    assert np.array_equal(decoded, array)


def test_data_that_does_not_fit_its_shape_is_refused_as_the_generated_path_refuses_it() -> None:
    tensor = pb.Tensor(dtype="float32", shape=[2], data=bytes(9))  # 2 floats need 8 bytes
    wire = pb.Activation(tensor="t", value=tensor).SerializeToString()
    with pytest.raises(ValueError):
        from_tensor(tensor)
    with pytest.raises(ValueError):
        decode_activation(wire)


def test_truncated_messages_are_refused() -> None:
    wire = encode_activation(ActivationFrame(header(False), ARRAYS["float32 map"]))
    with pytest.raises(ValueError, match="truncated"):
        decode_activation(wire[:-3])


def response_frames() -> list[ActivationFrame]:
    """Every kind of array, with and without statistics, plus an element without a value."""
    frames = [ActivationFrame(header(index % 2 == 1), array) for index, array in enumerate(ARRAYS.values())]
    return [*frames, ActivationFrame(header(True), None)]


def test_encoded_response_is_the_generated_response() -> None:
    frames = response_frames()
    expected = pb.ActivationsResponse(activations=[reference(frame.message, frame.value) for frame in frames])
    assert pb.ActivationsResponse.FromString(encode_activations_response(frames)) == expected
    assert encode_activations_response([]) == b""


def test_decoding_generated_responses() -> None:
    frames = response_frames()
    generated = pb.ActivationsResponse(activations=[reference(frame.message, frame.value) for frame in frames])
    for wire in (generated.SerializeToString(), encode_activations_response(frames)):
        decoded = decode_activations_response(wire)
        assert [message for message, _ in decoded] == [frame.message for frame in frames]
        for (_, value), frame in zip(decoded, frames):
            if frame.value is None:
                assert value is None
            else:
                assert value is not None and value.dtype == frame.value.dtype and np.array_equal(value, frame.value)
                assert value.flags.writeable


def test_a_response_with_an_unknown_field_decodes_its_activations() -> None:
    """A newer server may add fields to ActivationsResponse; an older client skips them."""
    frames = response_frames()[:2]
    unknown = _varint(15 << 3 | 2) + _varint(3) + b"new" + _varint(16 << 3) + _varint(300)
    decoded = decode_activations_response(unknown + encode_activations_response(frames) + unknown)
    assert [message for message, _ in decoded] == [frame.message for frame in frames]


def test_truncated_responses_are_refused() -> None:
    wire = encode_activations_response(response_frames()[:1])
    with pytest.raises(ValueError, match="truncated"):
        decode_activations_response(wire[:-3])


def test_field_numbers_are_the_protos() -> None:
    fields = {
        (pb.Activation, "value"): ACTIVATION_VALUE,
        (pb.ActivationsResponse, "activations"): RESPONSE_ACTIVATIONS,
        (pb.ActivationsRequest, "input"): REQUEST_INPUT,
        (pb.Input, "tensor"): INPUT_TENSOR,
        (pb.Tensor, "dtype"): TENSOR_DTYPE,
        (pb.Tensor, "shape"): TENSOR_SHAPE,
        (pb.Tensor, "data"): TENSOR_DATA,
    }
    for (message, name), number in fields.items():
        assert message.DESCRIPTOR.fields_by_name[name].number == number


def request_head() -> pb.ActivationsRequest:
    return pb.ActivationsRequest(model_id="0" * 64, layers=["a", "b/c"], render=True, omit_statistics=True)


@pytest.mark.parametrize("name", list(ARRAYS))
def test_encoded_request_is_the_generated_request(name: str) -> None:
    array = ARRAYS[name]
    expected = request_head()
    fill_tensor(expected.input.tensor, array)
    wire = encode_activations_request(ActivationsRequestFrame(request_head(), array))
    assert pb.ActivationsRequest.FromString(wire) == expected


def test_a_request_of_images_is_serialized_as_it_is() -> None:
    request = request_head()
    request.input.images.images[:] = [b"\x89PNG one", b"\xff\xd8 two"]
    assert encode_activations_request(ActivationsRequestFrame(request, None)) == request.SerializeToString()


def whole(received) -> pb.ActivationsRequest:
    """The request a server decoding with the generated code would see."""
    message = pb.ActivationsRequest()
    message.CopyFrom(received.message)
    if received.tensor_data is not None:
        message.input.tensor.data = bytes(received.tensor_data)
    return message


@pytest.mark.parametrize("name", list(ARRAYS))
def test_a_tensor_request_is_read_with_its_data_as_a_view(name: str) -> None:
    array = ARRAYS[name]
    expected = request_head()
    fill_tensor(expected.input.tensor, array)
    for wire in (expected.SerializeToString(), encode_activations_request(ActivationsRequestFrame(request_head(), array))):
        received = decode_activations_request(wire)
        assert received.tensor_data is not None and received.tensor_data.readonly
        assert received.message.input.WhichOneof("kind") == "tensor"
        assert received.message.input.tensor.data == b""  # not copied into the message
        assert whole(received) == expected


def test_requests_only_protobuf_merges_are_parsed_whole() -> None:
    array = ARRAYS["float32 map"]
    tensor_request = request_head()
    fill_tensor(tensor_request.input.tensor, array)
    images = request_head()
    images.input.images.images[:] = [b"\x89PNG one"]
    data_twice = pb.ActivationsRequest(input=pb.Input(tensor=pb.Tensor(data=b"stale")))
    cases = {
        "images": images.SerializeToString(),
        "no input": request_head().SerializeToString(),
        "tensor, then images (the oneof keeps the last)": tensor_request.SerializeToString() + images.SerializeToString(),
        "images, then tensor": images.SerializeToString() + tensor_request.SerializeToString(),
        "data sent twice": data_twice.SerializeToString() + tensor_request.SerializeToString(),
    }
    for case, wire in cases.items():
        received = decode_activations_request(wire)
        assert whole(received) == pb.ActivationsRequest.FromString(wire), case
