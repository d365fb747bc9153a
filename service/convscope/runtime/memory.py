"""Telling an allocation failure from other onnxruntime errors: under a memory cap (a worker's
RLIMIT_AS) a model that asks for too much fails with a message, and that is RESOURCE_EXHAUSTED,
not a model that rejected its input."""

from __future__ import annotations

import re

from convscope.errors import OutOfMemory

# onnxruntime's arena, the C++ runtime, and the OS, in the words each uses.
_ALLOCATION_FAILED = re.compile(r"(Failed to allocate memory[^\n]*|std::bad_alloc|bad_alloc|Cannot allocate memory)")


def raise_if_out_of_memory(error: BaseException) -> None:
    """Raise OutOfMemory if ``error`` says an allocation failed; otherwise return."""
    if isinstance(error, MemoryError):
        raise OutOfMemory("an allocation failed") from None
    found = _ALLOCATION_FAILED.search(str(error))
    if found:
        raise OutOfMemory(f"onnxruntime: {found.group(1)[:300]}") from None
