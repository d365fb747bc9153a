"""Each audit figure against an independent computation: onnxruntime run directly, scipy's
intervals and false-discovery control, numpy quantiles, and a brute-force dead-filter count."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image
from scipy import ndimage, stats

from convscope.audit import attributes, checks, config, corruptions, engine
from convscope.audit.dataset import read_dataset
from convscope.audit.stats import benjamini_hochberg, wilson_interval
from convscope.core import Convscope
from tests.audit.conftest import DIGITS_MODEL
from tests.conftest import CAT_PHOTO
from tests.digits import digits, tensors

# The checks that sample images for extra runs, off unless a test is about them.
SAMPLED = ("robustness", "explanation_sanity", "explanation_faithfulness")


def run(tmp_path: Path, model: Path, data: Path, settings: dict[str, dict[str, object]] | None = None) -> engine.AuditResult:
    settings = {**{check: {"enabled": False} for check in SAMPLED}, **(settings or {})}
    core = Convscope(tmp_path / "store")
    try:
        record = core.upload([("", model.read_bytes())])
        items = read_dataset(data, record.labels, 10)
        events = list(engine.run_audit(core, record.id, items, config.resolve(settings)))
    finally:
        core.close()
    assert isinstance(events[-1], engine.AuditResult)
    return events[-1]


def session_scores(model: bytes, batch: np.ndarray, outputs: list[str] | None = None) -> list[np.ndarray]:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return session.run(outputs, {session.get_inputs()[0].name: batch})


def test_accuracy_and_intervals_match_a_direct_computation(tmp_path: Path, digits_folder: Path) -> None:
    result = run(tmp_path, DIGITS_MODEL, digits_folder)
    figures = next(c for c in result.checks if c.name == "accuracy").figures
    # The folder walk orders images by class, then file name: rebuild that order from the split.
    _, _, test_x, test_y = digits()
    order = np.concatenate([np.flatnonzero(test_y == c) for c in range(10)])
    (logits,) = session_scores(DIGITS_MODEL.read_bytes(), tensors(test_x[order]))
    labels = test_y[order]
    top5 = np.argsort(-logits, axis=1)[:, :5]
    top1_errors = int((top5[:, 0] != labels).sum())
    top5_errors = int((top5 != labels[:, None]).all(axis=1).sum())
    assert figures["top1_errors"] == top1_errors and figures["top5_errors"] == top5_errors
    for key, errors in (("top1", top1_errors), ("top5", top5_errors)):
        ci = stats.binomtest(errors, len(labels)).proportion_ci(confidence_level=0.95, method="wilson")
        np.testing.assert_allclose(figures[f"{key}_interval"], [ci.low, ci.high], rtol=1e-9, atol=1e-12)
    for row in figures["per_class"]:
        members = labels == row["class"]
        assert row["error"] == pytest.approx(float((top5[members, 0] != row["class"]).mean()))
    confusion = np.zeros((10, 10), int)
    np.add.at(confusion, (labels, top5[:, 0]), 1)
    np.fill_diagonal(confusion, 0)
    assert figures["confused_pairs"][0]["count"] == confusion.max()


@pytest.mark.parametrize("errors,total", [(0, 50), (3, 600), (50, 100), (100, 100)])
def test_wilson_interval_matches_scipy(errors: int, total: int) -> None:
    ci = stats.binomtest(errors, total).proportion_ci(confidence_level=0.9, method="wilson")
    np.testing.assert_allclose(wilson_interval(errors, total, 0.9), [ci.low, ci.high], atol=1e-12)


def test_benjamini_hochberg_matches_scipy() -> None:
    p = np.random.default_rng(0).uniform(0, 0.2, 40) ** 2
    adjusted = stats.false_discovery_control(p, method="bh")
    np.testing.assert_array_equal(benjamini_hochberg(p, 0.05), adjusted <= 0.05)


def test_attribute_bins_match_numpy() -> None:
    values = np.random.default_rng(1).normal(size=203)
    values[5] = np.nan
    slices = checks.slices_of(values, 4)
    edges = np.quantile(values[~np.isnan(values)], [0, 0.25, 0.5, 0.75, 1])
    expected = [
        ((values >= lo) & (values < hi)) | ((values == hi) & (i == 3)) for i, (lo, hi) in enumerate(zip(edges, edges[1:]))
    ]
    assert len(slices) == 4
    for (_, members), want in zip(slices, expected):
        np.testing.assert_array_equal(members, want)
    assert sum(members.sum() for _, members in slices) == 202


def _numpy_attributes(picture: np.ndarray) -> dict[str, float]:
    rgb = picture.astype(np.float64)
    luma = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / 255
    red_green, yellow_blue = rgb[..., 0] - rgb[..., 1], (rgb[..., 0] + rgb[..., 1]) / 2 - rgb[..., 2]
    return {
        "brightness": luma.mean(),
        "contrast": luma.std(),
        # Hasler & Süsstrunk 2003
        "colourfulness": np.hypot(red_green.std(), yellow_blue.std()) + 0.3 * np.hypot(red_green.mean(), yellow_blue.mean()),
        "sharpness": ndimage.laplace(luma)[1:-1, 1:-1].var(),
    }


def test_computed_attributes_match_numpy() -> None:
    """Float64 numpy (and scipy's Laplacian) per picture vs the batch's float32 moments: small
    random pictures, the cat at the bundled model's size, and a nearly flat grey one (where a
    variance taken as E[x²] − E[x]² in float32 would lose its digits)."""
    random = np.random.default_rng(2).integers(0, 256, (3, 12, 9, 3), dtype=np.uint8)
    cat = np.asarray(Image.open(CAT_PHOTO).convert("RGB").resize((224, 224)))
    grey = np.full((224, 224, 3), 128, np.uint8)
    grey[::7, ::5] += 3
    for pictures in (random, np.stack([cat, grey, np.roll(cat, 40, axis=1)])):
        measured = attributes.measure(pictures)
        for index, picture in enumerate(pictures):
            for name, expected in _numpy_attributes(picture).items():
                assert measured[name][index] == pytest.approx(expected, rel=1e-4), (name, index)


def test_a_slice_with_many_more_errors_fails_and_chance_does_not() -> None:
    rng = np.random.default_rng(3)
    wrong = rng.random(800) < 0.05
    signal = rng.uniform(size=800)
    wrong[signal > 0.75] = rng.random((signal > 0.75).sum()) < 0.5  # the top quartile errs at 50 %
    noise = rng.uniform(size=800)
    settings = config.resolve()["attributes"]
    outcome = checks.attribute_slices(wrong, {"signal": signal, "noise": noise}, settings)
    failed = [(row["attribute"], row["slice"]) for row in outcome.figures["slices"] if row["failed"]]
    assert outcome.status == "failed" and len(failed) == 1 and failed[0][0] == "signal" and failed[0][1].endswith("]")


def test_dead_filters_match_brute_force(tmp_path: Path, digits_folder: Path) -> None:
    model = onnx.load(str(DIGITS_MODEL))
    # Kill three channels of the first convolution: a bias far below any input's reach.
    bias = next(init for init in model.graph.initializer if init.name == model.graph.node[0].input[2])
    values = onnx.numpy_helper.to_array(bias).copy()
    values[[1, 5, 9]] = -1e3
    bias.CopyFrom(onnx.numpy_helper.from_array(values, bias.name))
    relus = [node.output[0] for node in model.graph.node if node.op_type == "Relu"]
    path = tmp_path / "dead.onnx"
    onnx.save(model, str(path))
    result = run(tmp_path, path, digits_folder)
    layers = {row["layer"]: row["dead"] for row in next(c for c in result.checks if c.name == "dead_filters").figures["layers"]}
    model.graph.output.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in relus)
    _, _, test_x, _ = digits()
    exposed = session_scores(model.SerializeToString(), tensors(test_x), relus)
    brute = {
        name: np.flatnonzero((value == 0).all(axis=(0, *range(2, value.ndim)))).tolist() for name, value in zip(relus, exposed)
    }
    assert layers == brute
    assert {1, 5, 9} <= set(brute[relus[0]])
    json.dumps(result.checks[2].figures)  # the figures are what report.json holds


@pytest.mark.parametrize("corruption", ["gaussian_noise", "gaussian_blur", "brightness", "contrast", "jpeg"])
def test_a_stack_is_corrupted_as_its_pictures_one_at_a_time(corruption: str) -> None:
    """The robustness check corrupts its pictures as one stack: the same pixels, and the same
    noise draws, as corrupting them in turn from the same seed."""
    pictures = np.random.default_rng(1).integers(0, 256, (12, 9, 7, 3), dtype=np.uint8)
    for severity in (1, 2, 3):
        one_at_a_time, together = np.random.default_rng(severity), np.random.default_rng(severity)
        expected = np.stack([corruptions.corrupt(picture, corruption, severity, one_at_a_time) for picture in pictures])
        np.testing.assert_array_equal(corruptions.corrupt(pictures, corruption, severity, together), expected)


def test_corruption_accuracies_match_a_direct_computation(tmp_path: Path, digits_folder: Path) -> None:
    result = run(tmp_path, DIGITS_MODEL, digits_folder, {"robustness": {"enabled": True, "images": 150}})
    figures = next(c for c in result.checks if c.name == "robustness").figures
    chosen = checks.evenly_spaced(150, len(result.items))
    pictures = []
    for index in chosen:
        with Image.open(result.items[index].path) as image:
            pictures.append(np.asarray(image.convert("RGB").resize((16, 16), Image.Resampling.NEAREST)))
    truth = np.array([result.items[i].label for i in chosen])

    def direct_accuracy(changed: list[np.ndarray]) -> float:
        batch = np.stack([picture[..., 0] for picture in changed])[:, None].astype(np.float32) / 255
        (logits,) = session_scores(DIGITS_MODEL.read_bytes(), batch)
        return float((logits.argmax(1) == truth).mean())

    def jpeg(picture: np.ndarray, quality: int) -> np.ndarray:
        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, format="JPEG", quality=quality)
        return np.asarray(Image.open(buffer).convert("RGB"))

    clean = direct_accuracy(pictures)
    assert figures["clean_accuracy"] == pytest.approx(clean)
    brighter = [np.clip(p.astype(np.float64) + 0.3 * 255, 0, 255).round().astype(np.uint8) for p in pictures]
    assert figures["corruptions"]["brightness"]["accuracy"][1] == pytest.approx(direct_accuracy(brighter))
    assert figures["corruptions"]["jpeg"]["accuracy"][2] == pytest.approx(direct_accuracy([jpeg(p, 8) for p in pictures]))
    drop = (clean - figures["corruptions"]["jpeg"]["accuracy"][2]) / clean
    assert figures["corruptions"]["jpeg"]["relative_drop"][2] == pytest.approx(drop)
