"""The robustness check's FGSM and PGD-10 figures against Captum's ``FGSM`` and ``PGD`` on the
torch twin of the shipped digits CNN (its ONNX weights loaded into ``tests.digits.DigitsCNN``).

The twin takes pixels in [0, 1] (the model's preprocessing is a plain 1/255 scale), attacked
within (0, 1) away from each correctly classified image's true label, at the audit's ε, steps
and PGD step size (2.5·ε/steps), no random start.  Sign steps make float32 sign flips of
near-zero gradients move a pixel by 2·step on one side only, so a few borderline images may
come out differently: we allow ``MAX_DIFFERENT_VERDICTS`` of the attacked images to differ.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from captum.robust import FGSM, PGD
from junitparser import Failure, JUnitXml
from onnx import numpy_helper
from torch import nn

from convscope.audit import config, engine
from convscope.audit.dataset import read_dataset
from convscope.audit.robustness import PIXEL_LEVELS
from convscope.cli import main
from convscope.core import Convscope
from tests.audit.conftest import DIGITS_MODEL
from tests.digits import DigitsCNN, digits, tensors

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients:UserWarning"),
]

EPSILONS = [1, 2, 4, 8]
PGD_STEPS = 10
MAX_DIFFERENT_VERDICTS = 0.01  # share of the attacked images whose fooled/not verdict may differ from Captum's


def twin() -> nn.Module:
    net = DigitsCNN()
    weights = {
        tensor.name: torch.from_numpy(numpy_helper.to_array(tensor).copy())
        for tensor in onnx.load(DIGITS_MODEL).graph.initializer
    }
    net.load_state_dict(weights)
    return net.eval()


def captum_fooled(net: nn.Module, pixels: np.ndarray, labels: np.ndarray, attack: str, epsilon: float) -> np.ndarray:
    loss = nn.CrossEntropyLoss(reduction="none")
    inputs, target = torch.from_numpy(pixels), torch.from_numpy(labels)
    if attack == "fgsm":
        adversarial = FGSM(net, loss, 0.0, 1.0).perturb(inputs, epsilon, target)
    else:
        adversarial = PGD(net, loss, 0.0, 1.0).perturb(inputs, epsilon, 2.5 * epsilon / PGD_STEPS, PGD_STEPS, target, norm="Linf")
    with torch.no_grad():
        return net(adversarial).argmax(1).numpy() != labels


@pytest.fixture(scope="module")
def attacked(tmp_path_factory: pytest.TempPathFactory, digits_folder: Path) -> dict[str, object]:
    """The robustness check's figures over all 600 held-out digits (corruptions at one image, not under test)."""
    core = Convscope(tmp_path_factory.mktemp("store"))
    try:
        record = core.upload([("", DIGITS_MODEL.read_bytes())])
        items = read_dataset(digits_folder, record.labels, 10)
        settings = {check: {"enabled": check == "robustness"} for check in config.DEFAULTS}
        settings["robustness"].update(
            images=1, attack_images=len(items), epsilons=EPSILONS, pgd_steps=PGD_STEPS, max_attack_success=[1.0] * len(EPSILONS)
        )
        *_, result = engine.run_audit(core, record.id, items, config.resolve(settings))
    finally:
        core.close()
    (check,) = [c for c in result.checks if c.name == "robustness"]
    assert check.status == "passed", check.message
    return check.figures["adversarial"]


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_attacks_match_captum_on_the_torch_twin(attacked: dict[str, object], attack: str) -> None:
    _, _, test_x, test_y = digits()
    order = np.concatenate([np.flatnonzero(test_y == c) for c in range(10)])  # the folder walk's order
    pixels, labels = tensors(test_x[order]), test_y[order].astype(np.int64)
    net = twin()
    with torch.no_grad():
        right = net(torch.from_numpy(pixels)).argmax(1).numpy() == labels
    assert attacked["clean_accuracy"] == pytest.approx(right.mean())
    rows = attacked["attacks"][attack]
    assert [row["epsilon"] for row in rows] == EPSILONS
    for row in rows:
        fooled = captum_fooled(net, pixels[right], labels[right], attack, row["epsilon"] / PIXEL_LEVELS)
        assert row["attacked"] == right.sum()
        assert abs(row["attack_success"] - fooled.mean()) <= MAX_DIFFERENT_VERDICTS, (attack, row, fooled.mean())
        assert row["robust_accuracy"] == pytest.approx((right.sum() - row["attack_success"] * right.sum()) / len(labels))
    successes = [row["attack_success"] for row in rows]
    assert successes == sorted(successes) and successes[-1] > successes[0], "a larger ε fools more images"


def test_pgd_fools_at_least_as_many_as_fgsm(attacked: dict[str, object]) -> None:
    for fgsm, pgd in zip(attacked["attacks"]["fgsm"], attacked["attacks"]["pgd"]):
        assert pgd["attack_success"] >= fgsm["attack_success"] - 0.01, (fgsm, pgd)


def test_config_checks_the_attack_settings() -> None:
    with pytest.raises(config.ConfigError, match="one share per epsilon"):
        config.resolve({"robustness": {"max_attack_success": [0.5]}})
    with pytest.raises(config.ConfigError, match=r"unknown \['cw'\]"):
        config.resolve({"robustness": {"attacks": ["cw"]}})
    with pytest.raises(config.ConfigError, match="numbers ≥ 0"):
        config.resolve({"robustness": {"epsilons": [1, "two", 4, 8]}})


def test_a_strict_attack_threshold_fails_naming_attack_and_epsilon(tmp_path: Path, digits_folder: Path) -> None:
    strict = """
[robustness]
images = 50
attack_images = 50
max_mean_relative_drop = 1.0
max_attack_success = [1.0, 1.0, 1.0, 0.0]
[explanation_sanity]
enabled = false
[explanation_faithfulness]
enabled = false
"""
    (tmp_path / "audit.toml").write_text(strict)
    out = tmp_path / "out"
    code = main(
        ["audit", str(DIGITS_MODEL), "--data", str(digits_folder), "--config", str(tmp_path / "audit.toml"), "--out", str(out)]
    )
    assert code == 1
    suite = next(iter(JUnitXml.fromfile(str(out / "junit.xml"))))
    (failure,) = next(case.result for case in suite if case.name == "robustness")
    assert isinstance(failure, Failure)
    assert "fgsm at ε 8/255: attack_success" in failure.message and "pgd at ε 8/255" in failure.message
    assert "max_attack_success 0.0" in failure.message and "4/255" not in failure.message
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["robustness"]["max_attack_success"] == [1.0, 1.0, 1.0, 0.0]
    html = (out / "report.html").read_text()
    assert "robust accuracy under attack" in html and "PGD" in html
