"""PNG encoding of dataset-job figures: the hand-written encoder (render.montage.encode_png_fast)
vs Pillow, measured in the same run on the same figures.

Where it matters: a top-activations job draws one figure per channel (1,280 for the last
layer of EfficientNet-Lite0), a t-SNE job a grid and a scatter. Figures: 9 receptive-field
crops beside their 9 photos (``hits_figure``, tiles of 96 px, cut from scikit-learn's sample
photos), and a 1,024-px scatter of thumbnails. Peers: Pillow at compress_level 1 (its fastest
zlib level) and at its default (6). Also timed: drawing the hits figure, to show what share of a
figure's cost the encoding is. Prints ms per figure, ratios and the bytes, and writes
benchmarks/results/png.json.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from sklearn.datasets import load_sample_images

from benchmarks._common import interleaved_medians, write_results
from convscope.render.montage import crop, encode_png_fast, fit, hits_figure, scatter

TILE = 96
FIGURES_PER_JOB = 1280


def pillow(pixels: np.ndarray, **options: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", **options)
    return buffer.getvalue()


def figures() -> dict[str, tuple[np.ndarray, object]]:
    photos = [np.asarray(image) for image in load_sample_images().images]
    rng = np.random.default_rng(0)
    pictures, crops, boxes = [], [], []
    for index in range(9):
        photo = photos[index % len(photos)]
        y, x = int(rng.integers(0, photo.shape[0] - 100)), int(rng.integers(0, photo.shape[1] - 100))
        tile, scale, (top, left) = fit(photo, TILE)
        pictures.append(tile)
        crops.append(crop(photo, (y, x, y + 100, x + 100), TILE))
        boxes.append((top + int(y * scale), left + int(x * scale), top + int((y + 100) * scale), left + int((x + 100) * scale)))
    values = sorted(rng.random(9), reverse=True)
    hits = hits_figure(pictures, boxes, values, crops)
    thumbnails = [fit(photos[i % 2][j : j + 64, j : j + 64], 48)[0] for i, j in enumerate(range(0, 300, 3))]
    spread = scatter(thumbnails, rng.random((len(thumbnails), 2)), canvas_size=1024)
    return {"hits figure": (hits, lambda: hits_figure(pictures, boxes, values, crops)), "scatter": (spread, None)}


def main() -> None:
    results: dict[str, object] = {}
    for name, (pixels, draw) in figures().items():
        works = {
            "fast": lambda p=pixels: encode_png_fast(p),
            "pillow level 1": lambda p=pixels: pillow(p, compress_level=1),
            "pillow default": lambda p=pixels: pillow(p),
        }
        if draw is not None:
            works["drawing"] = draw
        seconds = interleaved_medians(works, repeats=30)
        sizes = {
            "fast": len(encode_png_fast(pixels)),
            "pillow level 1": len(pillow(pixels, compress_level=1)),
            "pillow default": len(pillow(pixels)),
        }
        ratios = {peer: seconds[peer] / seconds["fast"] for peer in ("pillow level 1", "pillow default")}
        results[name] = {
            "shape": list(pixels.shape),
            "ms": {k: v * 1e3 for k, v in seconds.items()},
            "bytes": sizes,
            "pillow / fast": ratios,
        }
        print(f"{name} {pixels.shape[1]}×{pixels.shape[0]}: " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in seconds.items()))
        print(
            f"  Pillow level 1 / fast = {ratios['pillow level 1']:.2f}×, Pillow default / fast = {ratios['pillow default']:.2f}×;"
            f" bytes {sizes}"
        )
        if name == "hits figure":
            saved = (seconds["pillow level 1"] - seconds["fast"]) * FIGURES_PER_JOB
            print(f"  a {FIGURES_PER_JOB}-channel top-activations job: {saved:.1f} s saved over Pillow level 1")
            results[name]["seconds saved per 1280-figure job"] = saved  # type: ignore[index]
    write_results("png", results)


if __name__ == "__main__":
    main()
