"""report.html: one self-contained page per audit, a section per check (inline SVG plots and
downsampled PNG thumbnails, no external URL, readable offline)."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from convscope.audit.engine import AuditResult, CheckOutcome
from convscope.audit.human import REFERENCE_NOTE, REFERENCE_TOP5_ERROR

THUMBNAIL_PIXELS = 64


def thumbnail(path: Path) -> str:
    """A data: URL of the image shrunk to at most THUMBNAIL_PIXELS a side (nearest: small digits stay crisp)."""
    with Image.open(path) as image:
        picture = image.convert("RGB")
    scale = THUMBNAIL_PIXELS / max(picture.size)
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.LANCZOS
    picture = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))), resample)
    return png_url(picture)


def png_url(picture: Image.Image | bytes) -> str:
    if isinstance(picture, Image.Image):
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG", optimize=True)
        picture = buffer.getvalue()
    return "data:image/png;base64," + base64.b64encode(picture).decode("ascii")


def bar_chart(
    title: str,
    names: Sequence[str],
    values: Sequence[float],
    *,
    lines: Sequence[tuple[str, float]] = (),
    intervals: Sequence[Sequence[float]] | None = None,
    highlight: Sequence[bool] = (),
    notes: Sequence[str] = (),
    percent: bool = True,
    bar_width: int = 0,
) -> str:
    """An inline SVG bar chart (of error rates, unless ``percent`` is off), with labelled
    horizontal reference lines; ``notes`` go on a second line under each bar's name."""
    fmt = (lambda value: f"{value:.1%}") if percent else (lambda value: f"{value:.2f}")
    bar_width = bar_width or (130 if notes or max(map(len, names), default=0) > 8 else 46)
    width, height, left, bottom, top = max(360, 7 * len(title) + 60, 60 + bar_width * len(values)), 230, 48, 40, 28
    ceiling = max([*values, *(value for _, value in lines), *((high for _, high in intervals) if intervals else []), 0.05]) * 1.15
    y = lambda value: top + (height - top - bottom) * (1 - value / ceiling)
    step = (width - left - 10) / max(1, len(values))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
        f'<title>{html.escape(title)}</title><text x="{left}" y="16" class="t">{html.escape(title)}</text>',
        f'<line x1="{left}" y1="{y(0)}" x2="{width - 10}" y2="{y(0)}" stroke="#333"/>',
    ]
    for tick in np.linspace(0, ceiling, 5):
        parts.append(f'<text x="{left - 4}" y="{y(tick) + 4}" text-anchor="end" class="a">{fmt(tick)}</text>')
    for i, (name, value) in enumerate(zip(names, values)):
        x = left + i * step + step * 0.15
        colour = "#c0392b" if i < len(highlight) and highlight[i] else "#4a78b5"
        parts.append(
            f'<rect x="{x:.1f}" y="{y(value):.1f}" width="{step * 0.7:.1f}" height="{y(0) - y(value):.1f}" fill="{colour}">'
            f"<title>{html.escape(name)}: {fmt(value)}</title></rect>"
        )
        centre = x + step * 0.35
        if intervals:
            low, high = intervals[i]
            parts.append(f'<line x1="{centre:.1f}" y1="{y(low):.1f}" x2="{centre:.1f}" y2="{y(high):.1f}" stroke="#111"/>')
        parts.append(f'<text x="{centre:.1f}" y="{y(0) + 13}" text-anchor="middle" class="a">{html.escape(name)}</text>')
        if i < len(notes):
            parts.append(f'<text x="{centre:.1f}" y="{y(0) + 25}" text-anchor="middle" class="a">{html.escape(notes[i])}</text>')
    for label, value in lines:
        parts.append(
            f'<line x1="{left}" y1="{y(value):.1f}" x2="{width - 10}" y2="{y(value):.1f}" stroke="#e67e22" stroke-dasharray="5,3"/>'
            f'<text x="{width - 12}" y="{y(value) - 3:.1f}" text-anchor="end" class="a">{html.escape(label)} {fmt(value)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _thumbnails(result: AuditResult, check: CheckOutcome) -> str:
    parts = []
    for caption, indices in check.thumbnails.items():
        if not indices:
            continue
        figures = "".join(
            f'<figure><img src="{thumbnail(result.items[i].path)}" alt="row {ref["row"]}">'
            f"<figcaption>row {ref['row']}<br>{html.escape(ref['label'])} → {html.escape(ref['predicted'])}</figcaption></figure>"
            for i, ref in ((i, result.row_ref(i)) for i in indices)
        )
        parts.append(f"<h3>{html.escape(caption)}</h3><div class=thumbs>{figures}</div>")
    parts += [
        f'<h3>{html.escape(caption)}</h3><img class=plot src="{png_url(png)}" alt="{html.escape(caption)}">'
        for caption, png in check.pictures.items()
        if png
    ]
    return "".join(parts)


def _accuracy_body(figures: dict[str, Any]) -> str:
    rows = [
        [key, figures[f"{key}_error"], f"{figures[f'{key}_interval'][0]:.4f} – {figures[f'{key}_interval'][1]:.4f}"]
        for key in ("top1", "top5")
        if f"{key}_error" in figures
    ]
    per_class = figures["per_class"]
    chart = bar_chart(
        "error per class (bars: Wilson interval)",
        [c["label"] for c in per_class],
        [c["error"] for c in per_class],
        intervals=[c["interval"] for c in per_class],
        lines=[("overall top-1", figures["top1_error"])],
    )
    confused = _table(
        ["true", "predicted", "images"], [[p["true"], p["predicted"], p["count"]] for p in figures["confused_pairs"]]
    )
    level = f"{figures['confidence']:.0%}"
    return (
        _table(["error", "rate", f"{level} interval"], rows)
        + chart
        + "<h3>most confused pairs</h3>"
        + confused
        + _human_body(figures.get("human", []))
    )


def _human_body(people: Sequence[dict[str, Any]]) -> str:
    if not people:
        return ""
    names = [name for person in people for name in (f"model vs {person['labeller']}", person["labeller"])]
    errors = [error for person in people for error in (person["model_top5_error"], person["human_top5_error"])]
    chart = bar_chart(
        "top-5 error on the same images",
        names,
        errors,
        notes=[f"n={p['images']}" for p in people for _ in (0, 1)],
        lines=[(REFERENCE_NOTE, REFERENCE_TOP5_ERROR)],
    )
    keys = [
        "labeller",
        "images",
        "model_top1_error",
        "human_top1_error",
        "model_top5_error",
        "human_top5_error",
        "top1_agreement",
        "only_model_right",
        "only_human_right",
    ]
    return "<h3>model and people on the same images</h3>" + _table(keys, [[p[k] for k in keys] for p in people]) + chart


def _attributes_body(figures: dict[str, Any]) -> str:
    parts = []
    for attribute in figures["attributes"]:
        rows = [row for row in figures["slices"] if row["attribute"] == attribute]
        if not rows:
            continue
        parts.append(
            bar_chart(
                f"error by {attribute}",
                [r["slice"] for r in rows],
                [r["error"] for r in rows],
                lines=[("whole set", figures["overall_error"])],
                highlight=[r["failed"] for r in rows],
                notes=[f"n={r['images']}" for r in rows],
            )
        )
    flagged = [[r["attribute"], r["slice"], r["images"], r["error"], r["p_value"]] for r in figures["slices"] if r["significant"]]
    table = (
        _table(["attribute", "slice", "images", "error", "p"], flagged)
        if flagged
        else "<p>No slice errs significantly more than the whole set.</p>"
    )
    return "<div class=plots>" + "".join(parts) + "</div><h3>slices Benjamini–Hochberg flags</h3>" + table


def _dead_body(figures: dict[str, Any]) -> str:
    return _table(
        ["layer", "channels", "dead share", "dead channels"],
        [[l["layer"], l["channels"], l["dead_share"], ", ".join(map(str, l["dead"])) or "—"] for l in figures["layers"]],
    )


def _smoothness_body(figures: dict[str, Any]) -> str:
    return (
        f"<p>{html.escape(figures.get('layer', ''))}: mean smoothness {figures.get('mean_smoothness', float('nan')):.3f}</p>"
        if figures
        else ""
    )


def _sanity_body(figures: dict[str, Any]) -> str:
    means = figures["mean_rank_correlation"]
    limit = figures["max_mean_rank_correlation"]
    chart = bar_chart(
        "Spearman of |maps|, original vs randomized, mean over the cascade",
        list(means),
        [max(0.0, value) for value in means.values()],
        lines=[("pass below", limit)],
        percent=False,
    )
    rows = [
        [method, step["randomized_layers"], step["top_layer"], step["spearman"], step["ssim"]]
        for method, steps in figures["cascade"].items()
        for step in steps
    ]
    return (
        chart
        + "<h3>the cascade, layer by layer from the top</h3>"
        + _table(["method", "layers randomized", "last layer randomized", "Spearman", "SSIM"], rows)
    )


def _faithfulness_body(figures: dict[str, Any]) -> str:
    gaps = figures["insertion_minus_deletion"]
    methods = [method for method in gaps if method != "random"]
    chart = bar_chart(
        "insertion AUC − deletion AUC",
        methods,
        [max(0.0, gaps[m]) for m in methods],
        lines=[("random map", gaps["random"])],
        percent=False,
    )
    rows = [[method, row["deletion_auc"], row["insertion_auc"]] for method, row in figures["auc"].items()]
    return chart + _table(["method", "deletion AUC (lower is better)", "insertion AUC (higher is better)"], rows)


def _robustness_body(figures: dict[str, Any]) -> str:
    table = figures["corruptions"]
    severities = [str(severity) for _ in table for severity in (1, 2, 3)]
    under = [name if severity == 2 else "" for name in table for severity in (1, 2, 3)]
    accuracies = [accuracy for row in table.values() for accuracy in row["accuracy"]]
    chart = bar_chart(
        "accuracy under corruption, severities 1–3",
        severities,
        accuracies,
        notes=under,
        bar_width=44,
        lines=[("clean", figures["clean_accuracy"])],
    )
    rows = [[name, *row["accuracy"], row["mean_relative_drop"]] for name, row in table.items()]
    return (
        chart
        + _table(["corruption", "severity 1", "severity 2", "severity 3", "mean relative drop"], rows)
        + _adversarial_body(figures.get("adversarial"))
    )


def _adversarial_body(figures: dict[str, Any] | None) -> str:
    if not figures:
        return "<p>Adversarial attacks are turned off (robustness.attacks = []).</p>"
    if "skipped" in figures:
        return f"<p>Adversarial attacks skipped: {html.escape(figures['skipped'])}.</p>"
    attacks = figures["attacks"]
    names = [f"{row['epsilon']:g}/255" for rows in attacks.values() for row in rows]
    under = [attack.upper() if i == len(rows) // 2 else "" for attack, rows in attacks.items() for i in range(len(rows))]
    chart = bar_chart(
        f"robust accuracy under attack (PGD: {figures['pgd_steps']} steps)",
        names,
        [row["robust_accuracy"] for rows in attacks.values() for row in rows],
        notes=under,
        bar_width=44,
        lines=[("clean", figures["clean_accuracy"])],
    )
    rows = [
        [attack.upper(), f"{row['epsilon']:g}/255", row["robust_accuracy"], row["attack_success"], limit, row["attacked"]]
        for attack, attack_rows in attacks.items()
        for row, limit in zip(attack_rows, figures["max_attack_success"])
    ]
    return (
        f"<h3>adversarial attacks on {figures['images']} images (untargeted L∞, from those the model gets right)</h3>"
        + chart
        + _table(["attack", "ε", "robust accuracy", "attack success", "max attack success", "images attacked"], rows)
    )


BODIES = {
    "accuracy": _accuracy_body,
    "attributes": _attributes_body,
    "dead_filters": _dead_body,
    "filter_smoothness": _smoothness_body,
    "explanation_sanity": _sanity_body,
    "explanation_faithfulness": _faithfulness_body,
    "robustness": _robustness_body,
}
TITLES = {
    "accuracy": "Accuracy",
    "attributes": "Error by image attribute",
    "dead_filters": "Dead filters",
    "filter_smoothness": "First-layer filter smoothness",
    "robustness": "Robustness: common corruptions and adversarial attacks",
    "explanation_sanity": "Explanation sanity (cascading randomization)",
    "explanation_faithfulness": "Explanation faithfulness (deletion and insertion)",
}
STYLE = """body{font:14px system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}
.passed{color:#1e8449}.failed,.error{color:#c0392b;font-weight:bold}.disabled,.skipped{color:#888}
.thumbs{display:flex;flex-wrap:wrap;gap:6px}figure{margin:0;text-align:center;font-size:11px}
svg .t{font-size:13px;font-weight:bold}svg .a{font-size:10px}.plots{display:flex;flex-wrap:wrap;gap:12px}
img{image-rendering:pixelated}img.plot{min-width:240px;max-width:100%}"""


def report_html(result: AuditResult, report: dict[str, Any]) -> str:
    verdict = "PASSED" if result.passed else "FAILED"
    summary = _table(
        ["check", "status", "message", "time"],
        [[c.name, c.status, c.message, f"{c.seconds * 1000:.0f} ms"] for c in result.checks],
    )
    sections = []
    for check in result.checks:
        body = "" if check.crashed or check.status in ("disabled", "skipped") else BODIES[check.name](check.figures)
        sections.append(
            f'<section id="{check.name}"><h2>{TITLES[check.name]} <span class="{check.status}">{check.status}</span></h2>'
            f"<p>{html.escape(check.message)}</p>{body}{_thumbnails(result, check)}</section>"
        )
    model = report["model"]
    return (
        f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>convscope audit: {html.escape(model['name'])}</title>"
        f"<style>{STYLE}</style></head><body><h1>convscope audit: {html.escape(model['name'])} — "
        f'<span class="{"passed" if result.passed else "failed"}">{verdict}</span></h1>'
        f"<p>model sha256 <code>{model['sha256']}</code>; {report['dataset']['images']} images from "
        f"<code>{html.escape(report['dataset']['source'])}</code>; {result.seconds:.1f} s</p>"
        f"<section id=summary><h2>Summary</h2>{summary}</section>{''.join(sections)}</body></html>"
    )
