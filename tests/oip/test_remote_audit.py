"""`convscope audit --remote`: the audit of a model served elsewhere (convscope's own Open Inference
Protocol endpoint, in a second process), nothing uploaded by the audit. Accuracy, attribute slices
and corruptions equal the local audit's on the same model and data; the checks that need the
weights or gradients are skipped, with their reason, never passed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from junitparser import JUnitXml, Skipped

from convscope.audit.checks import ATTACKS_SKIPPED
from convscope.audit.engine import REMOTE_SKIPS
from convscope.cli import main
from convscope_client import Client
from tests.audit.conftest import DIGITS_MODEL, digits_folder  # noqa: F401 - the fixture, used here too
from tests.oip.server_process import serving_process

REMOTE_NAME = "digits-remote"
# Few images per sampled check and no explanation checks, so the local reference stays quick;
# the remote run keeps the attacks on to show they are skipped there.
CONFIG = """
[accuracy]
max_top1_error = 0.10
[robustness]
images = 64
max_mean_relative_drop = 1.0
{attacks}
[explanation_sanity]
enabled = {explanations}
[explanation_faithfulness]
enabled = {explanations}
"""


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The remote server's address and the digits model's preprocessing, as --preprocessing takes it."""
    with serving_process(tmp_path_factory.mktemp("remote")) as address:
        with Client(address, timeout=120) as remote_client:
            info = remote_client.upload_model(DIGITS_MODEL, name=REMOTE_NAME)
        yield address, json.dumps(info.preprocessing)


def _audit(folder: Path, config: str, *argv: str) -> tuple[int, dict[str, object], JUnitXml]:
    (folder / "audit.toml").write_text(config)
    code = main(["audit", *argv, "--config", str(folder / "audit.toml"), "--out", str(folder / "out")])
    return code, json.loads((folder / "out" / "report.json").read_text()), JUnitXml.fromfile(str(folder / "out" / "junit.xml"))


def test_remote_audit_equals_the_local_one(endpoint: tuple[str, str], digits_folder: Path, tmp_path: Path) -> None:  # noqa: F811
    address, preprocessing = endpoint
    (tmp_path / "local").mkdir()
    (tmp_path / "remote").mkdir()
    code, local, _ = _audit(
        tmp_path / "local",
        CONFIG.format(attacks="attacks = []", explanations="false"),
        str(DIGITS_MODEL),
        "--data",
        str(digits_folder),
    )
    assert code == 0
    code, remote, junit = _audit(
        tmp_path / "remote",
        CONFIG.format(attacks="", explanations="true"),
        "--remote",
        f"grpc://{address}",
        "--remote-model",
        REMOTE_NAME,
        "--preprocessing",
        preprocessing,
        "--data",
        str(digits_folder),
    )
    assert code == 0  # skipped checks do not fail the audit
    assert remote["passed"] is True and remote["dataset"] == local["dataset"]
    checks, want = remote["checks"], local["checks"]
    for name in ("accuracy", "attributes", "robustness"):
        assert checks[name]["status"] == want[name]["status"] == "passed"
    # Every figure is a count or a function of counts, so the same top classes give them exactly.
    assert checks["accuracy"]["figures"] == want["accuracy"]["figures"]
    assert checks["accuracy"]["figures"]["per_class"] and checks["accuracy"]["figures"]["top1_errors"] > 0
    assert checks["accuracy"]["thumbnails"] == want["accuracy"]["thumbnails"]
    assert checks["attributes"]["figures"] == want["attributes"]["figures"]
    assert len(checks["attributes"]["figures"]["slices"]) > 1
    for figure in ("images", "clean_accuracy", "corruptions"):
        assert checks["robustness"]["figures"][figure] == want["robustness"]["figures"][figure]
    assert checks["robustness"]["figures"]["adversarial"] == {"skipped": ATTACKS_SKIPPED}
    skipped = {case.name: case.result for case in next(iter(junit)) if case.name in REMOTE_SKIPS}
    assert set(skipped) == set(REMOTE_SKIPS)
    for name, reason in REMOTE_SKIPS.items():
        assert checks[name]["status"] == "skipped" and reason in checks[name]["message"]
        assert isinstance(skipped[name][0], Skipped) and reason in skipped[name][0].message


def test_remote_audit_usage_errors_exit_2(endpoint: tuple[str, str], digits_folder: Path, tmp_path: Path) -> None:  # noqa: F811
    address, _ = endpoint
    data = ["--data", str(digits_folder), "--out", str(tmp_path / "out")]
    assert main(["audit", "--remote", address, *data]) == 2  # no --remote-model
    assert main(["audit", str(DIGITS_MODEL), "--remote", address, "--remote-model", REMOTE_NAME, *data]) == 2
    assert main(["audit", "--remote", address, "--remote-model", "no-such-model", *data]) == 2  # NOT_FOUND there
