"""`convscope serve --log-format json --metrics-port 0` in a fresh interpreter: every stderr line
is a JSON object (the worker processes' too), the metrics endpoint it announces answers, and a
call's request id (the client's x-request-id) appears in its log line and in the lines a worker
wrote while serving it."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from convscope_client import Client
from tests.rpc.test_errors import PROBE, tiny_conv_model


def test_json_logs_and_metrics_endpoint(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "convscope",
            "serve",
            "--port",
            "0",
            "--store",
            str(tmp_path / "store"),
            "--log-format",
            "json",
            "--metrics-port",
            "0",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    entries: list[dict[str, str]] = []
    try:
        serving = metrics = None
        while serving is None or metrics is None:  # the start-up lines, read as they come
            line = process.stderr.readline()
            assert line, f"the server exited before announcing its ports: {entries}"
            entries.append(json.loads(line))
            serving = serving or re.search(r"serving on [\d.]+:(\d+)", entries[-1]["message"])
            metrics = metrics or re.search(r"metrics at (http://\S+/metrics)", entries[-1]["message"])
        with Client(f"127.0.0.1:{serving.group(1)}", timeout=60, metadata=[("x-request-id", "serve-test-7")]) as client:
            assert client.list_models() == []
        with urllib.request.urlopen(metrics.group(1), timeout=10) as response:
            scraped = response.read().decode()
        counted = {
            (sample.labels.get("method"), sample.labels.get("code")): sample.value
            for family in text_string_to_metric_families(scraped)
            if family.name == "convscope_requests"
            for sample in family.samples
            if sample.name == "convscope_requests_total"
        }
        assert counted[("ListModels", "OK")] == 1
        with Client(f"127.0.0.1:{serving.group(1)}", timeout=120, metadata=[("x-request-id", "serve-test-8")]) as client:
            model = client.upload_model(tiny_conv_model("logged").SerializeToString())
            client.activations(model.id, PROBE[:, :, :8, :8], layers=["y"])  # a worker builds the session: it logs that
    finally:
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=60)
    entries += [json.loads(line) for line in rest.splitlines() if line.strip()]  # every line is JSON
    assert any(entry["request_id"] == "serve-test-7" and "ListModels OK" in entry["message"] for entry in entries), entries
    from_workers = [entry for entry in entries if entry["pid"] != process.pid]
    assert any(
        entry["request_id"] == "serve-test-8"
        and entry["logger"] == "convscope.runtime.sessions"
        and "built in" in entry["message"]
        for entry in from_workers
    ), entries
