"""`convscope serve` in a process of its own, as a remote Open Inference Protocol endpoint."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

# The interpreter and onnxruntime start: up to a minute on a loaded machine (a liveness bound).
START_SECONDS = 60


@contextlib.contextmanager
def serving_process(folder: Path) -> Iterator[str]:
    """The address (host:port) of a server started in another process, stopped on exit."""
    port_file = folder / "port"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "convscope",
            "serve",
            "--port",
            "0",
            "--store",
            str(folder / "store"),
            "--port-file",
            str(port_file),
            "--log-level",
            "WARNING",
        ],
    )
    try:
        deadline = time.monotonic() + START_SECONDS
        while not (port_file.exists() and port_file.read_text().strip()):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"convscope serve did not start (exit code {process.poll()})")
            time.sleep(0.1)
        yield f"127.0.0.1:{int(port_file.read_text())}"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
