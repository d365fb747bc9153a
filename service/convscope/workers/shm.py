"""Arrays across the process boundary through shared memory: the pipe carries only names,
shapes, dtypes and offsets (a pickled 50 MB activation would be copied twice more).

Each direction of a worker has one block that stays mapped on both sides and grows when a
message does not fit (a new block under the next name; the old one is unlinked). Creating,
mapping and faulting in a fresh block per message cost more than the copy itself (1.8 ms for
a 224² image in and one 112²×32 map out). The writer of a block owns it and unlinks it; the
parent names every block (``prefix`` + generation), so it can unlink a dead worker's too.
multiprocessing's resource tracker is kept out of it: it would unlink blocks the other process
still maps (Python 3.11 registers attached blocks too) and warn about the rest at exit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from multiprocessing import resource_tracker, shared_memory

import numpy as np

ALIGN = 64  # every array starts on a cache line: onnxruntime reads inputs in place
MIN_BLOCK_BYTES = 1 << 20

# (name, shape, dtype string, offset into the block)
ArrayLayout = tuple[tuple[str, tuple[int, ...], str, int], ...]


def _untracked(block: shared_memory.SharedMemory) -> shared_memory.SharedMemory:
    resource_tracker.unregister(block._name, "shared_memory")  # type: ignore[attr-defined]
    return block


def block_name(prefix: str, generation: int) -> str:
    return f"{prefix}{generation}"


class WrittenBlock:
    """The block one side writes its arrays into, grown as needed."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.generation = 0
        self._block: shared_memory.SharedMemory | None = None

    @property
    def name(self) -> str:
        return block_name(self.prefix, self.generation)

    def write(self, arrays: Mapping[str, np.ndarray]) -> tuple[str, ArrayLayout]:
        """Copy ``arrays`` into the block; returns its name and where each array lies."""
        layout, offset = [], 0
        for key, value in arrays.items():
            layout.append((key, tuple(int(d) for d in value.shape), value.dtype.str, offset))
            offset += -(-value.nbytes // ALIGN) * ALIGN
        block = self._fit(offset)
        for (_, shape, dtype, start), value in zip(layout, arrays.values()):
            np.ndarray(shape, dtype, buffer=block.buf, offset=start)[...] = value
        return block.name, tuple(layout)

    def _fit(self, size: int) -> shared_memory.SharedMemory:
        if self._block is not None and self._block.size >= size:
            return self._block
        self.release()
        self.generation += 1
        capacity = max(MIN_BLOCK_BYTES, 1 << max(size - 1, 1).bit_length())  # doubling: few regrowths
        self._block = _untracked(shared_memory.SharedMemory(name=self.name, create=True, size=capacity))
        return self._block

    def release(self) -> None:
        if self._block is not None:
            self._block.close()
            self._block = None
            unlink(self.name)


class ReadBlocks:
    """The other side's blocks, mapped once and kept until the writer moves to a new one."""

    def __init__(self) -> None:
        self._name = ""
        self._block: shared_memory.SharedMemory | None = None

    def views(self, name: str, layout: ArrayLayout) -> dict[str, np.ndarray]:
        """The arrays in block ``name``: views, valid until the writer writes again."""
        if name != self._name:
            self.close()
            self._block, self._name = _untracked(shared_memory.SharedMemory(name=name)), name
        assert self._block is not None
        return {key: np.ndarray(shape, np.dtype(dtype), buffer=self._block.buf, offset=start) for key, shape, dtype, start in layout}

    def close(self) -> None:
        if self._block is not None:
            with contextlib.suppress(BufferError):  # a view still referenced (a traceback): the GC unmaps it
                self._block.close()
            self._block, self._name = None, ""


def unlink(name: str) -> None:
    """Remove block ``name`` if it exists (a worker that died may not have made it)."""
    with contextlib.suppress(FileNotFoundError):
        block = shared_memory.SharedMemory(name=name)
        block.close()
        block.unlink()  # unlink also tells the tracker, which never knew it: it ignores that
