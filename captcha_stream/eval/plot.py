"""Learning-curve pictures drawn with Pillow (no plotting library needed), in the captcha package's
own TrueType font (always installed beside it), with axis labels and the legends outside the plots.

`draw_curve`: one run's loss and held-out (validation) accuracy against steps, written as RUN_DIR/curve.png
after every evaluation, so a glance shows where a run is going. `draw_comparison`: the
held-out accuracy of several runs on one chart, for ablations.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from ..atomic import replacing
from ..errors import CaptchaStreamError
from ..files import check_input
from .view import _font

W, H, PAD = 900, 330, 56
LEGEND_ROW = 16
COLORS = {
    "loss": (40, 90, 200),
    "full_string_accuracy": (200, 40, 40),
    "char_accuracy": (30, 150, 60),
    "case_insensitive_accuracy": (230, 140, 0),
}


# Distinct on white and for the common kinds of colour blindness (Okabe & Ito).
SERIES = [(0, 0, 0), (230, 159, 0), (86, 180, 233), (0, 158, 115), (213, 94, 0), (0, 114, 178), (204, 121, 167)]


def _warn(message: str) -> None:
    print(message, file=sys.stderr)


def read_records(path: Path, log: Callable[[str], None] = _warn) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl. A last line cut short (power loss, full disk) is dropped with a
    warning; a damaged line before the end is an error naming it."""
    # A 200,000-step run logs about 60 MB.
    check_input(path, "metrics file", 1024 * 10**6)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise CaptchaStreamError(f"{path}: cannot read: {exc.strerror or exc}") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except ValueError:
            if number == len(lines):
                log(f"warning: {path}: its last line is cut short; left out")
                break
            raise CaptchaStreamError(f"{path}: line {number} is not a JSON record") from None
        records.append(record)
    return records


def read_metrics(run_dir: Path) -> tuple[list[tuple[int, float]], list[tuple[int, dict[str, float]]]]:
    """(step, loss) and (step, eval metrics) records of a run directory or a metrics.jsonl file."""
    losses, evals = [], []
    path = run_dir if run_dir.is_file() else run_dir / "metrics.jsonl"
    for rec in read_records(path) if path.exists() else []:
        if "loss" in rec:
            losses.append((rec["step"], rec["loss"]))
        elif "eval" in rec:
            evals.append((rec["step"], rec["eval"]))
    return losses, evals


def _panel(
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int, int],
    title: str,
    max_step: int,
    y_range: tuple[float, float],
    y_labels: list[tuple[float, str]],
    font: ImageFont.ImageFont,
    first_step: int = 0,
    x_name: str = "step",
    x_format: Callable[[float], str] = lambda x: str(round(x)),
) -> None:
    x0, y0, x1, y1 = box
    draw.rectangle(box, outline=(160, 160, 160))
    draw.text((x0, y0 - 20), title, fill=(0, 0, 0), font=font)
    lo, hi = y_range
    for value, label in y_labels:
        y = y1 - (value - lo) / (hi - lo) * (y1 - y0)
        draw.line([(x0, y), (x1, y)], fill=(230, 230, 230))
        draw.text((x0 - 6, y), label, fill=(90, 90, 90), font=font, anchor="rm")
    for k in range(5):
        step = first_step + (max_step - first_step) * k / 4
        x = x0 + (x1 - x0) * k / 4
        draw.text((x, y1 + 4), x_format(step), fill=(90, 90, 90), font=font, anchor="ma")
    draw.text(((x0 + x1) / 2, y1 + 20), x_name, fill=(90, 90, 90), font=font, anchor="ma")


