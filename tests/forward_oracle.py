"""Independent forward oracle: onnx's own Extractor cuts the *unmodified* model at a tensor,
and plain onnxruntime runs the cut — no convscope code involved."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort


def reference_tensors(model: onnx.ModelProto, inputs: dict[str, np.ndarray], tensors: list[str]) -> dict[str, np.ndarray]:
    inferred = onnx.shape_inference.infer_shapes(model)
    input_names = list(inputs)
    results = {}
    for tensor in tensors:
        cut = onnx.utils.Extractor(inferred).extract_model(input_names, [tensor])
        cut.ir_version = min(model.ir_version, 10)
        session = ort.InferenceSession(cut.SerializeToString(), providers=["CPUExecutionProvider"])
        results[tensor] = session.run([tensor], inputs)[0]
    return results


# Exposing a tensor changes which kernels onnxruntime fuses, so float32 results may differ in
# the last bits; anything beyond rounding is a real difference.
ACTIVATION_RTOL = 1e-5


def assert_same_activation(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.shape == expected.shape and got.dtype == expected.dtype
    scale = float(np.abs(expected).max(initial=0.0))
    np.testing.assert_allclose(got, expected, rtol=ACTIVATION_RTOL, atol=ACTIVATION_RTOL * max(scale, 1e-6))
