"""Time to accuracy: a run's held-out accuracy against wall time and against images seen, the
moment it first reaches each level, and a picture of several runs side by side.

Wall time and images are kept apart on purpose: images per second is the machine (and the
recipe's arithmetic); images to an accuracy is how much a recipe learns from each image.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from ..atomic import replacing
from .plot import PAD, SERIES, _panel, read_records
from .view import _font

LEVELS = (0.5, 0.8, 0.9, 0.95, 0.98, 0.99)


@dataclass(frozen=True)
class Point:
    minutes: float
    images: int
    step: int
    accuracy: float


def curve(metrics: str | os.PathLike[str], key: str = "full_string_accuracy") -> list[Point]:
    """The validations of a run (its folder or metrics.jsonl) as points, in the order they ran."""
    path = Path(metrics)
    path = path / "metrics.jsonl" if path.is_dir() else path
    points = []
    for record in read_records(path):
        if "eval" in record and "time" in record:
            points.append(Point(record["time"] / 60, int(record["images"]), record["step"], record["eval"][key]))
    return points


def first_reaching(points: list[Point], level: float) -> Point | None:
    """The first validation at or above `level`: its minutes and images are the time to it."""
    return next((p for p in points if p.accuracy >= level), None)


def time_to(points: list[Point], levels: tuple[float, ...] = LEVELS) -> dict[str, dict[str, Any] | None]:
    """{"90%": {"minutes", "images", "step", "accuracy"} or None when never reached}."""
    out: dict[str, dict[str, Any] | None] = {}
    for level in levels:
        hit = first_reaching(points, level)
        out[f"{level:.0%}"] = None if hit is None else {**asdict(hit), "minutes": round(hit.minutes, 2)}
    return out


def draw_time_curves(curves: dict[str, list[Point]], out: str | os.PathLike[str], title: str = "") -> Path:
    """Held-out full-string accuracy of each run against minutes (left) and images seen (right)."""
    width, height, row = 960, 360, 16
    font = _font(13)
    img = Image.new("RGB", (width, height + row * len(curves)), "white")
    draw = ImageDraw.Draw(img)
    half = width // 2
    points = [p for pts in curves.values() for p in pts]
    ticks = [(v / 4, f"{v * 25}%") for v in range(5)]
    axes = [
        ("minutes", lambda p: p.minutes, lambda x: f"{x:.3g}", (PAD, 40, half - 20, height - 40)),
        ("thousand images", lambda p: p.images / 1000, lambda x: f"{x:.4g}", (half + PAD, 40, width - 20, height - 40)),
    ]
    if title:
        draw.text((PAD, 6), title, fill=(0, 0, 0), font=font)
    for name, x_of, x_format, box in axes:
        x_max = max((x_of(p) for p in points), default=1.0) or 1.0
        _panel(draw, box, f"accuracy against {name}", x_max, (0.0, 1.0), ticks, font, 0, name, x_format)
        for pts, color in zip(curves.values(), SERIES * (1 + len(curves) // len(SERIES))):
            xy = [(box[0] + (box[2] - box[0]) * x_of(p) / x_max, box[3] - p.accuracy * (box[3] - box[1])) for p in pts]
            if len(xy) > 1:
                draw.line(xy, fill=color, width=2)
            for x, y in xy:
                draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=color)
    for i, ((label, pts), color) in enumerate(zip(curves.items(), SERIES * (1 + len(curves) // len(SERIES)))):
        y = height + row * i
        best = max((p.accuracy for p in pts), default=0.0)
        draw.rectangle([PAD, y + 2, PAD + 18, y + 9], fill=color)
        draw.text((PAD + 26, y + 6), f"{label}: best {best:.2%}", fill=(0, 0, 0), font=font, anchor="lm")
    out = Path(out)
    with replacing(out) as tmp:
        img.save(tmp, format="PNG")
    return out
