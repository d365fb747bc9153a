"""The README's client snippet runs against a live server, and the README keeps two set-up commands."""

from __future__ import annotations

import re

from tests.conftest import REPO


def readme() -> str:
    return (REPO / "README.md").read_text()


def test_readme_snippet_runs(server, tmp_path, monkeypatch, capsys):
    snippet = re.search(r"<!-- readme-snippet -->\s*```python\n(.*?)```", readme(), re.S).group(1)
    monkeypatch.chdir(REPO)
    namespace = {"address": f"127.0.0.1:{server.port}"}
    monkeypatch.setattr("builtins.open", _redirect_writes(tmp_path))
    exec(compile(snippet, "README.md", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "cat" in printed
    assert (tmp_path / "grad_cam.png").read_bytes().startswith(b"\x89PNG")


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"^bash (scripts/\S+)", readme(), re.M)
    assert commands == ["scripts/demo.sh", "scripts/test.sh"]
    assert "bash scripts/test.sh" in (REPO / ".ci" / "run").read_text()


def _redirect_writes(folder):
    real_open = open

    def fake_open(path, mode="r", *args, **kwargs):
        if "w" in mode:
            path = folder / path
        return real_open(path, mode, *args, **kwargs)

    return fake_open
