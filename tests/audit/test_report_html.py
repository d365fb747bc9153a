"""report.html as a reader gets it: opened offline in headless Chromium, one self-contained file."""

from __future__ import annotations

from pathlib import Path

from convscope.cli import main
from tests.audit.conftest import DIGITS_MODEL, offline_page

SECTIONS = [
    "Summary",
    "Accuracy",
    "Error by image attribute",
    "Dead filters",
    "First-layer filter smoothness",
    "Robustness: common corruptions and adversarial attacks",
    "Explanation sanity",
    "Explanation faithfulness",
]


def test_report_opens_offline_with_every_section(tmp_path: Path, digits_folder: Path, chromium: object) -> None:
    out = tmp_path / "out"
    assert main(["audit", str(DIGITS_MODEL), "--data", str(digits_folder), "--out", str(out)]) in (0, 1)
    requests: list[str] = []
    page = offline_page(chromium, requests)
    page.goto((out / "report.html").as_uri())
    headings = page.locator("h2").all_inner_texts()
    for section in SECTIONS:
        assert any(heading.startswith(section) for heading in headings), (section, headings)
    assert (
        page.locator("section#accuracy svg").count() >= 1 and page.locator("section#attributes svg").count() >= 3
    )  # digits are grey and 8×8: colour, size and aspect ratio do not vary
    images = page.locator("img")
    assert images.count() > 0
    assert all(images.nth(i).evaluate("img => img.complete && img.naturalWidth > 0") for i in range(images.count()))
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert (tmp_path / "report.png").stat().st_size > 10_000
    assert [url for url in requests if not url.startswith(("file:", "data:"))] == []
    page.close()


def test_report_for_ten_thousand_images_stays_small(tmp_path: Path, digits_folder: Path) -> None:
    files = sorted(digits_folder.rglob("*.png"))
    rows = ["path,label"] + [f"{files[i % len(files)]},{files[i % len(files)].parent.name}" for i in range(10_000)]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    assert main(["audit", str(DIGITS_MODEL), "--data", str(tmp_path / "labels.csv"), "--out", str(out)]) in (0, 1)
    size = (out / "report.html").stat().st_size
    assert size < 20 << 20, size
    assert b"http://" not in (out / "report.html").read_bytes().replace(b"http://www.w3.org/2000/svg", b"")
