"""The parts of the Open Inference Protocol endpoint that tritonclient does not reach (it always
sends raw contents and cannot set a requested output's parameters), called with the stubs
generated from the vendored proto, on a small net."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from convscope.rpc.server import RunningServer
from convscope_client import Client
from convscope_client._proto import open_inference_grpc_pb2 as oip
from convscope_client._proto import open_inference_grpc_pb2_grpc as oip_grpc
from tests.nets import exported
from tests.oracles import random_input

NAME = "oip-resnet-style"


@pytest.fixture(scope="module")
def stub(server: RunningServer) -> Iterator[oip_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield oip_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture(scope="module")
def model_id(client: Client) -> str:
    return client.upload_model(exported("ResNetStyle", "torchscript").SerializeToString(), name=NAME).id


def _request(x: np.ndarray, *outputs: str, raw: bool = True, model: str = NAME, **options: object) -> oip.ModelInferRequest:
    request = oip.ModelInferRequest(model_name=model, **options)  # type: ignore[arg-type]
    sent = request.inputs.add(name="input", datatype="FP32", shape=list(x.shape))
    if raw:
        request.raw_input_contents.append(x.tobytes())
    else:
        sent.contents.fp32_contents[:] = x.reshape(-1).tolist()
    for name in outputs:
        request.outputs.add(name=name)
    return request


def _output(response: oip.ModelInferResponse, index: int) -> np.ndarray:
    tensor = response.outputs[index]
    return np.frombuffer(response.raw_output_contents[index], np.float32).reshape(tensor.shape)


def _code(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    return caught.value.code()


def test_typed_contents_equal_raw_contents_and_the_model_is_found_by_id(stub, model_id: str, client: Client) -> None:
    x = random_input((2, 3, 32, 32), seed=3)
    output = client.get_model(model_id).outputs[0].name
    raw = stub.ModelInfer(_request(x, output, id="r1"))
    typed = stub.ModelInfer(_request(x, output, raw=False, model=model_id[:10], model_version=model_id))
    assert raw.id == "r1" and raw.model_version == model_id and raw.outputs[0].datatype == "FP32"
    np.testing.assert_array_equal(_output(raw, 0), _output(typed, 0))
    np.testing.assert_array_equal(_output(raw, 0), client.activations(model_id, x, layers=[output])[output])


def test_attribution_parameters_on_the_requested_output(stub, model_id: str, client: Client) -> None:
    x = random_input((1, 3, 32, 32), seed=4)
    request = _request(x, "convscope.attribution")
    parameters = request.outputs[0].parameters
    parameters["method"].string_param = "integrated_gradients"
    parameters["target"].int64_param = 3
    parameters["steps"].int64_param = 8
    response = stub.ModelInfer(request)
    ours = client.attribution(model_id, x, method="integrated_gradients", target=3, steps=8)
    np.testing.assert_array_equal(_output(response, 0), ours.map)
    assert response.outputs[0].parameters["targets"].string_param == "3"


def test_refusals(stub, model_id: str) -> None:
    x = random_input((1, 3, 32, 32))
    unknown_parameter = _request(x, "convscope.attribution")
    unknown_parameter.outputs[0].parameters["colour"].string_param = "red"
    assert _code(lambda: stub.ModelInfer(unknown_parameter)) == grpc.StatusCode.INVALID_ARGUMENT
    wrong_kind = _request(x, "convscope.attribution")
    wrong_kind.outputs[0].parameters["target"].string_param = "3"
    assert _code(lambda: stub.ModelInfer(wrong_kind)) == grpc.StatusCode.INVALID_ARGUMENT
    short = _request(x)
    short.raw_input_contents[0] = x.tobytes()[:-4]
    assert _code(lambda: stub.ModelInfer(short)) == grpc.StatusCode.INVALID_ARGUMENT
    assert _code(lambda: stub.ModelInfer(_request(x, model=NAME, model_version="0" * 64))) == grpc.StatusCode.NOT_FOUND
    assert _code(lambda: stub.ModelMetadata(oip.ModelMetadataRequest(name="no-such-model"))) == grpc.StatusCode.NOT_FOUND
    assert not stub.ModelReady(oip.ModelReadyRequest(name="no-such-model")).ready
    assert stub.ModelReady(oip.ModelReadyRequest(name=NAME, version=model_id)).ready
