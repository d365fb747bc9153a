"""Results written by onnxruntime straight into the worker's shared memory block.

The first run of a graph at given input shapes returns onnxruntime's own arrays, which are
copied into the block, and their shapes are remembered. Later runs at the same input shapes
bind those places as the outputs (``IOBinding``), so onnxruntime writes the results where the
server reads them: no copy on either side (50 MiB for every layer of EfficientNet-Lite0). A
graph whose output shapes depend on the data and not only on the input shapes fails the
binding once (onnxruntime checks the shapes) and is run plainly from then on.

A binding is kept and run again while its places stay valid: the inputs are rebound only when
they lie at another address (the server's block moved), the outputs only when this block was
replaced. Making and filling a binding on every call was about a fifth of what the sandbox
added to a one-layer call (benchmarks/activations.py --sandbox-cost).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnxruntime as ort

from convscope.runtime.sessions import Runtime, guarded_run
from convscope.workers import shm

MAX_KNOWN = 256  # (graph, input shapes) whose output shapes are remembered
MAX_BINDINGS_PER_SESSION = 16  # input shapes and output sets one session keeps a binding for
# What a run's outputs were: (name, shape, dtype) each; None: they vary with the data.
OutputShapes = tuple[tuple[str, tuple[int, ...], np.dtype], ...] | None


@dataclass
class _Binding:
    """An ``IOBinding`` and what it is bound to: the block generation its outputs lie in, and the
    address of each input."""

    binding: ort.IOBinding
    generation: int = -1
    name: str = ""
    layout: shm.ArrayLayout = ()
    inputs: tuple[int, ...] = field(default_factory=tuple)


class PlacedRuns:
    def __init__(self, runtime: Runtime, block: shm.WrittenBlock) -> None:
        self.runtime = runtime
        self.block = block
        self._known: OrderedDict[tuple[Any, ...], OutputShapes] = OrderedDict()
        # Keyed by the session object: a binding holds onnxruntime's session, so bindings go
        # when the runtime evicts their session, not later.
        self._bindings: weakref.WeakKeyDictionary[ort.InferenceSession, OrderedDict[tuple[Any, ...], _Binding]] = (
            weakref.WeakKeyDictionary()
        )
        self.bound_runs = 0  # runs whose results onnxruntime wrote into the block itself
        self.bindings_made = 0

    def run(
        self,
        model_id: str,
        spec: Any,
        feeds: Mapping[str, np.ndarray],
        outputs: Sequence[str],
        *,
        dynamic_batch: bool,
        threads: int,
        fresh: bool,
    ) -> tuple[str, shm.ArrayLayout]:
        """``Runtime.run`` with the results in the block (a new one if ``fresh``): its name and layout."""
        key = (
            model_id,
            spec,
            threads,
            tuple(outputs),
            tuple((name, value.shape, value.dtype.str) for name, value in feeds.items()),
        )
        shapes = self._known.get(key)
        if shapes is not None:
            self._known.move_to_end(key)
            session = self.runtime.session(model_id, spec, dynamic_batch=dynamic_batch, threads=threads)
            placed = self._bound(session, key, shapes, feeds, fresh=fresh)
            fresh = False  # the block is new or free now
            try:
                guarded_run(lambda options: session.run_with_iobinding(placed.binding, options))
                self.bound_runs += 1
                return placed.name, placed.layout
            except RuntimeError:
                # Most likely the shapes vary with the data: run plainly from now on (a failure
                # that is not about the shapes fails the plain run too, and is reported from there).
                self._known[key] = None
                self._bindings[session].pop(key, None)
        values = self.runtime.run(model_id, spec, feeds, outputs, dynamic_batch=dynamic_batch, threads=threads)
        if key not in self._known:
            self._known[key] = tuple((output, value.shape, value.dtype) for output, value in values.items())
            while len(self._known) > MAX_KNOWN:
                self._known.popitem(last=False)
        return self.block.write(values, fresh=fresh)

    def _bound(
        self,
        session: ort.InferenceSession,
        key: tuple[Any, ...],
        shapes: tuple[tuple[str, tuple[int, ...], np.dtype], ...],
        feeds: Mapping[str, np.ndarray],
        *,
        fresh: bool,
    ) -> _Binding:
        """The session's binding for ``key``, its outputs in the block (a new one if ``fresh``)
        and its inputs at ``feeds``."""
        kept = self._bindings.setdefault(session, OrderedDict())
        placed = kept.get(key)
        if placed is None:
            placed = kept[key] = _Binding(session.io_binding())
            self.bindings_made += 1
            while len(kept) > MAX_BINDINGS_PER_SESSION:
                kept.popitem(last=False)
        kept.move_to_end(key)
        if fresh or placed.generation != self.block.generation:
            placed.name, placed.layout, places = self.block.reserve(shapes, fresh=fresh)
            placed.generation = self.block.generation
            for output_name, place in places.items():
                placed.binding.bind_output(output_name, "cpu", 0, place.dtype.type, place.shape, place.ctypes.data)
            del places  # the block may be replaced on a later call: no view of it may outlive this one
        contiguous = [np.ascontiguousarray(value) for value in feeds.values()]
        addresses = tuple(value.ctypes.data for value in contiguous)
        if addresses != placed.inputs:
            # onnxruntime reads a bound input where it lies, at every run: the same address holds
            # this call's values.
            for input_name, value in zip(feeds, contiguous):
                placed.binding.bind_cpu_input(input_name, value)
            placed.inputs = addresses
        return placed
