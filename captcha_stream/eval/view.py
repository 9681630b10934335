"""--view: every captcha beside the model's attempt, as an HTML page.

A page rather than a GUI window: it works over SSH and on headless machines, can be
kept with the run, and the browser does the zooming and scrolling. When a display is
available the page is opened in the default browser. Up to INLINE_LIMIT images are
inlined (one self-contained file); a larger set's images go to a folder beside the page
(`PAGE_files/`, hard links where the filesystem allows), so the page stays small.
The reading is marked against the truth by an edit-distance alignment: a wrong symbol,
a gap where one is missing, a struck-through symbol the reader added.

--sheet: the first mistakes as one PNG, for where a page cannot go (an issue, a chat, a
README) and for machines without a browser to take a screenshot with.
"""

from __future__ import annotations

import base64
import html
import os
import shutil
import sys
import webbrowser
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ..atomic import replacing
from . import metrics

_STYLE = """
body { font-family: sans-serif; margin: 1.5em; background: #fafafa; }
.grid { display: flex; flex-wrap: wrap; gap: 10px; }
.card { background: white; border: 2px solid #cde5cd; border-radius: 6px; padding: 6px; }
.card.wrong { border-color: #e06666; }
.card img { display: block; image-rendering: pixelated; }
.text { font-family: monospace; font-size: 18px; margin-top: 4px; }
.bad { color: #c00; font-weight: bold; text-decoration: underline; }
.gap { color: #c00; font-weight: bold; }
.extra { color: #c00; text-decoration: line-through; }
.meta { color: #777; font-size: 12px; }
.controls { margin: 0.5em 0 1em; display: flex; gap: 1.5em; }
body.only-wrong .card:not(.wrong) { display: none; }
.card.hidden { display: none; }
"""
INLINE_LIMIT = 200

_SCRIPT = """
function order(key) {
  const grid = document.querySelector('.grid');
  const cards = Array.from(grid.children);
  const by = {mistakes: c => [c.classList.contains('wrong') ? 0 : 1, +c.dataset.index],
              confidence: c => [+c.dataset.conf, +c.dataset.index], file: c => [0, +c.dataset.index]}[key];
  cards.sort((a, b) => { const x = by(a), y = by(b); return x[0] - y[0] || x[1] - y[1]; });
  cards.forEach(c => grid.appendChild(c));
}
function only(pair) {
  document.querySelectorAll('.card').forEach(c =>
    c.classList.toggle('hidden', pair !== '' && !c.dataset.pairs.split(' ').includes(pair)));
}
"""


def has_display() -> bool:
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _mistakes_first(labels: Sequence[str], preds: Sequence[str]) -> list[int]:
    # Mistakes first: they are what a person opens a view to look at.
    return sorted(range(len(labels)), key=lambda i: (preds[i] == labels[i], i))


def _marks(pred: str, truth: str) -> list[tuple[str, str]]:
    """The reading aligned with the truth (edit distance), as (character, kind) pairs: "ok", "sub" (a
    wrong symbol), "gap" (a symbol the reading left out, shown as "_"), "extra" (one it added)."""
    out = []
    for t, p in metrics.alignment(pred, truth):
        if p is None:
            out.append(("_", "gap"))
        elif t is None:
            out.append((p, "extra"))
        else:
            out.append((p, "ok" if p == t else "sub"))
    return out


_CLASS = {"sub": "bad", "gap": "gap", "extra": "extra"}


def _marked(pred: str, truth: str) -> str:
    """The reading as HTML, each difference from the truth marked by its kind."""
    parts = [
        html.escape(ch) if kind == "ok" else f'<span class="{_CLASS[kind]}">{html.escape(ch)}</span>'
        for ch, kind in _marks(pred, truth)
    ]
    return "".join(parts) or '<span class="bad">(empty)</span>'


