"""protobuf ↔ domain types of dataset jobs. No logic beyond translation."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from convscope.choices import parse
from convscope.data.streams import EncodedItem, Item, PathItem, Ref, Skipped, TensorItem, UnreadableItem
from convscope.errors import InvalidArgument, ServiceError
from convscope.methods import dataset_jobs
from convscope.methods.embedding import EmbeddingResult
from convscope.methods.top_activations import TopActivationsResult
from convscope.rpc.convert import given, layer_dead_filters, tensor_to_numpy
from convscope_client._proto import convscope_pb2 as pb
from convscope_client.choices import EmbeddingMethod
from convscope_client.inputs import fill_tensor


def job_from_proto(start: pb.DatasetJobStart) -> dataset_jobs.DatasetJob:
    kind = start.WhichOneof("job")
    if kind == "top_activations":
        job = start.top_activations
        directions = tensor_to_numpy(job.directions) if job.HasField("directions") and job.directions.shape else None
        return dataset_jobs.TopActivationsJob(
            layer=job.layer, channels=tuple(job.channels), directions=directions, render=job.render, **given(k=job.k)
        )
    if kind == "embedding":
        job = start.embedding
        return dataset_jobs.EmbeddingJob(
            layer=job.layer,
            seed=job.seed,
            render=job.render,
            **given(perplexity=job.perplexity),
            **({"method": parse(EmbeddingMethod, job.method)} if job.method else {}),
        )
    if kind == "dead_filters":
        return dataset_jobs.DeadFiltersJob(layers=tuple(start.dead_filters.layers))
    raise InvalidArgument("the job start names no job: set top_activations, embedding or dead_filters")


def items_from_requests(requests: Iterable[pb.DatasetJobRequest]) -> Iterator[Item]:
    for request in requests:
        if request.WhichOneof("part") != "items":
            raise InvalidArgument("only items may follow the job start")
        for item in request.items.items:
            yield item_from_proto(item)


def item_from_proto(message: pb.DatasetItem) -> Item:
    source = message.WhichOneof("source")
    if source == "encoded":
        return EncodedItem(message.encoded, message.name)
    if source == "path":
        return PathItem(message.path, message.name)
    if source == "tensor":
        try:
            return TensorItem(tensor_to_numpy(message.tensor), message.name)
        except ServiceError as error:
            return UnreadableItem(str(error), message.name)
    return UnreadableItem("the item is empty: set encoded, path or tensor", message.name)


def item_ref(index: int, ref: Ref) -> pb.ItemRef:
    return pb.ItemRef(index=index, name=ref if isinstance(ref, str) else "")


def progress_to_proto(progress: dataset_jobs.Progress) -> pb.JobProgress:
    return pb.JobProgress(
        done=progress.done,
        skipped=progress.skipped,
        total=progress.total or 0,
        seconds=progress.seconds,
        rate=progress.rate,
        eta=-1.0 if progress.eta is None else progress.eta,
    )


def events_to_proto(event: dataset_jobs.JobEvent) -> Iterator[pb.DatasetJobEvent]:
    """One domain event → the messages that carry it (top activations: one per channel)."""
    if isinstance(event, dataset_jobs.Progress):
        yield pb.DatasetJobEvent(progress=progress_to_proto(event))
    elif isinstance(event, Skipped):
        yield pb.DatasetJobEvent(skipped=pb.SkippedItem(item=item_ref(event.index, event.ref), reason=event.reason))
    elif isinstance(event, TopActivationsResult):
        for row in event.rows:
            yield pb.DatasetJobEvent(
                channel_hits=pb.ChannelHits(
                    layer=event.layer,
                    channel=row.channel,
                    direction=event.by_direction,
                    hits=[
                        pb.Hit(
                            image=item_ref(hit.index, hit.image),
                            value=hit.value,
                            location=list(hit.location),
                            box=list(hit.box) if hit.box is not None else [],
                        )
                        for hit in row.hits
                    ],
                    png=row.png,
                )
            )
    elif isinstance(event, EmbeddingResult):
        message = pb.DatasetJobEvent(
            embedding=pb.EmbeddingResult(
                layer=event.layer,
                method=event.method,
                images=[item_ref(int(index), ref) for index, ref in zip(event.indices, event.images)],
                perplexity=event.perplexity,
                png=event.png,
                scatter_png=event.scatter_png,
            )
        )
        fill_tensor(message.embedding.coords, event.coords)
        yield message
    elif isinstance(event, dataset_jobs.DeadFiltersResult):
        yield pb.DatasetJobEvent(
            dead_filters=pb.DeadFiltersResult(layers=[layer_dead_filters(r) for r in event.reports], samples=event.samples)
        )
