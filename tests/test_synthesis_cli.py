"""The invert, visualize and adversarial subcommands write PNG, .npy and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from convscope_client import Client
from tests.conftest import CAT_PHOTO
from tests.nets import exported
from tests.test_client_cli import Cli, cli  # noqa: F401  (the fixture)


def test_adversarial_writes_png_npy_and_json(cli: Cli, bundled_model_id: str, tmp_path: Path) -> None:  # noqa: F811
    code, out, err = cli(
        "adversarial", bundled_model_id, str(CAT_PHOTO), "--method", "pgd", "--steps", "2", "--out", str(tmp_path)
    )
    assert code == 0 and "steps" in err
    assert out["success"] is True and out["linf"] <= 2 / 255 + 1e-6
    assert sorted(Path(f).name for f in out["files"]) == [
        "adversarial.json",
        "adversarial.npy",
        "adversarial.png",
        "adversarial_images.npy",
    ]
    assert np.load(tmp_path / "adversarial.npy").shape == (1, 3, 224, 224)
    assert json.loads((tmp_path / "adversarial.json").read_text())["prediction"]["classes"][0] == out["label"]
    with Image.open(tmp_path / "adversarial.png") as picture:
        assert picture.size[0] > 3 * 224


def test_visualize_and_invert(cli: Cli, client: Client, tmp_path: Path) -> None:  # noqa: F811
    model = client.upload_model(exported("ResNetStyle", "torchscript").SerializeToString(), name="ResNetStyle").id
    code, out, _ = cli("visualize", model, "--target", "2", "--target", "5", "--steps", "5", "--out", str(tmp_path))
    assert code == 0 and out["targets"] == [2, 5] and len(out["probabilities"]) == 2
    assert np.load(tmp_path / "visualize_images.npy").shape == (2, 32, 32, 3)
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 32, 32), np.float32) + 0.1)
    layer = next(layer.tensor for layer in client.get_model(model).layers if layer.op_type == "Relu")
    code, out, _ = cli("invert", model, str(tmp_path / "x.npy"), "--layer", layer, "--steps", "3", "--out", str(tmp_path))
    assert code == 0, out
    history = json.loads((tmp_path / "invert.json").read_text())["history"]
    assert len(history) == 3 and out["layer"] == layer


def test_correspondence_writes_matches(cli: Cli, bundled_model_id: str, tmp_path: Path) -> None:  # noqa: F811
    layer = "/_blocks.8/_swish_1/Clip_output_0"
    code, out, _ = cli(
        "correspondence", bundled_model_id, str(CAT_PHOTO), str(CAT_PHOTO), "--layer", layer, "--out", str(tmp_path)
    )
    assert code == 0 and out["layers"] == [layer]
    pairs = np.load(tmp_path / "correspondence.npy")
    assert pairs.shape == (144, 2, 2)
    assert np.median(np.abs(pairs[:, 0] - pairs[:, 1])) < 16, "an image matches itself"
