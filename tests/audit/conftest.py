"""The audit's real data: the shipped digits CNN and the held-out digits it was not trained on,
written as PNGs in one sub-folder per class."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.digits import digits, digits_data

DIGITS_MODEL = REPO / "models" / "digits_cnn" / "digits_cnn.onnx"


@pytest.fixture(scope="session")
def digits_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _, _, test_x, test_y = digits()
    return digits_data.write_class_folders(tmp_path_factory.mktemp("digits"), test_x, test_y)


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    """Headless Debian Chromium driven by playwright (which downloads no browser of its own here)."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("no chromium on PATH: scripts/test.sh installs Debian's package where apt-get can run")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()


def offline_page(browser: object, requests: list[str], allow: str = "") -> object:
    """A page that records every request it makes and refuses every one over the network,
    except to ``allow`` (a local server's URL prefix)."""
    page = browser.new_page()  # type: ignore[attr-defined]
    page.on("request", lambda request: requests.append(request.url))
    page.route("http*://**", lambda route: route.continue_() if allow and route.request.url.startswith(allow) else route.abort())
    return page
