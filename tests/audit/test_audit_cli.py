"""`convscope audit` end to end on the shipped digits CNN: exit codes, report.json, junit.xml."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from junitparser import Error, Failure, JUnitXml

from convscope.audit import engine
from convscope.cli import main
from tests.audit.conftest import DIGITS_MODEL

SENSIBLE = (DIGITS_MODEL.parent / "audit.toml").read_text()  # the shipped config the demo uses
# Checks that do not run the model's data pass again, for tests about exit codes and files.
PASS_ONLY = """
[accuracy]
max_top1_error = 0.10
max_top5_error = 0.02
[attributes]
max_excess_error = 0.15
[robustness]
enabled = false
[explanation_sanity]
enabled = false
[explanation_faithfulness]
enabled = false
"""
STRICT = PASS_ONLY.replace("max_top1_error = 0.10", "max_top1_error = 0.01")


def audit(tmp_path: Path, data: Path, config: str | None = None, *extra: str) -> tuple[int, Path]:
    out = tmp_path / "out"
    argv = ["audit", str(DIGITS_MODEL), "--data", str(data), "--out", str(out), *extra]
    if config is not None:
        (tmp_path / "audit.toml").write_text(config)
        argv += ["--config", str(tmp_path / "audit.toml")]
    return main(argv), out


def cases(out: Path) -> dict[str, list[object]]:
    suite = next(iter(JUnitXml.fromfile(str(out / "junit.xml"))))
    return {case.name: case.result for case in suite}


def test_sensible_config_passes(tmp_path: Path, digits_folder: Path) -> None:
    code, out = audit(tmp_path, digits_folder, SENSIBLE)
    assert code == 0
    results = cases(out)
    assert set(results) == {
        "accuracy",
        "attributes",
        "dead_filters",
        "filter_smoothness",
        "robustness",
        "explanation_sanity",
        "explanation_faithfulness",
    }
    assert all(result == [] for result in results.values())  # no failure, error or skip
    report = json.loads((out / "report.json").read_text())
    assert report["schema"] == "convscope.audit/1" and report["passed"] is True
    assert report["model"]["sha256"] == hashlib.sha256(DIGITS_MODEL.read_bytes()).hexdigest()
    assert report["config"]["accuracy"]["max_top1_error"] == 0.08
    assert {"onnx", "numpy", "python"} <= set(report["versions"])
    assert report["dataset"]["images"] == 600


def test_strict_config_fails_naming_the_figure(tmp_path: Path, digits_folder: Path) -> None:
    code, out = audit(tmp_path, digits_folder, STRICT)
    assert code == 1
    (failure,) = cases(out)["accuracy"]
    assert isinstance(failure, Failure)
    assert "top1_error" in failure.message and "max_top1_error 0.01" in failure.message
    assert json.loads((out / "report.json").read_text())["checks"]["accuracy"]["status"] == "failed"


def test_unknown_labels_exit_2_naming_the_rows(tmp_path: Path, digits_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = sorted((digits_folder / "3").glob("*.png"))[:3]
    rows = ["path,label", f"{images[0]},3", f"{images[1]},seven", f"{images[2]},12"]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    code, _ = audit(tmp_path, tmp_path / "labels.csv")
    assert code == 2
    error = capsys.readouterr().err
    assert "row 2: label 'seven'" in error and "row 3: label '12'" in error and "row 1" not in error


def test_unreadable_files_exit_2_naming_the_rows(tmp_path: Path, digits_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    shutil.copytree(digits_folder / "4", data / "4")
    (data / "4" / "zzz-broken.png").write_bytes(b"not a png")
    code, _ = audit(tmp_path, data)
    assert code == 2
    error = capsys.readouterr().err
    rows = len(list((data / "4").glob("*.png")))
    assert f"row {rows}: {data / '4' / 'zzz-broken.png'}" in error


def test_a_fifo_in_the_dataset_exits_2_instead_of_blocking(
    tmp_path: Path, digits_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = sorted((digits_folder / "4").glob("*.png"))[:20]
    os.mkfifo(tmp_path / "fifo.png")  # reading a FIFO nobody writes would hang the audit
    rows = [f"{path},4" for path in images] + [f"{tmp_path / 'fifo.png'},4"]
    (tmp_path / "data.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    code, _ = audit(tmp_path, tmp_path / "data.csv")
    assert code == 2
    assert "fifo.png: is not a regular file" in capsys.readouterr().err


def test_bad_config_exits_2(tmp_path: Path, digits_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = audit(tmp_path, digits_folder, "[accuracy]\nmax_top1_eror = 0.1\n")
    assert code == 2
    assert "unknown setting accuracy.max_top1_eror" in capsys.readouterr().err


def test_a_crashing_check_is_an_internal_error_unless_allowed(
    tmp_path: Path, digits_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> engine.CheckOutcome:
        raise RuntimeError("injected failure")

    monkeypatch.setattr(engine, "dead_filters", broken)
    code, out = audit(tmp_path, digits_folder, PASS_ONLY)
    assert code == 3
    (error,) = cases(out)["dead_filters"]
    assert isinstance(error, Error) and "injected failure" in error.message
    code, out = audit(tmp_path, digits_folder, PASS_ONLY + "[dead_filters]\nallow_error = true\n")
    assert code == 0
    assert "allowed by allow_error" in json.loads((out / "report.json").read_text())["checks"]["dead_filters"]["message"]


def test_an_internal_failure_in_the_pass_exits_3(tmp_path: Path, digits_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: object, *args: object) -> None:
        raise RuntimeError("injected failure in the shared pass")

    monkeypatch.setattr(engine.AuditPass, "add_reduced", broken)
    code, _ = audit(tmp_path, digits_folder)
    assert code == 3


def test_a_disabled_check_is_skipped(tmp_path: Path, digits_folder: Path) -> None:
    code, out = audit(tmp_path, digits_folder, PASS_ONLY + "[filter_smoothness]\nenabled = false\n")
    assert code == 0
    assert [type(r).__name__ for r in cases(out)["filter_smoothness"]] == ["Skipped"]


def test_human_labels_are_compared_on_the_same_images(tmp_path: Path, digits_folder: Path) -> None:
    files = sorted(digits_folder.rglob("*.png"))[::5]
    rows = ["path,labeller,top1,top2,top3,top4,top5"]
    wrong = set(range(0, len(files), 10))  # the person misses every tenth image, top-1 and top-5
    for index, path in enumerate(files):
        truth = int(path.parent.name)
        guess = (truth + 1) % 10 if index in wrong else truth
        rows.append(f"{path},ann,{guess},,,,")
    (tmp_path / "human.csv").write_text("\n".join(rows) + "\n")
    code, out = audit(tmp_path, digits_folder, PASS_ONLY, "--human", str(tmp_path / "human.csv"))
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    (person,) = report["checks"]["accuracy"]["figures"]["human"]
    assert person["images"] == len(files)
    assert person["human_top5_error"] == pytest.approx(len(wrong) / len(files))
    assert "one trained person, 1,500 ILSVRC images" in (out / "report.html").read_text()
    (tmp_path / "human.csv").write_text(rows[0] + "\n/nowhere/x.png,ann,3,,,,\n")
    assert audit(tmp_path, digits_folder, PASS_ONLY, "--human", str(tmp_path / "human.csv"))[0] == 2
