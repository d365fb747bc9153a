"""The README's main job: a real server, the bundled ImageNet model and a real photo → pictures and numbers.

Starts `convscope serve` as a separate process on a free port, uploads
models/efficientnet_lite0, runs the methods on models/chelsea.png and the dataset jobs on
crops of packaged photographs, writes PNG and .npy files and summary.json to the output
folder (what each picture shows: README.md), and stops the server.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from demo_photos import crop_dataset

from convscope_client import Client, ModelInfo
from convscope_client.cli import safe_name

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "efficientnet_lite0" / "efficientnet_lite0.onnx"
PHOTO = REPO / "models" / "chelsea.png"
SPREAD = 0.05  # a unit whose nine best responses are within 5 % of each other shows no preference


def start_server(store: Path, port_file: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "convscope", "serve", "--port", "0", "--store", str(store), "--port-file", str(port_file)]
    )
    deadline = time.monotonic() + 60
    while not port_file.exists() or not port_file.read_text().strip():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the server did not start; see its log above")
        time.sleep(0.1)
    return process


def _save(out: Path, stem: str, png: bytes, array: np.ndarray | None = None) -> None:
    if array is not None:
        np.save(out / f"{stem}.npy", array)
    (out / f"{stem}.png").write_bytes(png)


def run(client: Client, out: Path, *, fool_into: int = 107) -> dict[str, object]:
    summary: dict[str, object] = {}
    info = client.upload_model(MODEL)
    summary["model"] = {"id": info.id, "name": info.name, "layers": len(info.layers)}

    logits = client.activations(info.id, PHOTO, layers=[info.outputs[0].name])[info.outputs[0].name][0]
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    top5 = np.argsort(-probabilities)[:5]
    summary["top5"] = [{"class": int(i), "label": info.labels[i], "probability": round(float(probabilities[i]), 4)} for i in top5]

    first_relu = next(layer for layer in info.layers if layer.op_type in ("Relu", "Clip"))
    deep = [layer for layer in info.layers if len(layer.shape) == 4 and layer.shape[-1] > 1][-1]
    summary["activations"] = {}
    for stem, layer, options in (
        ("activations_first_layer", first_relu, {}),
        ("activations_deep_top64", deep, {"top_channels": 64}),
    ):
        item = client.activation_details(info.id, PHOTO, layers=[layer.tensor], render=True, **options)[0]
        _save(out, stem, item.png, item.value)
        summary["activations"][stem] = {
            "tensor": item.tensor,
            "shape": list(item.value.shape),
            "channels_drawn": len(item.shown_channels),
            "zero_fraction": round(float(item.stats.zero_fraction.mean()), 3),
        }

    first_conv = next(layer for layer in info.layers if layer.op_type == "Conv")
    depthwise = next(layer for layer in info.layers if "depthwise" in layer.name)
    summary["filters"] = {}
    for stem, layer in (("filters_first_conv", first_conv), ("filters_depthwise", depthwise)):
        filters = client.filters(info.id, layer.name)
        _save(out, stem, filters.png, filters.weights)
        summary["filters"][stem] = {
            "node": filters.node,
            "shape": list(filters.weights.shape),
            "mean_smoothness": round(filters.mean_smoothness, 3),
        }

    occlusion = client.occlusion(info.id, PHOTO, window=(32, 32), stride=(16, 16))  # grey box (0 after normalization)
    _save(out, "occlusion", occlusion.png, occlusion.positions)
    summary["occlusion"] = {
        "target": occlusion.target,
        "label": occlusion.target_label,
        "probability": round(float(occlusion.baseline_score), 4),
        "lowest_occluded_probability": round(float(occlusion.positions.min()), 4),
        "positions": list(occlusion.positions.shape),
        "engine": occlusion.engine,
    }

    for method in ("saliency", "guided_backprop", "grad_cam", "integrated_gradients", "smoothgrad"):
        result = client.attribution(info.id, PHOTO, method=method)
        _save(out, method, result.png, result.map)
        summary[method] = {
            "target": result.target,
            "label": result.target_label,
            "score": round(float(result.score), 3),
            "layer": result.layer or None,
        }

    summary["dataset_jobs"] = dataset_jobs(client, info, out)
    summary["made_by_gradients"] = made_by_gradients(client, info, out, fool_into)
    return summary


def dataset_jobs(client: Client, info: ModelInfo, out: Path, shown_channels: int = 6) -> dict[str, object]:
    """Top activations (with receptive-field boxes) and a t-SNE grid over a few hundred crops of
    packaged photographs (scripts/demo_photos.py), streamed to the server as PNGs."""
    from sklearn.neighbors import KNeighborsClassifier

    pngs, sources = crop_dataset()
    # A layer whose units see a patch (at most half the input), so the top patches show what
    # drives them; a Conv output, before ReLU6 clips the strongest responses to one value.
    layer = [
        l
        for l in info.layers
        if l.op_type == "Conv" and l.receptive_field and max(l.receptive_field.size) <= info.inputs[0].shape[-1] // 2
    ][-1]
    hits = client.top_activations(info.id, pngs, layer=layer.tensor, k=9)
    # Units with a clear preference: responses that differ (a constant unit ranks by ties), best
    # patches inside the image (not on the zero padding at its border), from one photo.
    size = layer.receptive_field.size

    def preference(channel: int) -> tuple[bool, int, int, float]:
        best = hits[channel]
        inside = sum(h.box is not None and (h.box[2] - h.box[0], h.box[3] - h.box[1]) == size for h in best)
        agreement = max(Counter(sources[h.image] for h in best).values())
        varies = best[0].value - best[-1].value > SPREAD * abs(best[0].value)
        return varies, inside, agreement, best[0].value

    chosen = sorted(hits, key=preference, reverse=True)[:shown_channels]
    for channel in chosen:
        (out / f"top_activations_{safe_name(layer.tensor)}_c{channel}.png").write_bytes(hits.pngs[channel])
    embedding = client.embedding(info.id, pngs, seed=0)
    (out / "tsne_grid.png").write_bytes(embedding.png)
    (out / "tsne_scatter.png").write_bytes(embedding.scatter_png)
    order = np.random.default_rng(0).permutation(len(pngs))
    half = len(order) // 2
    labels = np.array(sources)
    knn = KNeighborsClassifier(5).fit(embedding.coords[order[:half]], labels[order[:half]])
    return {
        "images": len(pngs),
        "photos": len(set(sources)),
        "top_activations": {
            "layer": layer.tensor,
            "receptive_field": vars(layer.receptive_field),
            "channels_shown": {channel: [(sources[h.image], round(h.value, 3)) for h in hits[channel]] for channel in chosen},
        },
        "tsne": {
            "layer": embedding.layer,
            "perplexity": embedding.perplexity,
            "same_photo_knn_accuracy_held_out": round(float(knn.score(embedding.coords[order[half:]], labels[order[half:]])), 3),
        },
    }


INVERTED_LAYERS = (
    "/_blocks.1/_swish_1/Clip_output_0",
    "/_blocks.8/_swish_1/Clip_output_0",
    "/_avg_pooling/GlobalAveragePool_output_0",
)
VISUALIZED_CLASSES = (1, 309, 947)  # goldfish, bee, mushroom
MATCHED_LAYER = "/_blocks.8/_swish_1/Clip_output_0"


def made_by_gradients(client: Client, info: object, out: Path, fool_into: int) -> dict[str, object]:
    """The cat inverted from three depths, class models of three ImageNet classes, the cat
    fooled into ``fool_into`` (PGD, ε = 2/255), and matches with a turned, scaled, mirrored copy."""
    from PIL import Image

    model_id = info.id  # type: ignore[attr-defined]
    found: dict[str, object] = {"inversion": {}}
    for depth, layer in zip(("early", "middle", "last"), INVERTED_LAYERS):
        inversion = client.invert(model_id, PHOTO, layer=layer)
        _save(out, f"inversion_{depth}", inversion.png, inversion.image)
        found["inversion"][depth] = {"layer": layer, "code_error": round(float(inversion.code_error), 4)}  # type: ignore[index]
    classes = client.visualize(model_id, target=list(VISUALIZED_CLASSES))
    _save(out, "class_models", classes.png, classes.images)
    found["class_models"] = {label: round(p, 4) for label, p in zip(classes.target_labels, classes.probabilities)}
    fooled = client.adversarial(model_id, PHOTO, method="pgd", epsilon=2 / 255, steps=10, target=fool_into)
    _save(out, "adversarial", fooled.png, fooled.image)
    found["adversarial"] = {
        "target": fool_into,
        "success": fooled.success,
        "linf_pixels": round(float(fooled.linf) * 255, 2),
        "before": fooled.prediction.labels[0],
        "after": fooled.adversarial_prediction.labels[0],
        "after_probability": round(fooled.adversarial_prediction.probabilities[0], 4),
    }
    photo = Image.open(PHOTO).convert("RGB")
    turned = photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT).rotate(15, resample=Image.Resampling.BILINEAR)
    turned = turned.resize((round(photo.width * 1.1), round(photo.height * 1.1)), Image.Resampling.BILINEAR)
    turned.save(out / "cat_turned.png")
    matches = client.correspondence(model_id, PHOTO, out / "cat_turned.png", layer=MATCHED_LAYER)
    _save(out, "correspondence", matches.png)
    found["correspondence"] = {
        "layer": MATCHED_LAYER,
        "points": len(matches.points),
        "mean_similarity": round(float(matches.similarity.mean()), 3),
        "matched_in_mirror": int(matches.mirrored.sum()),
    }
    return found


def audit(out: Path) -> dict[str, object]:
    """`convscope audit` of the digits CNN on its 600 held-out digits, as a CI job runs it (an
    embedded server; exit code 0 when every check of models/digits_cnn/audit.toml passes)."""
    sys.path.insert(0, str(REPO / "models" / "digits_cnn"))
    import digits_data  # the shipped model's data module, beside its training script

    with tempfile.TemporaryDirectory() as scratch:
        _, _, test_x, test_y = digits_data.split()
        data = digits_data.write_class_folders(Path(scratch) / "digits", test_x, test_y)
        code = subprocess.run(
            [
                sys.executable,
                "-m",
                "convscope",
                "audit",
                str(REPO / "models" / "digits_cnn" / "digits_cnn.onnx"),
                "--data",
                str(data),
                "--config",
                str(REPO / "models" / "digits_cnn" / "audit.toml"),
                "--out",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
        ).returncode
    report = json.loads((out / "report.json").read_text())
    return {
        "exit_code": code,
        "passed": report["passed"],
        "checks": {name: check["status"] for name, check in report["checks"].items()},
        "top1_error": report["checks"]["accuracy"]["figures"]["top1_error"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "demo-output")
    parser.add_argument("--fool-into", type=int, default=107, help="ImageNet class the cat is turned into (default: jellyfish)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        server = start_server(Path(scratch) / "store", Path(scratch) / "port")
        try:
            port = int((Path(scratch) / "port").read_text())
            with Client(f"127.0.0.1:{port}", timeout=600) as client:
                summary = run(client, args.out, fool_into=args.fool_into)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    summary["audit"] = audit(args.out / "audit")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    print(f"\npictures and arrays written to {os.path.relpath(args.out)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
