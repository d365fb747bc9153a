"""gRPC servicer: each method converts the request, calls the data plane, converts back."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
from convscope_client._proto import convscope_pb2 as pb
from convscope_client._proto import convscope_pb2_grpc as pb_grpc

from convscope.core import Convscope
from convscope.errors import Cancelled, InvalidArgument
from convscope.methods.inputs import ModelInput
from convscope.model.types import ModelRecord
from convscope.rpc.convert import floats, model_info, numpy_to_tensor, preprocessing_from_proto, tensor_to_numpy
from convscope.rpc.errors import translate_errors


class ConvscopeServicer(pb_grpc.ConvscopeServicer):
    def __init__(self, core: Convscope) -> None:
        self.core = core

    def _input(self, record: ModelRecord, message: pb.Input) -> ModelInput:
        kind = message.WhichOneof("kind")
        if kind == "tensor":
            return self.core.prepare(record, tensor=tensor_to_numpy(message.tensor))
        if kind == "images":
            return self.core.prepare(record, images=list(message.images.images))
        raise InvalidArgument("the request has no input: set input.tensor or input.images")

    @translate_errors
    def UploadModel(self, request_iterator: Iterator[pb.UploadModelRequest], context: grpc.ServicerContext) -> pb.ModelInfo:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgument("an upload starts with a header message, then the file chunks")
        header = first.header

        def chunks() -> Iterator[tuple[str, bytes]]:
            for message in request_iterator:
                if message.WhichOneof("part") != "chunk":
                    raise InvalidArgument("only file chunks may follow the upload header")
                yield message.chunk.file, message.chunk.data
            if not context.is_active():  # the client went away: the stream ended early
                raise Cancelled("upload cancelled by the client")

        record = self.core.upload(
            chunks(),
            name=header.name,
            preprocessing=preprocessing_from_proto(header.preprocessing) if header.has_preprocessing else None,
            labels=list(header.labels),
        )
        return model_info(record)

    @translate_errors
    def ListModels(self, request: pb.ListModelsRequest, context: grpc.ServicerContext) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(models=[model_info(record, with_layers=False) for record in self.core.models()])

    @translate_errors
    def GetModel(self, request: pb.GetModelRequest, context: grpc.ServicerContext) -> pb.ModelInfo:
        return model_info(self.core.model(request.model_id))

    @translate_errors
    def DeleteModel(self, request: pb.DeleteModelRequest, context: grpc.ServicerContext) -> pb.DeleteModelResponse:
        self.core.delete(request.model_id)
        return pb.DeleteModelResponse(deleted=True)

    @translate_errors
    def Activations(self, request: pb.ActivationsRequest, context: grpc.ServicerContext) -> pb.ActivationsResponse:
        record = self.core.model(request.model_id)
        model_input = self._input(record, request.input)
        results = self.core.activations(record.id, model_input, list(request.layers), render=request.render)
        return pb.ActivationsResponse(
            activations=[
                pb.Activation(
                    tensor=result.tensor,
                    value=None if request.omit_values else numpy_to_tensor(result.value),
                    stats=pb.ChannelStats(
                        mean=floats(result.stats.mean),
                        max=floats(result.stats.max),
                        zero_fraction=floats(result.stats.zero_fraction),
                    ),
                    png=result.png,
                )
                for result in results
            ]
        )

    @translate_errors
    def DeadFilters(self, request: pb.DeadFiltersRequest, context: grpc.ServicerContext) -> pb.DeadFiltersResponse:
        record = self.core.model(request.model_id)
        batches = [self._input(record, message).batch for message in request.inputs]
        if not batches:
            raise InvalidArgument("send at least one input batch")
        reports, samples = self.core.dead_filters(
            record.id, batches, list(request.layers), threshold=request.threshold or 1.0
        )
        return pb.DeadFiltersResponse(
            layers=[
                pb.LayerDeadFilters(tensor=r.tensor, zero_fraction=floats(r.zero_fraction), dead=[int(c) for c in r.dead])
                for r in reports
            ],
            samples=samples,
        )

    @translate_errors
    def Filters(self, request: pb.FiltersRequest, context: grpc.ServicerContext) -> pb.FiltersResponse:
        result = self.core.filters(request.model_id, request.layer, render=request.render)
        return pb.FiltersResponse(
            node=result.node,
            weights=numpy_to_tensor(result.weights),
            png=result.png,
            smoothness=floats(result.smoothness),
            mean_smoothness=result.mean_smoothness,
        )


