"""`convscope audit MODEL --data DATASET --out DIR`: run the audit on an embedded data plane over a
temporary store and write report.json, junit.xml and report.html.

Exit codes, for CI: 0 every check passed, 1 a threshold failed, 2 bad configuration or input
(the message names the rows), 3 internal error (a crashed check counts here unless its config
allows it).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import traceback
from pathlib import Path

from convscope_client.cli import JobProgressBar

EXIT_PASSED, EXIT_FAILED, EXIT_INPUT, EXIT_INTERNAL = 0, 1, 2, 3
UPLOAD_CHUNK = 1 << 20


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="convscope audit", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("model", type=Path, help="an .onnx file (preprocessing and labels from its convscope.* metadata)")
    parser.add_argument("--data", type=Path, required=True, help="a folder of class sub-folders, or a CSV path,label[,attributes…]")
    parser.add_argument("--labels", type=Path, help="a CSV path,label[,attributes…] labelling the images under --data")
    parser.add_argument("--human", type=Path, help="a CSV path,labeller,top1…top5 of people's labels (`convscope label` writes it)")
    parser.add_argument("--config", type=Path, help="audit.toml with thresholds (default: the documented defaults)")
    parser.add_argument("--out", type=Path, default=Path("audit-out"), help="where the reports are written")
    return parser


def _chunks(path: Path):  # type: ignore[no-untyped-def]
    with path.open("rb") as handle:
        while chunk := handle.read(UPLOAD_CHUNK):
            yield "", chunk


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    # The server stack is imported here, not at the CLI's start: client commands stay fast.
    from convscope.audit import config as audit_config
    from convscope.audit import report
    from convscope.audit.dataset import read_dataset
    from convscope.audit.engine import AuditResult, run_audit
    from convscope.audit.human import read_human
    from convscope.core import Convscope
    from convscope.errors import ConvscopeError, InvalidArgument

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = audit_config.load(args.config)
        for path in (args.model, args.data, *(path for path in (args.labels, args.human) if path)):
            if not path.exists():
                raise InvalidArgument(f"no such file: {path}")
        with tempfile.TemporaryDirectory(prefix="convscope-audit-") as store:
            core = Convscope(Path(store))
            try:
                record = core.upload(_chunks(args.model), name=args.model.stem)
                classes = int(record.outputs[0].shape[-1])
                items = read_dataset(args.data, record.labels, classes, args.labels)
                human = read_human(args.human, items, record.labels, classes) if args.human else []
                bar = JobProgressBar()
                try:
                    for event in run_audit(core, record.id, items, config, human=human):
                        if isinstance(event, AuditResult):
                            result = event
                        else:
                            bar(event)
                finally:
                    bar.close()
                paths = report.write(args.out, result, source=str(args.data), model_path=str(args.model))
            finally:
                core.close()
    except InvalidArgument as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INPUT
    except ConvscopeError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INTERNAL
    except Exception:  # noqa: BLE001 - CI must see an internal failure as such, never as a pass
        traceback.print_exc()
        print("error: internal error in the audit (traceback above)", file=sys.stderr)
        return EXIT_INTERNAL
    print(json.dumps({"passed": result.passed, "checks": {c.name: c.status for c in result.checks},
                      "files": {key: str(path) for key, path in paths.items()}}, indent=2))
    for check in result.checks:
        if check.status in ("failed", "error"):
            print(f"{check.name} {check.status}: {check.message}", file=sys.stderr)
    if result.errored:
        return EXIT_INTERNAL
    return EXIT_PASSED if result.passed else EXIT_FAILED
