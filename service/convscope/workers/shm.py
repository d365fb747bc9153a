"""Arrays across the process boundary in one shared-memory block per message: the pipe carries
only names, shapes and dtypes (a pickled 50 MB activation would be copied twice more).

Blocks are created by the side that writes them and unlinked by the parent once read; the
parent names every block, so it can unlink a dead worker's leftovers. multiprocessing's resource
tracker is kept out of it: it would unlink blocks the other process still needs (Python 3.11
registers attached blocks too) and warn about the rest at exit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from multiprocessing import resource_tracker, shared_memory

import numpy as np

ALIGN = 64  # every array starts on a cache line: onnxruntime reads inputs in place

# (name, shape, dtype string, offset into the block)
ArrayLayout = tuple[tuple[str, tuple[int, ...], str, int], ...]


def _untracked(block: shared_memory.SharedMemory) -> shared_memory.SharedMemory:
    resource_tracker.unregister(block._name, "shared_memory")  # type: ignore[attr-defined]
    return block


def write_arrays(name: str, arrays: Mapping[str, np.ndarray]) -> ArrayLayout:
    """Copy ``arrays`` into a new block called ``name``; returns where each one lies."""
    layout, offset = [], 0
    for key, value in arrays.items():
        layout.append((key, tuple(int(d) for d in value.shape), value.dtype.str, offset))
        offset += -(-value.nbytes // ALIGN) * ALIGN
    block = _untracked(shared_memory.SharedMemory(name=name, create=True, size=max(offset, 1)))
    try:
        for (key, shape, dtype, start), value in zip(layout, arrays.values()):
            np.ndarray(shape, dtype, buffer=block.buf, offset=start)[...] = value
    except BaseException:
        block.close()
        unlink(name)
        raise
    block.close()
    return tuple(layout)


@contextlib.contextmanager
def mapped_arrays(name: str, layout: ArrayLayout) -> Iterator[dict[str, np.ndarray]]:
    """Views of the arrays in block ``name``, valid inside the ``with`` only."""
    block = _untracked(shared_memory.SharedMemory(name=name))
    views = {key: np.ndarray(shape, np.dtype(dtype), buffer=block.buf, offset=start) for key, shape, dtype, start in layout}
    try:
        yield views
    finally:
        views.clear()
        with contextlib.suppress(BufferError):  # a view still referenced (a traceback): the GC unmaps it
            block.close()


def read_arrays(name: str, layout: ArrayLayout) -> dict[str, np.ndarray]:
    """Copies of the arrays in block ``name``, which is then unlinked."""
    try:
        with mapped_arrays(name, layout) as views:
            return {key: view.copy() for key, view in views.items()}
    finally:
        unlink(name)


def unlink(name: str) -> None:
    """Remove block ``name`` if it exists (a worker that died may not have made it)."""
    with contextlib.suppress(FileNotFoundError):
        block = shared_memory.SharedMemory(name=name)
        block.close()
        block.unlink()  # unlink also tells the tracker, which never knew it: it ignores that
