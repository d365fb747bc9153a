"""The README's client snippet runs exactly as written against a server on the default address,
its links stay inside the repository, and it keeps two set-up commands."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from convscope.rpc.server import PortInUse, RunningServer, ServerConfig, create_server
from convscope_client.cli import DEFAULT_ADDRESS
from tests.conftest import REPO


def readme() -> str:
    return (REPO / "README.md").read_text()


@pytest.fixture
def default_address_server(tmp_path: Path) -> Iterator[RunningServer]:
    host, port = DEFAULT_ADDRESS.split(":")
    try:
        running = create_server(
            ServerConfig(tmp_path / "store", host="127.0.0.1" if host == "localhost" else host, port=int(port))
        )
    except PortInUse:
        pytest.skip(f"another process listens on {DEFAULT_ADDRESS}, where the README's snippet connects")
    yield running
    running.stop(grace=1)


def test_readme_snippet_runs_as_written(default_address_server: RunningServer, tmp_path: Path, monkeypatch, capsys) -> None:
    snippet = re.search(r"<!-- readme-snippet -->\s*```python\n(.*?)```", readme(), re.S).group(1)
    monkeypatch.chdir(REPO)
    monkeypatch.setattr("builtins.open", _redirect_writes(tmp_path))
    exec(compile(snippet, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "cat" in printed
    assert (tmp_path / "grad_cam.png").read_bytes().startswith(b"\x89PNG")


def test_readme_links_stay_in_the_repository() -> None:
    text = readme()
    assert "../" not in text
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        if not target.startswith("http"):
            assert (REPO / target).exists(), target


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"^bash (scripts/\S+)", readme(), re.M)
    assert commands == ["scripts/demo.sh", "scripts/test.sh"]
    assert "bash scripts/test.sh" in (REPO / ".ci" / "run").read_text()


def _redirect_writes(folder):
    """``open`` with files written into ``folder``: the snippet saves a picture in the current folder."""
    real_open = open

    def fake_open(path, mode="r", *args, **kwargs):
        if "w" in mode:
            path = folder / path
        return real_open(path, mode, *args, **kwargs)

    return fake_open
