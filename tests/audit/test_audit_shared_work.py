"""An audit shares its pass and runs its sampled checks side by side: its figures must be exactly
those of each check run alone (benchmarks/audit.py compares their wall times)."""

from __future__ import annotations

import json
from pathlib import Path

from convscope.audit import config, engine
from convscope.audit.dataset import read_dataset
from convscope.core import Convscope
from tests.audit.conftest import DIGITS_MODEL

# Every check on, its samples small enough for a unit test.
SMALL = {
    "robustness": {"images": 60, "attack_images": 30, "epsilons": [2, 8], "max_attack_success": [1.0, 1.0]},
    "explanation_sanity": {"images": 3, "cascade_steps": 2},
    "explanation_faithfulness": {"images": 3},
}


def outcomes(core: Convscope, model_id: str, items: list, enabled: set[str]) -> dict[str, tuple[str, str, str]]:
    settings = {check: {**SMALL.get(check, {}), "enabled": check in enabled} for check in config.DEFAULTS}
    *_, result = engine.run_audit(core, model_id, items, config.resolve(settings))
    assert isinstance(result, engine.AuditResult)
    return {
        c.name: (c.status, c.message, json.dumps(c.figures, sort_keys=True, default=str))
        for c in result.checks
        if c.name in enabled
    }


def test_an_audit_reports_what_each_check_reports_alone(tmp_path: Path, digits_folder: Path) -> None:
    core = Convscope(tmp_path / "store")
    try:
        record = core.upload([("", DIGITS_MODEL.read_bytes())])
        items = read_dataset(digits_folder, record.labels, 10)
        together = outcomes(core, record.id, items, set(config.DEFAULTS))
        alone = {}
        for check in config.DEFAULTS:
            alone |= outcomes(core, record.id, items, {check})
    finally:
        core.close()
    assert set(together) == set(config.DEFAULTS)
    assert all(status in ("passed", "failed") for status, _, _ in together.values()), together
    for check in config.DEFAULTS:
        assert together[check] == alone[check], check
