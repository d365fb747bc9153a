"""Shared memory a killed server leaves behind: ``kill -9`` gives the server no chance to unlink
its blocks, so the next server to start removes the blocks of servers no longer running."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from convscope.workers.shm import SHM_FOLDER
from convscope_client import Client
from tests.rpc.test_errors import PROBE, tiny_conv_model
from tests.test_crash_safety import ServerProcess


def _blocks_of(pid: int) -> list[str]:
    return sorted(name for name in os.listdir(SHM_FOLDER) if name.startswith(f"convscope_{pid}_"))


def test_a_starting_server_removes_the_blocks_of_a_killed_one(tmp_path: Path) -> None:
    store = tmp_path / "store"
    killed = ServerProcess(store, tmp_path)
    try:
        with Client(killed.address, timeout=120) as client:
            model = client.upload_model(tiny_conv_model("orphans").SerializeToString())
            assert np.isfinite(client.activations(model.id, PROBE[:, :, :8, :8], layers=["y"])["y"]).all()
        assert _blocks_of(killed.process.pid), "the server's calls made no shared memory blocks"
    finally:
        killed.kill()
    left = _blocks_of(killed.process.pid)
    assert left, "nothing was left behind: the test no longer shows the clean-up"
    restarted = ServerProcess(store, tmp_path)
    try:
        assert _blocks_of(killed.process.pid) == [], "the blocks of the killed server are still there"
        with Client(restarted.address, timeout=120) as client:  # and the new server serves, with blocks of its own
            assert np.isfinite(client.activations(model.id, PROBE[:, :, :8, :8], layers=["y"])["y"]).all()
        assert _blocks_of(restarted.process.pid)
    finally:
        restarted.stop()
    assert _blocks_of(restarted.process.pid) == [], "a server stopped in order left blocks"
