"""Dataset jobs vs plain batched onnxruntime inference, and t-SNE time for 10,000 codes.

Images: 2,048 JPEGs (256×256, quality 90) cut at random from the photos bundled with
scikit-learn and the demo cat (crop, flip, rescale), written to a folder that the server gets
as its data root. Model: the bundled EfficientNet-Lite0 (224×224, resize 256 + centre crop).

* plain: onnxruntime on the same model and the same preprocessed images, batches of 32 —
  inference time only (decoding is done beforehand, untimed), which is the peer to beat; and
  decode-then-infer in one thread, what a simple script does.
* job: ``Client.top_activations`` over a folder under the server's data root (a folder job
  through gRPC, all 1280 channels of the last ReLU6, k = 9); its rate is images / seconds at
  its last progress report, i.e. the pass over the images, before the figures are drawn.

1. One job over all the images with figures on (the client's default), plain runs before and
   after: throughput, end-to-end time, and what drawing the 1280 figures costs.
2. Paired rounds, the headline ratio: the images in chunks of 256; per chunk a plain run and a
   job back to back, in alternating order; the median over rounds. The machine may be shared,
   and its load moves plain inference by 2× within minutes: only close pairs compare fairly.

Then t-SNE of 10,000 synthetic 1280-d codes (10 Gaussian clusters; PCA to 50 first) and the grid
snapping of 1,024 of them. Prints the figures and writes benchmarks/results/dataset.json.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_sample_images

from benchmarks._common import write_results
from convscope.methods.embedding import embed
from convscope.model.preprocessing import decode_sample
from convscope.render.dataset_figures import snap_to_grid
from convscope.rpc.server import ServerConfig, create_server
from convscope.runtime.providers import new_session, usable_providers
from convscope_client import Client, Progress, ServerFolder
from convscope_client.choices import EmbeddingMethod

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "efficientnet_lite0" / "efficientnet_lite0.onnx"
PHOTO = REPO / "models" / "chelsea.png"
BATCH = 32


def make_images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    sources = [*load_sample_images().images, np.asarray(Image.open(PHOTO).convert("RGB"))]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        source = sources[index % len(sources)]
        side = int(rng.integers(160, min(source.shape[:2]) + 1))
        top = int(rng.integers(0, source.shape[0] - side + 1))
        left = int(rng.integers(0, source.shape[1] - side + 1))
        crop = source[top : top + side, left : left + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        path = folder / f"{index:05d}.jpg"
        Image.fromarray(np.ascontiguousarray(crop)).resize((256, 256), Image.Resampling.BILINEAR).save(path, quality=90)
        paths.append(path)
    return paths


def plain_inference(record, paths: list[Path]) -> dict[str, float]:
    session = new_session(str(MODEL))
    name = session.get_inputs()[0].name
    session.run(None, {name: np.stack([decode_sample(record, paths[0].read_bytes()).value()] * BATCH)})  # warm-up
    infer = decode = 0.0
    for start in range(0, len(paths), BATCH):
        began = time.perf_counter()
        batch = np.stack([decode_sample(record, path.read_bytes()).value() for path in paths[start : start + BATCH]])
        decoded = time.perf_counter()
        session.run(None, {name: batch})
        infer += time.perf_counter() - decoded
        decode += decoded - began
    return {"inference_seconds": infer, "decode_seconds": decode}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--codes", type=int, default=10_000)
    parser.add_argument("--chunk", type=int, default=256, help="images per paired round")
    args = parser.parse_args(argv)
    results: dict[str, object] = {"model": "efficientnet_lite0", "images": args.images, "providers": list(usable_providers())}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "data"
        started = time.perf_counter()
        paths = make_images(root / "images", args.images)
        chunks = [paths[i : i + args.chunk] for i in range(0, len(paths), args.chunk)]
        for index, chunk in enumerate(chunks):  # the same files, one folder per chunk
            (root / "chunks" / f"{index:02d}").mkdir(parents=True)
            for path in chunk:
                os.link(path, root / "chunks" / f"{index:02d}" / path.name)
        print(f"wrote {len(paths)} JPEGs in {time.perf_counter() - started:.1f} s")
        running = create_server(ServerConfig(store=Path(scratch) / "store", data_roots=(root,)))
        try:
            with Client(f"127.0.0.1:{running.port}", timeout=3600) as client:
                info = client.upload_model(MODEL)
                record = running.core.model(info.id)
                layer = [l.tensor for l in info.layers if l.op_type == "Clip" and len(l.shape) == 4][-1]
                client.top_activations(info.id, paths[:64], layer=layer, k=9)  # build the session

                def job(folder: str, render: bool) -> tuple[float, float, int]:
                    last: list[Progress] = []
                    began = time.perf_counter()
                    hits = client.top_activations(
                        info.id, ServerFolder(folder), layer=layer, k=9, render=render, progress=last.append
                    )
                    return last[-1].seconds, time.perf_counter() - began, len(hits.pngs)

                # 1. one job over every image, figures on (the client's default), plain runs around it
                before = plain_inference(record, paths)
                pass_seconds, wall_seconds, figures = job("images", True)
                after = plain_inference(record, paths)
                loads.append(os.getloadavg()[0])
                inference = (before["inference_seconds"] + after["inference_seconds"]) / 2
                full = {
                    "job_images_per_second": args.images / pass_seconds,
                    "job_end_to_end_images_per_second": args.images / wall_seconds,
                    "figures": figures,
                    "figure_seconds": wall_seconds - pass_seconds,
                    "plain_inference_images_per_second": [
                        args.images / before["inference_seconds"],
                        args.images / after["inference_seconds"],
                    ],
                    "plain_decode_then_infer_images_per_second": 2
                    * args.images
                    / sum(run["inference_seconds"] + run["decode_seconds"] for run in (before, after)),
                    "job_vs_plain_inference": inference / pass_seconds,
                }
                print(
                    f"one job over {args.images}: {full['job_images_per_second']:.1f} img/s in the pass, "
                    f"{full['job_end_to_end_images_per_second']:.1f} img/s with {figures} figures; plain "
                    f"{full['plain_inference_images_per_second'][0]:.1f} / {full['plain_inference_images_per_second'][1]:.1f} img/s"
                )

                # 2. paired rounds: plain and job on the same chunk, back to back, order alternating
                rounds = []
                for index, chunk in enumerate(chunks):
                    if index % 2 == 0:
                        plain = plain_inference(record, chunk)
                        seconds, _, _ = job(f"chunks/{index:02d}", False)
                    else:
                        seconds, _, _ = job(f"chunks/{index:02d}", False)
                        plain = plain_inference(record, chunk)
                    rounds.append(
                        {
                            "plain_inference_images_per_second": len(chunk) / plain["inference_seconds"],
                            "plain_decode_then_infer_images_per_second": len(chunk)
                            / (plain["inference_seconds"] + plain["decode_seconds"]),
                            "job_images_per_second": len(chunk) / seconds,
                            "job_vs_plain_inference": plain["inference_seconds"] / seconds,
                            "job_vs_plain_decode_then_infer": (plain["inference_seconds"] + plain["decode_seconds"]) / seconds,
                        }
                    )
                    print(
                        f"round {index}: plain {rounds[-1]['plain_inference_images_per_second']:.1f}, "
                        f"job {rounds[-1]['job_images_per_second']:.1f} img/s ({rounds[-1]['job_vs_plain_inference']:.2f}x)"
                    )
                loads.append(os.getloadavg()[0])
        finally:
            running.stop(grace=1)
    rates = {key: float(np.median([r[key] for r in rounds])) for key in rounds[0] if key.endswith("per_second")}
    ratios = {key: float(np.median([r[key] for r in rounds])) for key in rounds[0] if "_vs_" in key}
    results.update(
        layer=layer,
        channels=1280,
        one_job=full,
        paired_rates_median=rates,
        paired_ratios_median=ratios,
        rounds=rounds,
        load_average_1min=loads,
    )

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((10, 1280)).astype(np.float32) * 3
    codes = centres[rng.integers(0, 10, args.codes)] + rng.standard_normal((args.codes, 1280)).astype(np.float32)
    started = time.perf_counter()
    coords, perplexity = embed(codes, EmbeddingMethod.TSNE, perplexity=30.0, seed=0)
    tsne_seconds = time.perf_counter() - started
    started = time.perf_counter()
    snap_to_grid(coords[:1024], 32)
    grid_seconds = time.perf_counter() - started
    results["tsne"] = {
        "codes": args.codes,
        "dimensions": 1280,
        "pca_then_tsne_seconds": tsne_seconds,
        "grid_snap_1024_seconds": grid_seconds,
    }

    for name, value in rates.items():
        print(f"paired median {name:45s} {value:8.1f}")
    for name, ratio in ratios.items():
        print(f"paired median {name:45s} {ratio:6.3f}x")
    print(f"t-SNE of {args.codes} codes (1280-d, PCA to 50 first): {tsne_seconds:.1f} s; grid snap of 1024: {grid_seconds:.2f} s")
    write_results("dataset", results)


if __name__ == "__main__":
    main()
