"""Model against people on the same images (Karpathy 2014: one trained person, 5.1 % top-5 error
on 1,500 ILSVRC test images, against GoogLeNet's 6.8 % on the same images).

The human CSV — what ``convscope label`` writes — has the header ``path,labeller,top1…top5``:
one row per image and person, up to five label names (or indices), best first.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convscope.audit.dataset import AuditItem, label_index, rows_message
from convscope.errors import InvalidArgument

HEADER = ["path", "labeller", "top1", "top2", "top3", "top4", "top5"]
# The published reference the plot carries.
REFERENCE_TOP5_ERROR = 0.051
REFERENCE_NOTE = "one trained person, 1,500 ILSVRC images"


@dataclass(frozen=True)
class HumanLabels:
    labeller: str
    images: np.ndarray  # indices into the audit's items
    guesses: np.ndarray  # [n, 5] class indices, best first, -1 where fewer were given


def read_human(path: Path, items: Sequence[AuditItem], names: Sequence[str], classes: int) -> list[HumanLabels]:
    """Each labeller's guesses, matched to the audit's images by path (relative paths are taken
    from the CSV's folder); rows naming an unknown image or label are one error naming them."""
    index_of = {item.path.resolve(): index for index, item in enumerate(items)}
    by_person: dict[str, tuple[list[int], list[list[int]]]] = {}
    bad: list[tuple[int, str]] = []
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = [column.strip().lower() for column in next(reader, [])]
        if header[:3] != HEADER[:3]:
            raise InvalidArgument(f"{path}: the first line must be the header {','.join(HEADER)}")
        for row, values in enumerate(reader, start=1):
            if not values:
                continue
            file = Path(values[0])
            image = index_of.get((file if file.is_absolute() else path.parent / file).resolve())
            if image is None:
                bad.append((row, f"{values[0]!r} is not an image of the audited dataset"))
                continue
            given = [value.strip() for value in values[2:7] if value.strip()]
            guesses = [label_index(value, names, classes) for value in given]
            if not given or None in guesses:
                bad.append((row, f"labels {given!r} are not all model labels or indices below {classes}"))
                continue
            images, rows = by_person.setdefault(values[1].strip() or "anonymous", ([], []))
            images.append(image)
            rows.append(guesses + [-1] * (5 - len(guesses)))  # type: ignore[operator]
    if bad:
        raise InvalidArgument(rows_message(f"rows of {path.name} cannot be used", bad))
    if not by_person:
        raise InvalidArgument(f"{path} holds no labels")
    return [HumanLabels(person, np.array(images), np.array(rows, np.int64)) for person, (images, rows) in by_person.items()]


def compare(
    top: np.ndarray, labels: np.ndarray, people: Sequence[HumanLabels]
) -> tuple[list[dict[str, Any]], dict[str, list[int]]]:
    """Per labeller: model and human top-1/top-5 error on the images that person labelled, their
    top-1 agreement, and the images only one of them gets right (top-5)."""
    rows, thumbnails = [], {}
    for person in people:
        truth = labels[person.images]
        model = top[person.images]
        model_right = (model == truth[:, None]).any(axis=1)
        human_right = (person.guesses == truth[:, None]).any(axis=1)
        rows.append(
            {
                "labeller": person.labeller,
                "images": len(person.images),
                "model_top1_error": float((model[:, 0] != truth).mean()),
                "model_top5_error": float(1 - model_right.mean()),
                "human_top1_error": float((person.guesses[:, 0] != truth).mean()),
                "human_top5_error": float(1 - human_right.mean()),
                "top1_agreement": float((person.guesses[:, 0] == model[:, 0]).mean()),
                "only_model_right": int((model_right & ~human_right).sum()),
                "only_human_right": int((human_right & ~model_right).sum()),
            }
        )
        thumbnails[f"only the model is right (top-5), against {person.labeller}"] = person.images[
            model_right & ~human_right
        ].tolist()
        thumbnails[f"only {person.labeller} is right (top-5)"] = person.images[human_right & ~model_right].tolist()
    return rows, thumbnails
