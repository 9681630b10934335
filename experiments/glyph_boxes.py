"""Why 0/O and v/V, x/X, z/Z are the confusions left: the picture and the numbers.

`ImageCaptcha._draw_character` measures a character with `multiline_textbbox`, which for the
bundled monospace font is the same advance-width x line-height box for every symbol, then crops
the glyph's ink and resizes it to fill that box. A lower-case v is stretched to the height of a V,
and an O and a (narrower) 0 are stretched to the same width: what is left to tell them apart is
mostly stroke thickness. This script calls the package's own `_draw_character` with rotation,
warp and offsets switched off, so the stretch is the only change, and draws the glyphs before
(as the font draws them) and after (what goes into a captcha).

    python experiments/glyph_boxes.py [--out docs/glyph-boxes.png] [--size 50]

It prints, per symbol, the ink box before the stretch, the horizontal and vertical stretch
factors, and the width of the first stroke met along the ink's middle row before and after the
horizontal stretch: stroke widths are the cue a reader must learn.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from captcha.image import ImageCaptcha
from PIL import Image, ImageDraw, ImageFont

PAIRS = ["0O", "oO", "vV", "xX", "zZ", "wW", "sS", "cC"]
SCALE = 2


def undistorted_captcha(size: int) -> ImageCaptcha:
    """The package's drawer with one font size and no rotation, warp or offset."""
    drawer = ImageCaptcha(font_sizes=(size,))
    drawer.character_rotate = (0, 0)
    drawer.character_warp_dx = (0.0, 0.0)
    drawer.character_warp_dy = (0.0, 0.0)
    drawer.character_offset_dx = (0, 0)
    drawer.character_offset_dy = (0, 0)
    return drawer


def plain_glyph(font: ImageFont.FreeTypeFont, ch: str, box: tuple[int, int]) -> Image.Image:
    """The character as the font draws it, in the same box the package stretches it to."""
    im = Image.new("RGB", box, (255, 255, 255))
    ImageDraw.Draw(im).text((0, 0), ch, font=font, fill=(0, 0, 0))
    return im


def first_stroke_width(font: ImageFont.FreeTypeFont, ch: str) -> int:
    """Pixels of the first run of ink (mask > 127) along the glyph's middle row."""
    mask = font.getmask(ch)
    width, height = mask.size
    row = [mask.getpixel((x, height // 2)) > 127 for x in range(width)]
    start = row.index(True) if True in row else width
    end = row.index(False, start) if False in row[start:] else width
    return end - start


def stretched_glyph(drawer: ImageCaptcha, scratch: ImageDraw.ImageDraw, ch: str) -> Image.Image:
    """What `_draw_character` hands to the captcha, flattened onto white."""
    rgba = drawer._draw_character(ch, scratch, (0, 0, 0, 255))
    out = Image.new("RGB", rgba.size, (255, 255, 255))
    out.paste(rgba, (0, 0), rgba)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/glyph-boxes.png")
    parser.add_argument("--size", type=int, default=50, help="font size (the package uses 42, 50, 56)")
    args = parser.parse_args()

    drawer = undistorted_captcha(args.size)
    font = drawer.truefonts[0]
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    chars = "".join(PAIRS)

    print(f"font size {args.size}; textbbox = the box every glyph is stretched to")
    print("char  textbbox(w,h)  ink(w,h)  stretch x  stretch y  stroke before  after")
    cells = []
    for ch in dict.fromkeys(chars):
        _, _, w, h = (int(v) for v in scratch.multiline_textbbox((1, 1), ch, font=font))
        ink = font.getmask(ch).getbbox() or (0, 0, 1, 1)
        ink_w, ink_h = ink[2] - ink[0], ink[3] - ink[1]
        stroke = first_stroke_width(font, ch)
        print(
            f"  {ch}   {w:4d} x {h:3d}     {ink_w:3d} x {ink_h:3d}   {w / ink_w:6.2f}    {h / ink_h:6.2f}"
            f"     {stroke:4d} px    {stroke * w / ink_w:5.1f} px"
        )
        cells.append((ch, plain_glyph(font, ch, (w + 2, h + 2)), stretched_glyph(drawer, scratch, ch)))

    cell_w = max(max(a.width, b.width) for _, a, b in cells) * SCALE + 8
    cell_h = max(max(a.height, b.height) for _, a, b in cells) * SCALE + 8
    label_w, head_h = 120, 20
    sheet = Image.new("RGB", (label_w + cell_w * len(cells), head_h + 2 * cell_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    label_font = ImageFont.load_default()
    draw.text((4, head_h + cell_h // 2), "as the font\ndraws it", fill=(60, 60, 60), font=label_font)
    draw.text((4, head_h + cell_h + cell_h // 2), "after the\npackage's stretch", fill=(60, 60, 60), font=label_font)
    for i, (ch, plain, stretched) in enumerate(cells):
        x = label_w + i * cell_w
        draw.text((x + cell_w // 2 - 3, 4), repr(ch), fill=(0, 0, 0), font=label_font)
        for row, im in enumerate((plain, stretched)):
            big = im.resize((im.width * SCALE, im.height * SCALE), Image.Resampling.NEAREST)
            y = head_h + row * cell_h
            sheet.paste(big, (x + 4, y + 4))
            draw.rectangle((x + 3, y + 3, x + 4 + big.width, y + 4 + big.height), outline=(200, 200, 200))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
