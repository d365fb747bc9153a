"""gRPC servicer: each method converts the request, calls the data plane, converts back."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import grpc
import numpy as np

from convscope.audit import service as audit_service
from convscope.core import Convscope
from convscope.errors import Cancelled, InvalidArgument, ResourceExhausted
from convscope.methods.dataset_jobs import Progress
from convscope.methods.occlusion import OcclusionOptions, OcclusionProgress
from convscope.model.preprocessing import ModelInput
from convscope.model.types import ModelRecord
from convscope.rpc import dataset as dataset_rpc
from convscope.rpc import synthesis as synthesis_rpc
from convscope.rpc.convert import (
    attribution_request,
    floats,
    layer_dead_filters,
    model_info,
    occlusion_result,
    preprocessing_from_proto,
    rectifier_rule,
    rectifier_scope,
    tensor_to_numpy,
    upload_input_shape,
)
from convscope.rpc.errors import translate_errors
from convscope_client._proto import convscope_pb2 as pb
from convscope_client._proto import convscope_pb2_grpc as pb_grpc
from convscope_client.inputs import fill_tensor
from convscope_client.protocol import MAX_MESSAGE_BYTES
from convscope_client.wire import (
    ActivationFrame,
    ReceivedActivationsRequest,
    encode_activation,
    encode_activations_response,
)

log = logging.getLogger(__name__)


EXPORT_CHUNK_BYTES = 1 << 20
DEFAULT_MAX_RESPONSE_BYTES = MAX_MESSAGE_BYTES  # gRPC's own cap on one message


class ConvscopeServicer(pb_grpc.ConvscopeServicer):
    def __init__(self, core: Convscope, *, max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> None:
        self.core = core
        self.max_response_bytes = max_response_bytes

    def _within_response_limit(self, message: bytes, remedy: str) -> bytes:
        if len(message) > self.max_response_bytes:
            raise ResourceExhausted(
                f"the response message would be {len(message) / 2**20:.1f} MiB, over the server's limit of "
                f"{self.max_response_bytes / 2**20:.1f} MiB per message (--max-response-mb): {remedy}"
            )
        return message

    def _input(self, record: ModelRecord, message: pb.Input, tensor_data: memoryview | None = None) -> ModelInput:
        if message.name and message.name != record.input.name:
            raise InvalidArgument(
                f"{message.name!r} is not the model's image input {record.input.name!r}: send it among input.others"
            )
        others = {name: tensor_to_numpy(tensor) for name, tensor in message.others.items()}
        kind = message.WhichOneof("kind")
        if kind == "tensor":
            return self.core.prepare(record, tensor=tensor_to_numpy(message.tensor, tensor_data), others=others)
        if kind == "images":
            return self.core.prepare(record, images=list(message.images.images), others=others)
        raise InvalidArgument("the request has no input: set input.tensor or input.images")

    @translate_errors
    def UploadModel(self, request_iterator: Iterator[pb.UploadModelRequest], context: grpc.ServicerContext) -> pb.ModelInfo:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgument("an upload starts with a header message, then the file chunks")
        header = first.header

        def chunks() -> Iterator[tuple[str, bytes]]:
            try:
                for message in request_iterator:
                    if message.WhichOneof("part") != "chunk":
                        raise InvalidArgument("only file chunks may follow the upload header")
                    yield message.chunk.file, message.chunk.data
            except grpc.RpcError:  # grpc's request iterator raises this when the client cancels
                raise Cancelled("upload cancelled by the client") from None
            if not context.is_active():  # the client went away: the stream ended early
                raise Cancelled("upload cancelled by the client")

        record = self.core.upload(
            chunks(),
            name=header.name,
            preprocessing=preprocessing_from_proto(header.preprocessing) if header.has_preprocessing else None,
            labels=list(header.labels),
            input_shape=upload_input_shape(header),
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

    def _activation_frames(self, received: ReceivedActivationsRequest) -> list[ActivationFrame]:
        request = received.message
        record = self.core.model(request.model_id)
        model_input = self._input(record, request.input, received.tensor_data)
        results = self.core.activations(
            record.id,
            model_input,
            list(request.layers),
            render=request.render,
            statistics=not request.omit_statistics,
            channels=list(request.channels),
            top_channels=request.top_channels,
        )
        frames = []
        for result in results:
            item = pb.Activation(tensor=result.tensor, png=result.png, shown_channels=list(result.shown_channels))
            if result.stats is not None:
                item.stats.mean[:] = floats(result.stats.mean)
                item.stats.max[:] = floats(result.stats.max)
                item.stats.zero_fraction[:] = floats(result.stats.zero_fraction)
            frames.append(ActivationFrame(item, None if request.omit_values else result.value))
        return frames

    # Both Activations methods take their requests from wire.decode_activations_request (the
    # input tensor a view of the received bytes) and serialize their responses here (each tensor
    # copied once), handing gRPC the bytes: a message over the limit is refused with its size.

    @translate_errors
    def Activations(self, request: ReceivedActivationsRequest, context: grpc.ServicerContext) -> bytes:
        return self._within_response_limit(
            encode_activations_response(self._activation_frames(request)),
            "request fewer tensors or a smaller batch per call, or stream them one message per tensor "
            "(StreamActivations; in Python activation_details(..., stream=True); the CLI streams when no --layer is named)",
        )

    @translate_errors
    def StreamActivations(self, request: ReceivedActivationsRequest, context: grpc.ServicerContext) -> Iterator[bytes]:
        for frame in self._activation_frames(request):
            yield self._within_response_limit(
                encode_activation(frame), f"{frame.message.tensor!r} alone is too large; send a smaller batch"
            )

    @translate_errors
    def DeadFilters(self, request: pb.DeadFiltersRequest, context: grpc.ServicerContext) -> pb.DeadFiltersResponse:
        record = self.core.model(request.model_id)
        inputs = [self._input(record, message) for message in request.inputs]
        if not inputs:
            raise InvalidArgument("send at least one input batch")
        result = self.core.dead_filters(record.id, inputs, list(request.layers), threshold=request.threshold or 1.0)
        return pb.DeadFiltersResponse(layers=[layer_dead_filters(r) for r in result.reports], samples=result.samples)

    @translate_errors
    def Filters(self, request: pb.FiltersRequest, context: grpc.ServicerContext) -> pb.FiltersResponse:
        result = self.core.filters(request.model_id, request.layer, render=request.render)
        response = pb.FiltersResponse(
            node=result.node, png=result.png, smoothness=floats(result.smoothness), mean_smoothness=result.mean_smoothness
        )
        fill_tensor(response.weights, result.weights)
        return response

    @translate_errors
    def Occlusion(self, request: pb.OcclusionRequest, context: grpc.ServicerContext) -> Iterator[pb.OcclusionEvent]:
        record = self.core.model(request.model_id)
        model_input = self._input(record, request.input)
        options = OcclusionOptions.parse(
            targets=list(request.targets),
            output=request.output,
            window=list(request.window),
            stride=list(request.stride),
            fill=request.fill_mode if request.WhichOneof("fill") == "fill_mode" else request.fill_value,
            score=request.score,
            engine=request.engine,
            batch_size=request.batch_size,
            occluded=request.occluded,
            tolerance=request.tolerance,
        )
        events = self.core.occlusion(record.id, model_input, options)
        done = total = 0
        try:
            while True:
                # The method computes a batch only when asked for the next event: check first.
                if not context.is_active():
                    raise Cancelled("occlusion cancelled (by the client or its deadline)")
                event = next(events, None)
                if event is None:
                    return
                if isinstance(event, OcclusionProgress):
                    done, total = event.done, event.total
                    yield pb.OcclusionEvent(progress=pb.OcclusionProgress(done=event.done, total=event.total))
                else:
                    yield pb.OcclusionEvent(result=occlusion_result(event))
        except (Cancelled, GeneratorExit):  # GeneratorExit: grpc dropped the stream of a dead call
            log.info(
                "occlusion on %s stopped after %d of %d positions: call cancelled or past its deadline",
                record.id[:12],
                done,
                total,
            )
            raise
        finally:
            events.close()  # frees the occluded batches and cached activations at once

    @translate_errors
    def RunDatasetJob(
        self, request_iterator: Iterator[pb.DatasetJobRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.DatasetJobEvent]:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "start":
            raise InvalidArgument("a dataset job starts with a start message, then the items (if any)")
        start = first.start
        cancelled = threading.Event()
        context.add_callback(cancelled.set)  # the call ended: cancelled, deadline, or finished
        events = self.core.dataset_job(
            start.model_id,
            dataset_rpc.job_from_proto(start),
            folder=start.folder,
            items=None if start.folder else dataset_rpc.items_from_requests(request_iterator),
            expected=start.expected or None,
            cancelled=cancelled,
            others={name: tensor_to_numpy(tensor) for name, tensor in start.others.items()},
        )
        last = None
        try:
            for event in events:
                if isinstance(event, Progress):
                    last = event
                yield from dataset_rpc.events_to_proto(event)
        finally:
            events.close()
        if last is not None:
            yield pb.DatasetJobEvent(done=dataset_rpc.progress_to_proto(last))

    @translate_errors
    def Attribution(self, request: pb.AttributionRequest, context: grpc.ServicerContext) -> pb.AttributionResponse:
        record = self.core.model(request.model_id)
        model_input = self._input(record, request.input)
        method, options = attribution_request(request)
        result, png = self.core.attribution(record.id, model_input, method, options, render=request.render)
        targets = [int(t) for t in result.score.targets]
        response = pb.AttributionResponse(
            png=png,
            target=targets,
            score=floats(result.scores),
            output=result.score.tensor,
            target_label=record.target_labels(result.score.tensor, targets),
            layer=result.layer or "",
            warnings=result.warnings,
        )
        fill_tensor(response.map, result.map)
        if result.layer_map is not None:
            fill_tensor(response.layer_map, result.layer_map)
        if result.map_on_image is not None:
            fill_tensor(response.map_on_image, result.map_on_image)
        if request.metrics:
            for curve in self.core.faithfulness(
                record.id, model_input, result, request.metrics, pixels_per_step=request.pixels_per_step
            ):
                message = response.metrics.add(metric=curve.metric, fractions=floats(curve.fractions), auc=floats(curve.auc))
                fill_tensor(message.scores, curve.scores.astype(np.float32))
        return response

    @translate_errors
    def ExportBackward(self, request: pb.ExportBackwardRequest, context: grpc.ServicerContext) -> Iterator[pb.FileChunk]:
        data = self.core.export_backward(
            request.model_id,
            seeds=list(request.seeds),
            wrt=list(request.wrt),
            rectifier=rectifier_rule(request.rectifier),
            rectifiers=rectifier_scope(request.rectifiers),
        )
        for start in range(0, len(data), EXPORT_CHUNK_BYTES):
            yield pb.FileChunk(file="", data=data[start : start + EXPORT_CHUNK_BYTES])

    # -- images made by gradients: progress per step, then the result (rpc/synthesis.py)

    @translate_errors
    def Invert(self, request: pb.InvertRequest, context: grpc.ServicerContext) -> Iterator[pb.InvertEvent]:
        record = self.core.model(request.model_id)
        model_input = self._input(record, request.input)
        events = self.core.invert(record.id, model_input, synthesis_rpc.inversion_options(request))
        yield from synthesis_rpc.stream_steps(
            "inversion", events, context, pb.InvertEvent, lambda result: synthesis_rpc.inversion_result(result, model_input)
        )

    @translate_errors
    def Visualize(self, request: pb.VisualizeRequest, context: grpc.ServicerContext) -> Iterator[pb.VisualizeEvent]:
        record = self.core.model(request.model_id)
        events = self.core.visualize(record.id, synthesis_rpc.visualization_options(request))
        yield from synthesis_rpc.stream_steps(
            "visualization", events, context, pb.VisualizeEvent, lambda result: synthesis_rpc.visualization_result(result, record)
        )

    @translate_errors
    def Adversarial(self, request: pb.AdversarialRequest, context: grpc.ServicerContext) -> Iterator[pb.AdversarialEvent]:
        record = self.core.model(request.model_id)
        model_input = self._input(record, request.input)
        events = self.core.adversarial(record.id, model_input, synthesis_rpc.adversarial_options(request))
        yield from synthesis_rpc.stream_steps(
            "adversarial attack",
            events,
            context,
            pb.AdversarialEvent,
            lambda result: synthesis_rpc.adversarial_result(result, record),
        )

    @translate_errors
    def Correspondence(self, request: pb.CorrespondenceRequest, context: grpc.ServicerContext) -> pb.CorrespondenceResponse:
        kind = request.input.WhichOneof("kind")
        if kind not in ("tensor", "images"):
            raise InvalidArgument("send two images (A, B) or an array batch of two")
        result = self.core.correspondence(
            request.model_id,
            list(request.input.images.images) if kind == "images" else (),
            arrays=tensor_to_numpy(request.input.tensor) if kind == "tensor" else None,
            layers=synthesis_rpc.correspondence_layers(request),
            points=tensor_to_numpy(request.points) if request.HasField("points") else None,
            reflections=request.reflections if request.HasField("reflections") else True,
        )
        return synthesis_rpc.correspondence_response(result)

    # -- audit

    @translate_errors
    def Audit(self, request: pb.AuditRequest, context: grpc.ServicerContext) -> Iterator[pb.AuditEvent]:
        cancelled = threading.Event()
        context.add_callback(cancelled.set)
        events = audit_service.audit(
            self.core,
            request.model_id,
            request.data,
            labels=request.labels,
            human=request.human,
            config_toml=request.config_toml,
            cancelled=cancelled,
        )
        try:
            for event in events:
                if isinstance(event, Progress):
                    yield pb.AuditEvent(progress=dataset_rpc.progress_to_proto(event))
                elif isinstance(event, audit_service.AuditFiles):
                    yield pb.AuditEvent(
                        report=pb.AuditReport(
                            passed=event.passed,
                            errored=event.errored,
                            report_json=event.files["report.json"],
                            junit_xml=event.files["junit.xml"],
                            report_html=event.files["report.html"],
                        )
                    )
                else:
                    yield pb.AuditEvent(
                        check=pb.AuditCheck(name=event.name, status=event.status, message=event.message, seconds=event.seconds)
                    )
        finally:
            events.close()
