"""The README's main job: a real server, the bundled ImageNet model and a real photo → pictures and numbers.

Starts `convscope serve` as a separate process on a free port, uploads
models/efficientnet_lite0, runs every method on models/chelsea.png, writes PNG and .npy
files to the output folder, prints a summary, and stops the server.
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
from pathlib import Path

import numpy as np
from convscope_client import Client
from convscope_client.cli import safe_name

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "efficientnet_lite0" / "efficientnet_lite0.onnx"
PHOTO = REPO / "models" / "chelsea.png"


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


def run(client: Client, out: Path, *, fool_into: int = 107) -> dict[str, object]:
    summary: dict[str, object] = {}
    info = client.upload_model(MODEL)
    summary["model"] = {"id": info.id, "name": info.name, "layers": len(info.layers)}

    logits = client.activations(info.id, PHOTO, layers=[info.outputs[0].name])[info.outputs[0].name][0]
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    top5 = np.argsort(-probabilities)[:5]
    summary["top5"] = [{"class": int(i), "label": info.labels[i], "probability": round(float(probabilities[i]), 4)} for i in top5]

    first_conv = next(layer for layer in info.layers if layer.op_type == "Conv")
    first_relu = next(layer for layer in info.layers if layer.op_type in ("Relu", "Clip"))
    deep = [layer for layer in info.layers if len(layer.shape) == 4 and layer.shape[-1] > 1][-1]
    activations = client.activation_details(info.id, PHOTO, layers=[first_relu.tensor, deep.tensor], render=True)
    for item in activations:
        stem = f"activations_{safe_name(item.tensor)}"
        np.save(out / f"{stem}.npy", item.value)
        (out / f"{stem}.png").write_bytes(item.png)
    summary["activations"] = {
        item.tensor: {"shape": list(item.value.shape), "zero_fraction": round(float(item.stats.zero_fraction.mean()), 3)}
        for item in activations
        if item.value is not None
    }

    filters = client.filters(info.id, first_conv.name)
    np.save(out / "filters_first_conv.npy", filters.weights)
    (out / "filters_first_conv.png").write_bytes(filters.png)
    summary["filters"] = {"node": filters.node, "shape": list(filters.weights.shape), "mean_smoothness": round(filters.mean_smoothness, 3)}

    occlusion = client.occlusion(info.id, PHOTO, window=(32, 32), stride=(16, 16))  # grey box (0 after normalization)
    np.save(out / "occlusion_positions.npy", occlusion.positions)
    (out / "occlusion.png").write_bytes(occlusion.png)
    summary["occlusion"] = {
        "target": occlusion.target,
        "label": occlusion.target_label,
        "probability": round(float(occlusion.baseline_score), 4),
        "lowest_occluded_probability": round(float(occlusion.positions.min()), 4),
        "positions": list(occlusion.positions.shape),
        "engine": occlusion.engine,
    }

    for method in ("guided_backprop", "grad_cam", "integrated_gradients"):
        result = client.attribution(info.id, PHOTO, method=method)
        np.save(out / f"{method}.npy", result.map)
        (out / f"{method}.png").write_bytes(result.png)
        summary[method] = {"target": result.target, "label": result.target_label, "score": round(float(result.score), 3), "layer": result.layer or None}

    summary["dataset_jobs"] = dataset_jobs(client, info, out)
    summary["made_by_gradients"] = made_by_gradients(client, info, out, fool_into)
    return summary


def dataset_jobs(client: Client, info: object, out: Path, count: int = 400) -> dict[str, object]:
    """Top activations (with receptive-field boxes) and a t-SNE grid over scikit-learn's digits,
    streamed to the server as PNGs; the model is the ImageNet one, so the codes are generic."""
    import io

    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.neighbors import KNeighborsClassifier

    digits = load_digits()
    pngs = []
    for image in digits.images[:count]:
        buffer = io.BytesIO()
        Image.fromarray(np.clip(image * 16, 0, 255).astype(np.uint8)).resize((32, 32), Image.Resampling.NEAREST).save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    labels = digits.target[:count]
    layers = info.layers  # type: ignore[attr-defined]
    layer = [l for l in layers if l.op_type in ("Relu", "Clip") and len(l.shape) == 4 and l.shape[-1] >= 14][-1]
    hits = client.top_activations(info.id, pngs, layer=layer.tensor, channels=list(range(6)), k=9)  # type: ignore[attr-defined]
    for channel, png in hits.pngs.items():
        (out / f"top_activations_{safe_name(layer.tensor)}_c{channel}.png").write_bytes(png)
    embedding = client.embedding(info.id, pngs, seed=0)  # type: ignore[attr-defined]
    (out / "tsne_grid.png").write_bytes(embedding.png)
    (out / "tsne_scatter.png").write_bytes(embedding.scatter_png)
    half = count // 2
    knn = KNeighborsClassifier(5).fit(embedding.coords[:half], labels[:half])
    return {
        "images": count,
        "top_activations": {
            "layer": layer.tensor,
            "receptive_field": vars(layer.receptive_field) if layer.receptive_field else None,
            "top_labels": {channel: [int(labels[h.image]) for h in channel_hits] for channel, channel_hits in hits.items()},
        },
        "tsne": {"layer": embedding.layer, "perplexity": embedding.perplexity,
                 "knn_accuracy_held_out": round(float(knn.score(embedding.coords[half:], labels[half:])), 3)},
    }


INVERTED_LAYERS = ("/_blocks.1/_swish_1/Clip_output_0", "/_blocks.8/_swish_1/Clip_output_0", "/_avg_pooling/GlobalAveragePool_output_0")
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
        (out / f"inversion_{depth}.png").write_bytes(inversion.png)
        np.save(out / f"inversion_{depth}.npy", inversion.image)
        found["inversion"][depth] = {"layer": layer, "code_error": round(float(inversion.code_error), 4)}  # type: ignore[index]
    classes = client.visualize(model_id, target=list(VISUALIZED_CLASSES))
    (out / "class_models.png").write_bytes(classes.png)
    np.save(out / "class_models.npy", classes.images)
    found["class_models"] = {label: round(p, 4) for label, p in zip(classes.target_labels, classes.probabilities)}
    fooled = client.adversarial(model_id, PHOTO, method="pgd", epsilon=2 / 255, steps=10, target=fool_into)
    (out / "adversarial.png").write_bytes(fooled.png)
    np.save(out / "adversarial.npy", fooled.image)
    found["adversarial"] = {
        "target": fool_into, "success": fooled.success, "linf_pixels": round(float(fooled.linf) * 255, 2),
        "before": fooled.prediction.labels[0], "after": fooled.adversarial_prediction.labels[0],
        "after_probability": round(fooled.adversarial_prediction.probabilities[0], 4),
    }
    photo = Image.open(PHOTO).convert("RGB")
    turned = photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT).rotate(15, resample=Image.Resampling.BILINEAR)
    turned = turned.resize((round(photo.width * 1.1), round(photo.height * 1.1)), Image.Resampling.BILINEAR)
    turned.save(out / "cat_turned.png")
    matches = client.correspondence(model_id, PHOTO, out / "cat_turned.png", layer=MATCHED_LAYER)
    (out / "correspondence.png").write_bytes(matches.png)
    found["correspondence"] = {"layer": MATCHED_LAYER, "points": len(matches.points), "mean_similarity": round(float(matches.similarity.mean()), 3)}
    return found


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
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    print(f"\npictures and arrays written to {os.path.relpath(args.out)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
