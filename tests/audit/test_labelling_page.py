"""The labelling page driven from the keyboard in headless Chromium: five images labelled, the
page reloaded, labelling resumed where it stopped, and the CSV equal to what was typed — and
read back by the audit's --human."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from convscope.audit.dataset import read_dataset
from convscope.audit.human import read_human
from convscope.audit.labelling import LabellingSession, images_of, label_names, serve
from convscope.cli import main
from tests.audit.conftest import DIGITS_MODEL, offline_page

NAMES = [str(digit) for digit in range(10)]
# What the person types for each image: search texts, each followed by Enter.
TYPED = [["3"], ["7", "1"], ["0"], ["9", "4", "8"], ["5"]]


def progress(page: object) -> str:
    return page.locator("#progress").inner_text()  # type: ignore[attr-defined]


def test_label_five_images_reload_and_resume(tmp_path: Path, digits_folder: Path, chromium: object) -> None:
    out = tmp_path / "human.csv"
    images = images_of(digits_folder)[::60]  # one folder's worth would all be one digit
    listing = tmp_path / "images.csv"
    listing.write_text("path\n" + "".join(f"{path}\n" for path in images))
    server = serve(LabellingSession(images_of(listing), NAMES, out, "tester"))
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    requests: list[str] = []
    try:
        page = offline_page(chromium, requests, allow=url)
        page.goto(url)
        page.wait_for_function("document.getElementById('progress').textContent.includes('0 labelled')")
        for done, searches in enumerate(TYPED[:4], start=1):
            for text in searches:
                page.keyboard.type(text)
                page.keyboard.press("Enter")
            page.keyboard.press("Enter")
            page.wait_for_function(f"document.getElementById('progress').textContent.includes('{done} labelled')")
        page.reload()
        page.wait_for_function("document.getElementById('progress').textContent.includes('4 labelled')")
        assert progress(page).startswith("image 5 of 10")  # resumed at the first unlabelled image
        page.keyboard.type(TYPED[4][0])
        page.keyboard.press("Enter")
        page.keyboard.press("Enter")
        page.wait_for_function("document.getElementById('progress').textContent.includes('5 labelled')")
        page.screenshot(path=str(tmp_path / "label.png"))
        page.close()
    finally:
        server.shutdown()
    assert all(url_.startswith(url) for url_ in requests)
    with out.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["path", "labeller", "top1", "top2", "top3", "top4", "top5"]
    assert [row[:2] for row in rows[1:]] == [[str(path), "tester"] for path in images[:5]]
    assert [[value for value in row[2:] if value] for row in rows[1:]] == TYPED
    items = read_dataset(digits_folder, NAMES, 10)
    (person,) = read_human(out, items, NAMES, 10)
    assert person.labeller == "tester" and person.guesses[1, :2].tolist() == [7, 1]


def test_label_needs_label_names(tmp_path: Path, digits_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["label", str(digits_folder), "--out", str(tmp_path / "human.csv")]) == 2
    assert "needs label names" in capsys.readouterr().err
    assert label_names(DIGITS_MODEL, None) == NAMES  # from the model's convscope.labels metadata
