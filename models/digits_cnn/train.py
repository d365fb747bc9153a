"""Rebuild models/digits_cnn/digits_cnn.onnx: the small CNN that `convscope audit` is tested and
demonstrated on, trained on scikit-learn's digits (see PROVENANCE.md).

Run from the repository root with the test extra installed (torch is a training-time tool only):

    .venv/bin/python models/digits_cnn/train.py            # retrain, write, print the accuracy
    .venv/bin/python models/digits_cnn/train.py --verify   # check the shipped file against a retrain

The training itself is ``tests/digits.py`` (seeded, one thread, deterministic), which the tests
use too: the shipped model is exactly the one the oracle tests train.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.digits import PREPROCESSING, digits, tensors, trained_model  # noqa: E402

MODEL = Path(__file__).with_name("digits_cnn.onnx")
LABELS = [str(digit) for digit in range(10)]


def build() -> tuple[bytes, float]:
    """The trained model with its preprocessing and labels in the metadata, and its test accuracy."""
    data, accuracy = trained_model()
    model = onnx.load_from_string(data)
    for key, value in (("convscope.preprocessing", PREPROCESSING), ("convscope.labels", LABELS)):
        model.metadata_props.add(key=key, value=json.dumps(value))
    model.doc_string = "digits CNN trained on scikit-learn's digits (models/digits_cnn/PROVENANCE.md)"
    return model.SerializeToString(), accuracy


def predictions(data: bytes, pixels: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: tensors(pixels)})[0].argmax(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verify", action="store_true", help="compare the shipped model with a retrain; write nothing")
    args = parser.parse_args()
    data, accuracy = build()
    _, _, test_x, test_y = digits()
    if args.verify:
        shipped = MODEL.read_bytes()
        same = bool((predictions(shipped, test_x) == predictions(data, test_x)).all())
        print(f"shipped sha256 {hashlib.sha256(shipped).hexdigest()}; same predictions as a retrain: {same}")
        return 0 if same else 1
    MODEL.write_bytes(data)
    print(
        f"wrote {MODEL} ({len(data):,} bytes, sha256 {hashlib.sha256(data).hexdigest()}); "
        f"held-out accuracy {accuracy:.4f} on {len(test_y)} images"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
