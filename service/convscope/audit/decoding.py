"""The shared pass's input: the audit's images read and decoded on the prefetch pool a batch at
a time, each image once, each pool task writing its batch for inference itself.

One pool task per batch rather than per image, and the stored size taken from the decode
itself rather than a second parse of the header: on small images (8×8 digits) the per-image
task and the header parse cost as much as the decode. The task also writes the batch (a
``DecodedBatch``), so the pass's serial thread that hands batches on in order only passes them
along, instead of stacking every image while contending for the GIL with the decoders.

The computed attributes are measured here too, a chunk at a time, on the pool's threads: in the
consumer they sat on the pass's one serial thread (the one that hands batches on in order), and
there, contending for the GIL with the decoders, a batch's measurement took 20× its time alone
(140–200 µs an image of the pass's 300, on 8×8 digits with 2 cores).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from convscope.audit import attributes as image_attributes
from convscope.audit.dataset import AuditItem
from convscope.data.streams import DecodedBatch, Sample, Skipped, read_regular_file
from convscope.errors import ServiceError
from convscope.limits import DEFAULT_MAX_IMAGE_PIXELS
from convscope.model.preprocessing import batch_of, decode_sized
from convscope.model.types import ModelRecord


@dataclass(frozen=True)
class Chunk:
    items: Sequence[AuditItem]


def chunks(items: Sequence[AuditItem], size: int) -> Iterator[Chunk]:
    """``items`` in chunks of ``size``: the pass's batch size, so each chunk is one batch."""
    for start in range(0, len(items), size):
        yield Chunk(items[start : start + size])


class ChunkDecoder:
    """Reads and decodes a chunk (the prefetch pool calls it with the chunk's first index);
    ``sizes`` receives each image's stored (width, height): the model sees it resized;
    ``measured`` (``image_attributes.COMPUTED`` arrays over every image, or empty to skip)
    receives the computed attributes of the pictures, each row written by one chunk only.
    Files are read as dataset jobs read them (no FIFOs, devices or swapped-in links) and images
    over ``max_pixels`` are refused, so an audit is held to the server's limits too."""

    def __init__(
        self,
        record: ModelRecord,
        sizes: dict[int, tuple[int, int]],
        measured: dict[str, np.ndarray],
        *,
        max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    ) -> None:
        self.record = record
        self.sizes = sizes
        self.measured = measured
        self.max_pixels = max_pixels

    def __call__(self, chunk: Chunk, start: int) -> list[Skipped | DecodedBatch]:
        skipped: list[Skipped | DecodedBatch] = []
        samples: list[Sample] = []
        for index, item in enumerate(chunk.items, start):
            ref = str(item.path)
            try:
                image, self.sizes[index] = decode_sized(
                    self.record, read_regular_file(item.path), index, max_pixels=self.max_pixels
                )
            except OSError as error:
                skipped.append(Skipped(index, ref, f"cannot be read ({error.strerror or type(error).__name__})"))
            except ServiceError as error:
                skipped.append(Skipped(index, ref, str(error)))
            else:
                samples.append(Sample(index, ref, image, image.picture))
        if not samples:
            return skipped
        self._measure(samples)
        return [*skipped, DecodedBatch(samples, batch_of([sample.value for sample in samples]))]

    def _measure(self, samples: list[Sample]) -> None:
        if not self.measured:
            return
        rows = np.array([sample.index for sample in samples])
        pictures = np.stack([sample.picture for sample in samples])  # one shape: resized to the model's input
        for name, values in image_attributes.measure(pictures).items():
            self.measured[name][rows] = values
