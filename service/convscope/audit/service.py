"""The audit as the server runs it: inputs named by path under the operator's data roots, the
config as TOML text, events out — what the ``Audit`` RPC streams. ``remote_audit``: the same
for a model served elsewhere, run by this process (``convscope audit --remote``)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib

from convscope.audit import config as audit_config
from convscope.audit import report
from convscope.audit.dataset import read_dataset, rows_message
from convscope.audit.engine import AuditResult, CheckOutcome, run_audit, run_remote_audit
from convscope.audit.human import read_human
from convscope.audit.robustness import Infer
from convscope.core import Convscope
from convscope.errors import PermissionDenied
from convscope.methods.dataset_jobs import Progress
from convscope.model.types import ModelRecord


@dataclass(frozen=True)
class AuditFiles:
    passed: bool
    errored: bool
    files: dict[str, bytes]  # report.json, junit.xml, report.html


def audit(
    core: Convscope,
    model_id: str,
    data: str,
    *,
    labels: str = "",
    human: str = "",
    config_toml: str = "",
    cancelled: threading.Event | None = None,
) -> Iterator[Progress | CheckOutcome | AuditFiles]:
    config = _config(config_toml)
    record = core.model(model_id)
    classes = int(record.outputs[0].shape[-1])
    source = core.data_roots.resolve(data)
    items = read_dataset(source, record.labels, classes, core.data_roots.resolve(labels) if labels else None)
    outside = [(item.row, str(item.path)) for item in items if not core.data_roots.inside(Path(os.path.realpath(item.path)))]
    if outside:
        raise PermissionDenied(rows_message("images are outside the server's data roots", outside))
    people = read_human(core.data_roots.resolve(human), items, record.labels, classes) if human else []
    yield from _files(run_audit(core, record.id, items, config, human=people, cancelled=cancelled), data, record.name)


def remote_audit(
    record: ModelRecord,
    infer: Infer,
    data: Path,
    *,
    labels: Path | None = None,
    human: Path | None = None,
    config_toml: str = "",
    cancelled: threading.Event | None = None,
) -> Iterator[Progress | CheckOutcome | AuditFiles]:
    """``audit``'s events for a model served elsewhere (``engine.run_remote_audit``): the files are
    this user's own, so no data roots apply."""
    config = _config(config_toml)
    classes = int(record.outputs[0].shape[-1])
    items = read_dataset(data, record.labels, classes, labels)
    people = read_human(human, items, record.labels, classes) if human else []
    yield from _files(run_remote_audit(record, infer, items, config, human=people, cancelled=cancelled), str(data), record.name)


def _config(config_toml: str) -> dict[str, dict[str, Any]]:
    try:
        return audit_config.resolve(tomllib.loads(config_toml))
    except tomllib.TOMLDecodeError as error:
        raise audit_config.ConfigError(f"the audit config is not valid TOML: {error}") from None


def _files(
    events: Iterator[Progress | CheckOutcome | AuditResult], source: str, model_path: str
) -> Iterator[Progress | CheckOutcome | AuditFiles]:
    for event in events:
        if isinstance(event, AuditResult):
            yield AuditFiles(event.passed, event.errored, report.render(event, source=source, model_path=model_path))
        else:
            yield event