def draw_curve(run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> Path | None:
    """Draw the run's curve; returns the PNG path, or None when there is nothing to draw yet."""
    run_dir = Path(run_dir)
    losses, evals = read_metrics(run_dir)
    if not losses:
        return None
    out = Path(out) if out else run_dir / "curve.png"
    font = _font(13)
    img = Image.new("RGB", (W, H + LEGEND_ROW), "white")
    draw = ImageDraw.Draw(img)
    max_step = max([s for s, _ in losses] + [s for s, _ in evals])
    half = W // 2
    left = (PAD, 34, half - 20, H - 40)
    right = (half + PAD, 34, W - 20, H - 40)

    # Loss on a log scale: CTC loss falls over orders of magnitude.
    logs = [math.log10(max(v, 1e-4)) for _, v in losses]
    lo, hi = math.floor(min(logs)), math.ceil(max(logs))
    hi = hi if hi > lo else lo + 1
    _panel(
        draw,
        left,
        "training loss (CTC, log scale)",
        max_step,
        (lo, hi),
        [(e, f"{10**e:g}") for e in range(lo, hi + 1)],
        font,
    )
    pts = [
        (left[0] + (left[2] - left[0]) * s / max_step, left[3] - (lv - lo) / (hi - lo) * (left[3] - left[1]))
        for (s, _), lv in zip(losses, logs)
    ]
    if len(pts) > 1:
        draw.line(pts, fill=COLORS["loss"], width=2)

    _panel(draw, right, "held-out accuracy", max_step, (0.0, 1.0), [(v / 4, f"{v * 25}%") for v in range(5)], font)
    legend_x = right[0]
    for key in ("full_string_accuracy", "char_accuracy", "case_insensitive_accuracy"):
        pts = [
            (right[0] + (right[2] - right[0]) * s / max_step, right[3] - e[key] * (right[3] - right[1]))
            for s, e in evals
        ]
        if len(pts) > 1:
            draw.line(pts, fill=COLORS[key], width=2)
        for x, y in pts:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=COLORS[key])
        # The legend under the plot, not over the curves.
        name = key.replace("_accuracy", "").replace("_", "-")
        draw.rectangle([legend_x, H + 2, legend_x + 14, H + 8], fill=COLORS[key])
        draw.text((legend_x + 18, H + 5), name, fill=(0, 0, 0), font=font, anchor="lm")
        legend_x += 18 + font.getlength(name) + 24
    with replacing(out) as tmp:
        img.save(tmp, format="PNG")
    return out


def draw_comparison(
    sources: list[Path], labels: list[str], out: str | os.PathLike[str], key: str = "full_string_accuracy"
) -> Path:
    """One line per run of its held-out accuracy by step: the whole run, and its second half zoomed in."""
    curves = [read_metrics(Path(src))[1] for src in sources]
    if not any(curves):
        raise ValueError("no evaluation records in any of the runs")
    out = Path(out)
    font = _font(13)
    rows = len(sources)
    img = Image.new("RGB", (W, H + LEGEND_ROW * rows), "white")
    draw = ImageDraw.Draw(img)
    max_step = max(s for evals in curves for s, _ in evals)
    half = W // 2
    title = key.replace("_", " ")
    late = [e[key] for evals in curves for s, e in evals if s >= max_step / 2]
    # The zoomed panel's floor: the worst second-half value, rounded down to 5%.
    floor = math.floor(min(late) * 20) / 20 if late else 0.0
    floor = min(floor, 0.95)
    panels = [
        ((PAD, 34, half - 20, H - 40), (0.0, 1.0), 0, f"held-out {title}"),
        ((half + PAD, 34, W - 20, H - 40), (floor, 1.0), max_step // 2, "second half, zoomed"),
    ]
    for box, (lo, hi), first, name in panels:
        span = max_step - first
        step_pct = 25 if hi - lo > 0.5 else 5
        ticks = [t / 100 for t in range(round(lo * 100), 101, step_pct)]
        _panel(draw, box, name, max_step, (lo, hi), [(t, f"{t * 100:g}%") for t in ticks], font, first)
        for evals, color in zip(curves, SERIES * (1 + rows // len(SERIES))):
            pts = [
                (
                    box[0] + (box[2] - box[0]) * (s - first) / max(span, 1),
                    box[3] - (min(max(e[key], lo), hi) - lo) / (hi - lo) * (box[3] - box[1]),
                )
                for s, e in evals
                if s >= first
            ]
            if len(pts) > 1:
                draw.line(pts, fill=color, width=2)
            for x, y in pts:
                draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=color)
    for i, (label, evals, color) in enumerate(zip(labels, curves, SERIES * (1 + rows // len(SERIES)))):
        y = H + LEGEND_ROW * i
        final = f"{evals[-1][1][key] * 100:.2f}% at step {evals[-1][0]}" if evals else "no evaluations"
        draw.rectangle([PAD, y + 2, PAD + 18, y + 9], fill=color)
        draw.text((PAD + 26, y + 6), f"{label}: {final}", fill=(0, 0, 0), font=font, anchor="lm")
    with replacing(out) as tmp:
        img.save(tmp, format="PNG")
    return out
