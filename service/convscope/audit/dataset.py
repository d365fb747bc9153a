"""An audit dataset: a folder of class sub-folders, or a CSV ``path,label[,attribute columns…]``.

Labels are class indices or names matched to the model's labels; every row whose label matches
neither is reported in one error naming the rows, before any image is read.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from convscope.errors import InvalidArgument

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}
# Rows named in one error message; the rest are counted.
ROWS_SHOWN = 10


@dataclass(frozen=True)
class AuditItem:
    row: int  # 1-based: the CSV line (after the header) or the position in the folder walk
    path: Path
    label: int
    attributes: dict[str, str] = field(default_factory=dict)  # the CSV's extra columns


def rows_message(what: str, rows: Sequence[tuple[int, str]]) -> str:
    shown = "; ".join(f"row {row}: {text}" for row, text in rows[:ROWS_SHOWN])
    more = f" (and {len(rows) - ROWS_SHOWN} more)" if len(rows) > ROWS_SHOWN else ""
    return f"{len(rows)} {what}: {shown}{more}"


def label_index(text: str, labels: Sequence[str], classes: int) -> int | None:
    """``text`` as a class index: the model's label of that name, else an index in range."""
    if text in labels:
        return labels.index(text)
    if text.strip().lstrip("-").isdigit() and 0 <= int(text) < classes:
        return int(text)
    return None


def read_dataset(source: Path, labels: Sequence[str], classes: int, label_file: Path | None = None) -> list[AuditItem]:
    """The labelled items of a class-folder tree or a CSV (``label_file`` overrides a folder's labels)."""
    if label_file is not None:
        return _from_csv(label_file, labels, classes, base=source if source.is_dir() else label_file.parent)
    if source.is_dir():
        return _from_folders(source, labels, classes)
    if source.suffix.lower() == ".csv":
        return _from_csv(source, labels, classes, base=source.parent)
    raise InvalidArgument(f"{source} is neither a folder of class sub-folders nor a .csv of path,label rows")


def _from_folders(root: Path, labels: Sequence[str], classes: int) -> list[AuditItem]:
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        raise InvalidArgument(f"{root} has no class sub-folders (one per label, named by index or label)")
    unknown = [(0, f"folder {folder.name!r}") for folder in folders if label_index(folder.name, labels, classes) is None]
    if unknown:
        raise InvalidArgument(rows_message("class folders match no model label", unknown))
    items: list[AuditItem] = []
    for folder in folders:
        label = label_index(folder.name, labels, classes)
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
            items.append(AuditItem(len(items) + 1, path, int(label)))  # type: ignore[arg-type]
    if not items:
        raise InvalidArgument(f"{root}'s class folders hold no images")
    return items


def _from_csv(path: Path, labels: Sequence[str], classes: int, *, base: Path) -> list[AuditItem]:
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header or [column.strip().lower() for column in header[:2]] != ["path", "label"]:
            raise InvalidArgument(f"{path}: the first line must be the header path,label[,attribute columns…]")
        extra = [column.strip() for column in header[2:]]
        items: list[AuditItem] = []
        unknown: list[tuple[int, str]] = []
        for row, values in enumerate(reader, start=1):
            if not values:
                continue
            if len(values) != len(header):
                unknown.append((row, f"{len(values)} columns, the header has {len(header)}"))
                continue
            label = label_index(values[1].strip(), labels, classes)
            if label is None:
                unknown.append((row, f"label {values[1]!r} is neither a model label nor an index below {classes}"))
                continue
            file = Path(values[0])
            items.append(AuditItem(row, file if file.is_absolute() else base / file, label, dict(zip(extra, values[2:]))))
    if unknown:
        raise InvalidArgument(rows_message(f"rows of {path.name} have unknown labels", unknown))
    if not items:
        raise InvalidArgument(f"{path} lists no images")
    return items
