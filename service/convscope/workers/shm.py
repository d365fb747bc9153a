"""Arrays across the process boundary through shared memory: the pipe carries only names,
shapes, dtypes and offsets (a pickled 50 MB activation would be copied twice more).

Each direction of a worker has one block that stays mapped on both sides and grows when a
message does not fit (a new block under the next name; the old one is unlinked). Creating,
mapping and faulting in a fresh block per message cost more than the copy itself (1.8 ms for
a 224² image in and one 112²×32 map out). The writer of a block owns it and unlinks it.

Results are not copied out: the arrays the server hands on are views into the worker's block,
and while any of them is alive the block is *lent*; the server then asks the worker to write
its next results into a fresh block, so a view is never written over. The old block's name is
unlinked at once; its pages go when the last view does.

Every block is named ``convscope_<server pid>_…``: a server that was killed (``kill -9``) cannot
unlink its blocks, and the next server to start removes those of servers no longer running
(``remove_orphans``). multiprocessing's resource tracker is kept out of it: it would unlink
blocks the other process still maps (Python 3.11 registers attached blocks too) and warn about
the rest at exit.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
import secrets
import weakref
from collections.abc import Mapping, Sequence
from multiprocessing import resource_tracker, shared_memory
from pathlib import Path

import numpy as np

ALIGN = 64  # every array starts on a cache line: onnxruntime reads inputs in place
MIN_BLOCK_BYTES = 1 << 20
SHM_FOLDER = Path("/dev/shm")  # where Linux keeps POSIX shared memory under its name
_OWNED = re.compile(r"convscope_(\d+)_")

# (name, shape, dtype string, offset into the block)
ArrayLayout = tuple[tuple[str, tuple[int, ...], str, int], ...]


def server_prefix(pid: int | None = None) -> str:
    """The prefix of every block a server (``pid``: this process) and its workers make."""
    return f"convscope_{os.getpid() if pid is None else pid}_{secrets.token_hex(3)}_"


def block_name(prefix: str, generation: int) -> str:
    return f"{prefix}{generation}"


def remove_orphans() -> list[str]:
    """Unlink the blocks of servers that are no longer running (killed before they could);
    returns their names."""
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(SHM_FOLDER):
            owner = _OWNED.match(name)
            if owner and not _running(int(owner.group(1))):
                unlink(name)
                removed.append(name)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's server: alive, and not ours to clean
        return True
    return True


class WrittenBlock:
    """The block one side writes its arrays into, grown as needed."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.generation = 0
        self._block: shared_memory.SharedMemory | None = None

    @property
    def name(self) -> str:
        return block_name(self.prefix, self.generation)

    def write(self, arrays: Mapping[str, np.ndarray], *, fresh: bool = False) -> tuple[str, ArrayLayout]:
        """Copy ``arrays`` into the block (a new one if ``fresh``: the reader still holds views
        of the current one); returns its name and where each array lies."""
        name, layout, places = self.reserve([(key, value.shape, value.dtype) for key, value in arrays.items()], fresh=fresh)
        for key, value in arrays.items():
            places[key][...] = value
        return name, layout

    def reserve(
        self, arrays: Sequence[tuple[str, tuple[int, ...], np.dtype]], *, fresh: bool = False
    ) -> tuple[str, ArrayLayout, dict[str, np.ndarray]]:
        """Room for ``arrays`` (name, shape, dtype) in the block: its name, the layout, and the
        places as writable views (to drop before the block is next written)."""
        layout, offset = [], 0
        for key, shape, dtype in arrays:
            layout.append((key, tuple(int(d) for d in shape), dtype.str, offset))
            offset += -(-int(np.prod(shape, dtype=np.int64)) * dtype.itemsize // ALIGN) * ALIGN
        if fresh:
            self.release()
        block = self._fit(offset)
        places = {key: np.ndarray(shape, dtype, buffer=block.buf, offset=start) for key, shape, dtype, start in layout}
        return block.name, tuple(layout), places

    def _fit(self, size: int) -> shared_memory.SharedMemory:
        if self._block is not None and self._block.size >= size:
            return self._block
        self.release()
        self.generation += 1
        capacity = max(MIN_BLOCK_BYTES, 1 << max(size - 1, 1).bit_length())  # doubling: few regrowths
        block = shared_memory.SharedMemory(name=self.name, create=True, size=capacity)
        resource_tracker.unregister(block._name, "shared_memory")  # type: ignore[attr-defined]
        self._block = block
        return block

    def release(self) -> None:
        if self._block is not None:
            with contextlib.suppress(BufferError):  # a view still referenced (a traceback): the GC unmaps it
                self._block.close()
            self._block = None
            unlink(self.name)


class ReadBlocks:
    """The other side's block, mapped once and kept until the writer moves to a new one."""

    def __init__(self) -> None:
        self._name = ""
        self._map: mmap.mmap | None = None
        self._handed_out: weakref.ref[np.ndarray] | None = None

    def views(self, name: str, layout: ArrayLayout) -> dict[str, np.ndarray]:
        """The arrays in block ``name``: views, which keep its pages mapped while they live."""
        if name != self._name:
            # The previous mapping stays alive as long as views of it do.
            fd = os.open(SHM_FOLDER / name, os.O_RDWR)
            try:
                self._map = mmap.mmap(fd, os.fstat(fd).st_size)
            finally:
                os.close(fd)
            self._name = name
        whole = np.frombuffer(self._map, np.uint8)  # type: ignore[arg-type]
        self._handed_out = weakref.ref(whole)  # every view below holds ``whole`` as its base
        return {key: np.ndarray(shape, np.dtype(dtype), buffer=whole, offset=start) for key, shape, dtype, start in layout}

    @property
    def lent(self) -> bool:
        """Whether an array handed out of the current block may still be read: the writer must
        not write over it."""
        return self._handed_out is not None and self._handed_out() is not None

    def close(self) -> None:
        self._map, self._name, self._handed_out = None, "", None


def unlink(name: str) -> None:
    """Remove block ``name`` if it exists (a worker that died may not have made it)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(SHM_FOLDER / name)
