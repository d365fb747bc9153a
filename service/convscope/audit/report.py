"""The audit's three outputs: report.json (every figure, schema-versioned), junit.xml (one
testcase per check) and report.html (one self-contained page, drawn by ``report_html.py``)."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import xml.etree.ElementTree as ElementTree
from typing import Any

import numpy as np

from convscope.audit.engine import AuditResult
from convscope.audit.report_html import report_html

SCHEMA = "convscope.audit/1"
PACKAGES = ("convscope", "onnx", "onnxruntime-gpu", "onnxruntime", "numpy", "scipy", "pillow", "grpcio", "protobuf")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def report_dict(result: AuditResult, *, source: str, model_path: str = "") -> dict[str, Any]:
    record = result.record
    return {
        "schema": SCHEMA,
        "passed": result.passed,
        "model": {
            "id": record.id,
            "sha256": record.id,
            "name": record.name,
            "path": model_path,
            "classes": int(np.prod(record.outputs[0].shape[1:])),
            "labels": list(record.labels),
        },
        "dataset": {"source": source, "images": len(result.items)},
        "config": result.config,
        "versions": versions(),
        # Nothing in these checks draws random numbers; checks that do record their seed in the config.
        "seeds": {check: settings["seed"] for check, settings in result.config.items() if "seed" in settings},
        "seconds": result.seconds,
        "checks": {
            check.name: {
                "status": check.status,
                "message": check.message,
                "seconds": check.seconds,
                "figures": check.figures,
                "thumbnails": {caption: [result.row_ref(i) for i in indices] for caption, indices in check.thumbnails.items()},
            }
            for check in result.checks
        },
    }


def junit_xml(result: AuditResult) -> bytes:
    """One testcase per check: a failure names the figure and its threshold, a crashed check is an error."""
    failures = sum(check.status == "failed" for check in result.checks)
    errors = sum(check.status == "error" for check in result.checks)
    skipped = sum(check.status in ("disabled", "skipped") for check in result.checks)
    suite = ElementTree.Element(
        "testsuite",
        name="convscope.audit",
        tests=str(len(result.checks)),
        failures=str(failures),
        errors=str(errors),
        skipped=str(skipped),
        time=f"{result.seconds:.3f}",
    )
    for check in result.checks:
        case = ElementTree.SubElement(
            suite, "testcase", classname="convscope.audit", name=check.name, time=f"{check.seconds:.3f}"
        )
        if check.status == "failed":
            ElementTree.SubElement(case, "failure", message=check.message, type="threshold").text = check.message
        elif check.status == "error":
            ElementTree.SubElement(case, "error", message=check.message, type="check_error").text = check.figures.get(
                "traceback", ""
            )
        elif check.status in ("disabled", "skipped"):
            ElementTree.SubElement(case, "skipped", message=check.message)
        else:
            ElementTree.SubElement(case, "system-out").text = check.message
    suites = ElementTree.Element("testsuites", name="convscope audit")
    suites.append(suite)
    return ElementTree.tostring(suites, encoding="utf-8", xml_declaration=True)


def render(result: AuditResult, *, source: str, model_path: str = "") -> dict[str, bytes]:
    """The three report files by name."""
    report = report_dict(result, source=source, model_path=model_path)
    return {
        "report.json": json.dumps(report, indent=1, default=_json_default).encode(),
        "junit.xml": junit_xml(result),
        "report.html": report_html(result, report).encode(),
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")
