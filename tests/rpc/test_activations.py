"""Activations over the real server equal onnxruntime on the unmodified model."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from convscope_client._proto import convscope_pb2 as pb
from convscope_client._proto import convscope_pb2_grpc as pb_grpc
from convscope_client.inputs import fill_tensor, from_tensor
from tests.forward_oracle import assert_same_activation, reference_tensors
from tests.nets import NETS, exported

NET_NAMES = ["ResNetStyle", "DepthwiseReLU6Net", "HardcodedReshapeNet"]


@pytest.fixture(scope="module")
def uploaded(client, tmp_path_factory):
    models = {}
    for name in NET_NAMES:
        model = exported(name, "torchscript")
        info = client.upload_model(model.SerializeToString(), name=name)
        models[name] = (model, info)
    return models


@pytest.mark.parametrize("named", [False, True], ids=["every-layer-streamed", "all-named-in-one-response"])
@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("name", NET_NAMES)
def test_every_activation_equals_onnxruntime_on_the_unmodified_model(client, uploaded, name, batch, named):
    model, info = uploaded[name]
    assert info.dynamic_batch, "the dynamic_batch pass should make every one of these nets batchable"
    x = np.random.default_rng(batch).standard_normal((batch, *NETS[name].input_shape)).astype(np.float32)
    # The client streams every layer (StreamActivations) and asks for named ones in one
    # response (Activations): both must give the same tensors.
    got = client.activations(info.id, x, layers=[layer.tensor for layer in info.layers] if named else None)
    assert set(got) == {layer.tensor for layer in info.layers} and "output" in got
    tensors = sorted(got)
    # The unmodified model may bake batch 1 (HardcodedReshapeNet): feed it one sample at a time.
    fixed = NETS[name].fixed_batch is not None
    references = (
        [reference_tensors(model, {"input": x[i : i + 1]}, tensors) for i in range(batch)]
        if fixed
        else [reference_tensors(model, {"input": x}, tensors)]
    )
    for tensor in tensors:
        expected = np.concatenate([r[tensor] for r in references])
        assert_same_activation(got[tensor], expected)


def test_one_layer_and_statistics(client, uploaded):
    model, info = uploaded["ResNetStyle"]
    relu = next(layer for layer in info.layers if layer.op_type == "Relu")
    x = np.random.default_rng(7).standard_normal((2, *NETS["ResNetStyle"].input_shape)).astype(np.float32)
    [detail] = client.activation_details(info.id, x, layers=[relu.tensor], render=True)
    value = detail.value
    assert_same_activation(value, reference_tensors(model, {"input": x}, [relu.tensor])[relu.tensor])
    per_channel = value.transpose(1, 0, 2, 3).reshape(value.shape[1], -1)
    np.testing.assert_allclose(detail.stats.mean, per_channel.mean(1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(detail.stats.max, per_channel.max(1), rtol=1e-6)
    np.testing.assert_allclose(detail.stats.zero_fraction, (per_channel == 0).mean(1), atol=1e-6)
    assert detail.png.startswith(b"\x89PNG")


def test_both_activations_methods_speak_plain_protobuf(client, uploaded):
    """What any other gRPC client gets from its generated code: the same Activation messages
    from the unary method and the stream, values equal to onnxruntime's."""
    model, info = uploaded["DepthwiseReLU6Net"]
    layers = [layer.tensor for layer in info.layers if layer.op_type in ("Clip", "Conv")][:3] + ["output"]
    x = np.random.default_rng(3).standard_normal((2, *NETS["DepthwiseReLU6Net"].input_shape)).astype(np.float32)
    request = pb.ActivationsRequest(model_id=info.id, layers=layers, render=True)
    fill_tensor(request.input.tensor, x)
    with grpc.insecure_channel(client.address) as channel:
        stub = pb_grpc.ConvscopeStub(channel)
        unary = list(stub.Activations(request, timeout=60).activations)
        streamed = list(stub.StreamActivations(request, timeout=60))
    assert unary == streamed
    assert [a.tensor for a in unary] == layers
    expected = reference_tensors(model, {"input": x}, layers)
    for activation in unary:
        assert_same_activation(from_tensor(activation.value), expected[activation.tensor])
        assert len(activation.stats.mean) == expected[activation.tensor].shape[1]
        assert activation.png.startswith(b"\x89PNG")


def test_dead_filters_fraction_over_inputs(client, uploaded):
    model, info = uploaded["ResNetStyle"]
    relus = [layer.tensor for layer in info.layers if layer.op_type == "Relu"]
    batches = [
        np.random.default_rng(i).standard_normal((3, *NETS["ResNetStyle"].input_shape)).astype(np.float32) for i in range(2)
    ]
    reports = client.dead_filters(info.id, batches, layers=relus)
    values = [reference_tensors(model, {"input": b}, relus) for b in batches]
    for tensor in relus:
        stacked = np.concatenate([v[tensor] for v in values])
        expected = (~stacked.reshape(6, stacked.shape[1], -1).any(axis=2)).mean(axis=0)
        np.testing.assert_allclose(reports[tensor], expected, atol=1e-6)
    assert reports.samples == 6


def test_the_unary_dead_filters_rpc_counts_the_same_with_a_threshold(client, uploaded):
    model, info = uploaded["ResNetStyle"]
    relus = [layer.tensor for layer in info.layers if layer.op_type == "Relu"]
    batches = [
        np.random.default_rng(i).standard_normal((3, *NETS["ResNetStyle"].input_shape)).astype(np.float32) for i in range(2)
    ]
    request = pb.DeadFiltersRequest(model_id=info.id, layers=relus, threshold=0.5)
    for batch in batches:
        fill_tensor(request.inputs.add().tensor, batch)
    with grpc.insecure_channel(client.address) as channel:
        response = pb_grpc.ConvscopeStub(channel).DeadFilters(request, timeout=60)
    values = [reference_tensors(model, {"input": b}, relus) for b in batches]
    assert response.samples == 6 and [layer.tensor for layer in response.layers] == relus
    for layer in response.layers:
        stacked = np.concatenate([v[layer.tensor] for v in values])
        expected = (~stacked.reshape(6, stacked.shape[1], -1).any(axis=2)).mean(axis=0)
        np.testing.assert_allclose(layer.zero_fraction, expected, atol=1e-6)
        assert list(layer.dead) == np.flatnonzero(expected >= 0.5).tolist()


def test_bundled_model_predicts_a_cat(client, bundled_model_id):
    from tests.conftest import CAT_PHOTO

    info = client.get_model(bundled_model_id)
    logits = client.activations(bundled_model_id, CAT_PHOTO, layers=["logits"])["logits"]
    top1 = int(np.argmax(logits[0]))
    assert 281 <= top1 <= 285, f"top-1 is {info.labels[top1]!r}, not a cat"
    assert "cat" in info.labels[top1]
