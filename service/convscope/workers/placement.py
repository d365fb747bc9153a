"""Results written by onnxruntime straight into the worker's shared memory block.

The first run of a graph at given input shapes returns onnxruntime's own arrays, which are
copied into the block, and their shapes are remembered. Later runs at the same input shapes
bind those places as the outputs (``IOBinding``), so onnxruntime writes the results where the
server reads them: no copy on either side (50 MiB for every layer of EfficientNet-Lite0). A
graph whose output shapes depend on the data and not only on the input shapes fails the
binding once (onnxruntime checks the shapes) and is run plainly from then on.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from convscope.runtime.sessions import Runtime, guarded_run
from convscope.workers import shm

MAX_KNOWN = 256  # (graph, input shapes) whose output shapes are remembered
# What a run's outputs were: (name, shape, dtype) each; None: they vary with the data.
OutputShapes = tuple[tuple[str, tuple[int, ...], np.dtype], ...] | None


class PlacedRuns:
    def __init__(self, runtime: Runtime, block: shm.WrittenBlock) -> None:
        self.runtime = runtime
        self.block = block
        self._known: OrderedDict[tuple[Any, ...], OutputShapes] = OrderedDict()
        self.bound_runs = 0  # runs whose results onnxruntime wrote into the block itself

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
            name, layout, places = self.block.reserve(shapes, fresh=fresh)
            fresh = False  # the block is new or free now
            binding = session.io_binding()
            for input_name, value in feeds.items():
                binding.bind_cpu_input(input_name, np.ascontiguousarray(value))
            for output_name, place in places.items():
                binding.bind_output(output_name, "cpu", 0, place.dtype.type, place.shape, place.ctypes.data)
            del places  # the block may be replaced on the next call: no view of it may outlive this one
            try:
                guarded_run(lambda options: session.run_with_iobinding(binding, options))
                self.bound_runs += 1
                return name, layout
            except RuntimeError:
                # Most likely the shapes vary with the data: run plainly from now on (a failure
                # that is not about the shapes fails the plain run too, and is reported from there).
                self._known[key] = None
        values = self.runtime.run(model_id, spec, feeds, outputs, dynamic_batch=dynamic_batch, threads=threads)
        if key not in self._known:
            self._known[key] = tuple((output, value.shape, value.dtype) for output, value in values.items())
            while len(self._known) > MAX_KNOWN:
                self._known.popitem(last=False)
        return self.block.write(values, fresh=fresh)