def _sources(out: Path, image_paths: Sequence[Path]) -> list[str]:
    """What each card's <img src> is: inlined data for a small set, else files in PAGE_files/."""
    if len(image_paths) <= INLINE_LIMIT:
        return [f"data:image/png;base64,{base64.b64encode(Path(p).read_bytes()).decode('ascii')}" for p in image_paths]
    folder = out.with_name(out.stem + "_files")
    folder.mkdir(parents=True, exist_ok=True)
    sources = []
    for k, path in enumerate(image_paths):
        target = folder / f"{k:06d}{Path(path).suffix or '.png'}"
        target.unlink(missing_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copyfile(path, target)
        sources.append(f"{folder.name}/{target.name}")
    return sources


def write_view(
    out: str | os.PathLike[str],
    image_paths: Sequence[Path],
    labels: Sequence[str],
    preds: Sequence[str],
    confidences: Sequence[float],
    title: str,
) -> Path:
    out = Path(out)
    summary = metrics.summary(preds, labels)
    wrong = sum(p != t for p, t in zip(preds, labels))
    sources = _sources(out, image_paths)
    cards = []
    for i in _mistakes_first(labels, preds):
        ok = preds[i] == labels[i]
        pairs = " ".join(sorted({f"{t}>{p}" for t, p in metrics.substitutions(preds[i], labels[i])}))
        cards.append(
            f'<div class="card{"" if ok else " wrong"}" data-index="{i}" data-conf="{confidences[i]:.6f}" '
            f'data-pairs="{html.escape(pairs)}"><img src="{sources[i]}" alt="">'
            f'<div class="text">truth&nbsp;{html.escape(labels[i])}</div>'
            f'<div class="text">model&nbsp;{_marked(preds[i], labels[i])}</div>'
            f'<div class="meta">{html.escape(Path(image_paths[i]).name)} · confidence {confidences[i]:.3f}</div></div>'
        )
    options = "".join(
        f'<option value="{html.escape(f"{t}>{p}")}">{html.escape(t)} read as {html.escape(p)} ({n})</option>'
        for t, p, n in metrics.confusions(preds, labels, top=50)
    )
    controls = (
        "<div class='controls'><label><input type='checkbox' "
        "onchange=\"document.body.classList.toggle('only-wrong', this.checked)\"> show only mistakes</label>"
        "<label>order <select onchange='order(this.value)'><option value='mistakes'>mistakes first</option>"
        "<option value='confidence'>least confident first</option><option value='file'>file order</option>"
        "</select></label><label>confused pair <select onchange='only(this.value)'><option value=''>all</option>"
        f"{options}</select></label></div>"
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style><script>{_SCRIPT}</script></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f"<p>{len(labels)} images, {wrong} wrong. Full-string accuracy {summary['full_string_accuracy']:.2%}, "
        f"character accuracy {summary['char_accuracy']:.2%}, CER {summary['cer']:.2%}, case-insensitive "
        f"{summary['case_insensitive_accuracy']:.2%}. The reading is aligned with the truth: a "
        "<span class='bad'>wrong</span> symbol, a <span class='gap'>_</span> where one is missing, an "
        "<span class='extra'>added</span> one struck through.</p>"
        + controls
        + "<div class='grid'>"
        + "".join(cards)
        + "</div></body></html>"
    )
    with replacing(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out


def open_view(path: Path) -> bool:
    """Open the page in a browser when there is a screen to show it on."""
    if not has_display():
        return False
    try:
        return webbrowser.open(path.resolve().as_uri())
    except webbrowser.Error:
        return False


_GREEN, _RED, _GREY, _INK = (205, 229, 205), (224, 102, 102), (119, 119, 119), (20, 20, 20)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # The captcha package's own font is monospaced and always installed beside it.
    try:
        from captcha.image import DEFAULT_FONTS

        return ImageFont.truetype(DEFAULT_FONTS[0], size)
    except (ImportError, IndexError, OSError):
        return ImageFont.load_default()


def write_sheet(
    out: str | os.PathLike[str],
    image_paths: Sequence[Path],
    labels: Sequence[str],
    preds: Sequence[str],
    title: str,
    count: int = 24,
    columns: int = 4,
) -> Path:
    """A PNG of `count` captchas, mistakes first, each with the truth and the model's reading."""
    if count < 1 or columns < 1:
        raise ValueError(f"count and columns must be >= 1, got {count} and {columns}")
    out = Path(out)
    order = _mistakes_first(labels, preds)[:count]
    images = [Image.open(image_paths[i]).convert("RGB") for i in order]
    cell_w = max((im.width for im in images), default=1) + 16
    text = _font(18)
    line = 24
    cell_h = max((im.height for im in images), default=1) + 2 * line + 16
    rows = max(1, -(-len(order) // columns))
    head = 2 * line + 8
    sheet = Image.new("RGB", (columns * cell_w + 8, head + rows * cell_h + 8), "white")
    draw = ImageDraw.Draw(sheet)
    summary = metrics.summary(preds, labels)
    wrong = sum(p != t for p, t in zip(preds, labels))
    small = _font(14)
    draw.text((8, 6), title, fill=_INK, font=small)
    draw.text(
        (8, 6 + line),
        f"{len(labels)} images, {wrong} wrong: full-string {summary['full_string_accuracy']:.2%}, "
        f"case-insensitive {summary['case_insensitive_accuracy']:.2%}; mistakes first, wrong characters in red",
        fill=_GREY,
        font=small,
    )
    char_w = text.getlength("M")
    for k, (i, im) in enumerate(zip(order, images)):
        x, y = 8 + (k % columns) * cell_w, head + (k // columns) * cell_h
        ok = preds[i] == labels[i]
        draw.rectangle((x, y, x + cell_w - 8, y + cell_h - 8), outline=_GREEN if ok else _RED, width=3)
        sheet.paste(im, (x + 4, y + 4))
        ty = y + 8 + im.height
        draw.text((x + 6, ty), f"truth {labels[i]}", fill=_INK, font=text)
        draw.text((x + 6, ty + line), "model", fill=_INK, font=text)
        # The same marking as the page's: the reader's eye goes to the red.
        for j, (ch, kind) in enumerate(_marks(preds[i], labels[i])):
            cx = x + 6 + (6 + j) * char_w
            draw.text((cx, ty + line), ch, fill=_INK if kind == "ok" else _RED, font=text)
            if kind == "extra":  # struck through, as on the page
                draw.line((cx, ty + line + 12, cx + char_w, ty + line + 12), fill=_RED, width=2)
    with replacing(out) as tmp:
        sheet.save(tmp, format="PNG")
    return out
