"""The audit as the server runs it: inputs named by path under the operator's data roots, the
config as TOML text, events out — what the ``Audit`` RPC streams."""

from __future__ import annotations

import os
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from convscope.audit import config as audit_config
from convscope.audit import report
from convscope.audit.dataset import read_dataset, rows_message
from convscope.audit.engine import AuditResult, CheckOutcome, run_audit
from convscope.audit.human import read_human
from convscope.core import Convscope
from convscope.errors import PermissionDenied
from convscope.methods.dataset_jobs import Progress


@dataclass(frozen=True)
class AuditFiles:
    passed: bool
    errored: bool
    files: dict[str, bytes]  # report.json, junit.xml, report.html


def audit(
    core: Convscope, model_id: str, data: str, *, labels: str = "", human: str = "", config_toml: str = "",
    cancelled: threading.Event | None = None,
) -> Iterator[Progress | CheckOutcome | AuditFiles]:
    try:
        config = audit_config.resolve(tomllib.loads(config_toml))
    except tomllib.TOMLDecodeError as error:
        raise audit_config.ConfigError(f"the audit config is not valid TOML: {error}") from None
    record = core.model(model_id)
    classes = int(record.outputs[0].shape[-1])
    source = core.data_roots.resolve(data)
    items = read_dataset(source, record.labels, classes, core.data_roots.resolve(labels) if labels else None)
    outside = [(item.row, str(item.path)) for item in items if not core.data_roots.inside(Path(os.path.realpath(item.path)))]
    if outside:
        raise PermissionDenied(rows_message("images are outside the server's data roots", outside))
    people = read_human(core.data_roots.resolve(human), items, record.labels, classes) if human else []
    for event in run_audit(core, record.id, items, config, human=people, cancelled=cancelled):
        if isinstance(event, AuditResult):
            yield AuditFiles(event.passed, event.errored, report.render(event, source=data, model_path=record.name))
        else:
            yield event
