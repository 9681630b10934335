"""An audit's report: report.json (every number), curve.png (accuracy against minutes and images),
hardest.png (the captchas read worst) and report.html (one self-contained page: pictures inlined)."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from ..atomic import replacing
from ..eval.time_to import Point, draw_time_curves
from ..eval.view import write_sheet


def verdict(report: dict[str, Any]) -> str:
    """The audit in plain words, one paragraph."""
    m, t = report["machine"], report["time_to"]
    where = f"one {m['gpu']}" if m["gpu"] else f"{m['cores']} CPU cores"
    test = report["test"]["full_string_accuracy"]
    parts = [f"A reader trained from nothing on {where} for {_minutes(report['trained']['minutes'])}"]
    parts.append(f"reads {test:.1%} of fresh captchas of this scheme whole")
    reached = [(level, hit) for level, hit in t.items() if hit]
    if reached:
        first = reached[0]
        last = reached[-1]
        parts[-1] += (
            f"; it read {first[0]} of the validation set after {_minutes(first[1]['minutes'])} "
            f"({first[1]['images']:,} images)"
        )
        if last[0] != first[0]:
            parts[-1] += f" and {last[0]} after {_minutes(last[1]['minutes'])}"
    sentence = " ".join(parts) + "."
    if test >= 0.01:
        sentence += (
            " By the usual yardstick (a scheme that a program reads more than 1% of the time is broken) "
            f"this scheme is broken within {_minutes_to(report, 0.01)}."
        )
    else:
        sentence += " It held against this budget: the reader got under 1% right; a longer budget may still break it."
    hard = [r["symbol"] for r in report["per_symbol"][:5] if r["error_rate"] > 0]
    # Before the reader reads characters at all, every symbol is "worst": nothing to single out.
    if hard and report["test"]["char_accuracy"] >= 0.5:
        sentence += f" The symbols it read worst: {' '.join(hard)}"
        pairs = report["confused_pairs"][:3]
        if pairs:
            sentence += "; most often confused: " + ", ".join(f"{p['truth']}→{p['read']}" for p in pairs)
        sentence += "."
    return sentence


def _minutes_to(report: dict[str, Any], level: float) -> str:
    hit = next((p for p in report["curve"] if p[3] >= level), None)
    return _minutes(round(hit[0], 1) if hit else report["trained"]["minutes"])


def _minutes(value: float) -> str:
    return f"{value:g} minute" + ("" if value == 1 else "s")


def write_report(report: dict[str, Any], out: Path) -> Path:
    """Write the report's files into `out`; returns the page."""
    paths, labels, preds, confidences = report.pop("_readings")
    report["verdict"] = verdict(report)
    points = [Point(*p) for p in report["curve"]]
    draw_time_curves({report["name"]: points}, out / "curve.png", f"{report['scheme']}: validation full-string")
    # Mistakes first, the least confident first among them: the captchas the scheme defends best.
    order = sorted(range(len(labels)), key=lambda i: (preds[i] == labels[i], confidences[i]))
    write_sheet(
        out / "hardest.png",
        [paths[i] for i in order],
        [labels[i] for i in order],
        [preds[i] for i in order],
        f"{report['scheme']}: the hardest captchas",
        count=16,
    )
    with replacing(out / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    page = out / "report.html"
    with replacing(page) as tmp:
        tmp.write_text(_page(report, out), encoding="utf-8")
    return page


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'


def _table(head: list[str], rows: list[list[Any]]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def _times(report: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for level, hit in report["time_to"].items():
        rows.append([level, f"{hit['minutes']:g}" if hit else "not reached", f"{hit['images']:,}" if hit else "-"])
    return rows


def _page(report: dict[str, Any], out: Path) -> str:
    test, m = report["test"], report["machine"]
    low, high = test["full_string_interval_95"]
    sections = [
        f"<h1>Scheme audit: {html.escape(report['scheme'])}</h1>",
        f"<p class=verdict>{html.escape(report['verdict'])}</p>",
        _img(out / "curve.png"),
        "<h2>Time to accuracy (validation set)</h2>",
        _table(["accuracy", "minutes", "images seen"], _times(report)),
        f"<h2>Test set (fresh captchas, read once at the end: {html.escape(test.get('decoding', 'greedy'))})</h2>",
        _table(
            ["full-string", "95% interval", "character", "CER", "case-insensitive"],
            [
                [
                    f"{test['full_string_accuracy']:.2%}",
                    f"{low:.2%}–{high:.2%}",
                    f"{test['char_accuracy']:.2%}",
                    f"{test['cer']:.2%}",
                    f"{test['case_insensitive_accuracy']:.2%}",
                ]
            ],
        ),
        "<h2>Accuracy by length</h2>",
        _table(
            ["length", "captchas", "full-string"],
            [[k, v["n"], f"{v['accuracy']:.2%}"] for k, v in report["by_length"].items()],
        ),
        "<h2>Symbols read worst</h2>",
        _table(
            ["symbol", "seen", "read wrong"],
            [[r["symbol"], r["n"], f"{r['error_rate']:.2%}"] for r in report["per_symbol"][:15]],
        ),
        "<h2>Most confused pairs</h2>",
        _table(["truth", "read as", "times"], [[p["truth"], p["read"], p["count"]] for p in report["confused_pairs"]]),
        "<h2>The hardest captchas</h2>",
        _img(out / "hardest.png"),
        "<h2>Measured on</h2>",
        _table(
            ["", ""], [[k, v] for k, v in m.items()] + [["recipe", report["recipe"]], ["trained", report["trained"]]]
        ),
    ]
    style = (
        "body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
        ".verdict{font-size:1.1em;background:#f4f4f4;padding:.8em}img{max-width:100%}"
    )
    return f"<!doctype html><meta charset=utf-8><title>audit</title><style>{style}</style>{''.join(sections)}\n"


def write_comparison(reports: dict[str, dict[str, Any]], out: Path) -> Path:
    """Several audits on one chart, one table and one page."""
    curves = {name: [Point(*p) for p in r["curve"]] for name, r in reports.items()}
    draw_time_curves(curves, out / "compare.png", "schemes compared: validation full-string")
    levels = ["50%", "90%", "95%", "99%"]
    rows = []
    for name, r in reports.items():
        times = [f"{r['time_to'][lv]['minutes']:g}" if r["time_to"].get(lv) else "-" for lv in levels]
        rows.append([name, *times, f"{r['test']['full_string_accuracy']:.2%}"])
    summary = {
        name: {k: r[k] for k in ("scheme", "time_to", "test", "trained", "verdict")} for name, r in reports.items()
    }
    with replacing(out / "compare.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    table = _table(["scheme", *(f"minutes to {lv}" for lv in levels), "test"], rows)
    page = out / "compare.html"
    links = "".join(f'<li><a href="{html.escape(n)}/report.html">{html.escape(n)}</a></li>' for n in reports)
    with replacing(page) as tmp:
        tmp.write_text(
            f"<!doctype html><meta charset=utf-8><title>audit comparison</title><h1>Schemes compared</h1>"
            f"{_img(out / 'compare.png')}{table}<ul>{links}</ul>\n",
            encoding="utf-8",
        )
    return page
