"""A faster, pixel-identical path for `ImageCaptcha.generate_image`.

The captcha package spends most of its time outside Pillow's C kernels: rasterising each
glyph with FreeType again for every character, measuring it, and going through Pillow's
Python wrappers (argument checks, mode juggling, Image objects) a dozen times per glyph,
plus building a 256-entry lookup table from Python floats for every paste. This module
makes the same C calls on the same data in the same order, and draws the same random
numbers in the same order, so its pixels are identical to the package's:

- what does not depend on randomness is computed once per font and character: the
  glyph's coverage mask (FreeType's output) with its placement, and its text box;
- the per-glyph work (draw the mask in the random colour, crop, rotate, resize, warp,
  paste) calls Pillow's core image methods directly, replicating only the wrapper logic
  that matters for these arguments (premultiplied alpha around RGBA resampling,
  rotation's matrix and expanded size, QUAD coefficients);
- the paste mask's lookup table is built once.

Identity with the package is a test (tests/test_fastrender.py), and `supported()` limits
the fast path to the captcha and Pillow versions that test has covered; anything else
falls back to the package's own code with one warning.
"""

from __future__ import annotations

import math
import random
import warnings
from importlib import metadata
from typing import Any

import numpy as np
from captcha.image import ImageCaptcha
from PIL import Image, ImageDraw

from ..config import DataConfig
from .scheme import curve_box, ink_color, random_color
from .seeding import SeededSecrets

# (captcha, Pillow major) pairs whose output tests/test_fastrender.py has compared pixel by pixel.
TESTED = {("0.7.1", "13")}

_NEAREST = Image.Resampling.NEAREST
_BILINEAR = Image.Resampling.BILINEAR
_BICUBIC = Image.Resampling.BICUBIC
_AFFINE = Image.Transform.AFFINE
_QUAD = Image.Transform.QUAD
_core = Image.core


class Smoother:
    """`image.filter(ImageFilter.SMOOTH)` for 8-bit RGB or L images, in about half the time.

    SMOOTH is the kernel [[1,1,1],[1,5,1],[1,1,1]] / 13. Pillow sums float32 products and
    truncates `sum + 0.5`, keeping the border pixels. For integer inputs the exact value
    (S + 6.5) / 13, S the weighted integer sum, is never closer than 1/26 to an integer,
    while float32 rounding moves it by less than 1e-3 here: any float32 order of operations
    truncates to the same byte, so a separable box sum gives Pillow's pixels exactly
    (tests/test_fastrender.py also compares the two on noise images).

    The work buffers are kept between calls: fresh ones are large enough for the
    allocator to map new pages each time, which costs more than the arithmetic.
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple[int, ...], tuple[np.ndarray, ...]] = {}

    def __call__(self, image: Image.Image) -> Image.Image:
        src = np.asarray(image)
        if src.shape[0] < 3 or src.shape[1] < 3:
            return image.copy()
        buffers = self._buffers.get(src.shape)
        if buffers is None:
            h, w = src.shape[:2]
            rest = src.shape[2:]
            buffers = self._buffers[src.shape] = (
                np.empty(src.shape, np.uint16),
                np.empty((h, w - 2, *rest), np.uint16),
                np.empty((h - 2, w - 2, *rest), np.uint16),
                np.empty((h - 2, w - 2, *rest), np.float32),
            )
        pixels, rows, total, scaled = buffers
        # Integer sums (at most 13 * 255) are exact in uint16, at half float32's memory traffic.
        np.copyto(pixels, src)
        np.add(pixels[:, :-2], pixels[:, 1:-1], out=rows)
        rows += pixels[:, 2:]
        np.add(rows[:-2], rows[1:-1], out=total)
        total += rows[2:]
        centre = rows[1:-1]  # free again: reuse it for 4 * centre
        np.left_shift(pixels[1:-1, 1:-1], 2, out=centre)
        total += centre
        np.multiply(total, np.float32(1 / 13), out=scaled)
        scaled += np.float32(0.5)
        out = src.copy()
        out[1:-1, 1:-1] = scaled  # float -> uint8 truncates, as Pillow's clip8 does
        return Image.fromarray(out)


def supported() -> bool:
    cap = metadata.version("captcha")
    pil_major = metadata.version("pillow").split(".")[0]
    return (cap, pil_major) in TESTED


_warned = False


def warn_unsupported() -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(
            f"captcha {metadata.version('captcha')} / Pillow {metadata.version('pillow')} is not a version pair "
            "the fast renderer was tested against; rendering through the captcha package instead (slower)",
            stacklevel=3,
        )


class GlyphCache:
    """Per (font, character): text box, coverage mask and where the mask lands."""

    def __init__(self, fonts: list[Any]) -> None:
        self.fonts = fonts
        self._entries: dict[tuple[int, str], tuple[int, int, Any, int, int]] = {}
        self._probe = ImageDraw.Draw(Image.new("RGB", (8, 8)))

    def get(self, font_index: int, char: str) -> tuple[int, int, Any, int, int]:
        key = (font_index, char)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = self._make(font_index, char)
        return entry

    def _make(self, font_index: int, char: str) -> tuple[int, int, Any, int, int]:
        font = self.fonts[font_index]
        _, _, w, h = self._probe.multiline_textbbox((1, 1), char, font=font)
        # Draw the character through Pillow itself, white on black in L mode at a margin:
        # there, draw_bitmap's blend leaves exactly FreeType's coverage values, and where they
        # land relative to the text origin is the placement the package's draw gets.
        pad = 4 * max(int(w), int(h), 8)
        canvas = Image.new("L", (int(w) + 2 * pad, int(h) + 2 * pad))
        ImageDraw.Draw(canvas).text((pad, pad), char, font=font, fill=255)
        bbox = canvas.getbbox()
        if bbox is None:
            return w, h, None, 0, 0
        mask = canvas.crop(bbox).im
        return w, h, mask, bbox[0] - pad, bbox[1] - pad


def _rgba_resample(src: Any, size: tuple[int, int], op: str, *args: Any) -> Any:
    """Pillow resamples RGBA in premultiplied form (RGBa) and converts back."""
    pre = src.convert("RGBa")
    if op == "resize":
        out = pre.resize(size, *args)
    else:
        out = _core.new("RGBa", size)
        out.transform((0, 0, *size), pre, *args)
    return out.convert("RGBA")


def _rotate_expand(src: Any, angle: float) -> Any:
    """Image.rotate(angle, BILINEAR, expand=True) on a core RGBA image."""
    angle = angle % 360.0
    w, h = src.size
    if angle == 0:
        return src.copy()
    if angle == 180:
        return src.transpose(Image.Transpose.ROTATE_180)
    if angle in (90, 270):
        return src.transpose(Image.Transpose.ROTATE_90 if angle == 90 else Image.Transpose.ROTATE_270)
    cx, cy = w / 2, h / 2
    rad = -math.radians(angle)
    cos, sin = math.cos(rad), math.sin(rad)
    a, b = round(cos, 15), round(sin, 15)
    d, e = round(-sin, 15), round(cos, 15)
    c = a * -cx + b * -cy + 0.0 + cx
    f = d * -cx + e * -cy + 0.0 + cy
    # Pillow maps the corners (0,0), (w,0), (w,h), (0,h) as a*x + b*y + c; the zero terms
    # are dropped here, which changes no bit of the sums.
    aw, bh, dw, eh = a * w, b * h, d * w, e * h
    xs = (c, aw + c, aw + bh + c, bh + c)
    ys = (f, dw + f, dw + eh + f, eh + f)
    nw = math.ceil(max(xs)) - math.floor(min(xs))
    nh = math.ceil(max(ys)) - math.floor(min(ys))
    tx, ty = -(nw - w) / 2.0, -(nh - h) / 2.0
    c, f = a * tx + b * ty + c, d * tx + e * ty + f
    return _rgba_resample(src, (nw, nh), "transform", _AFFINE, (a, b, c, d, e, f), _BILINEAR, True)


def _quad_coefficients(size: tuple[int, int], data: tuple[float, ...]) -> tuple[float, ...]:
    w, h = size
    x0, y0, swx, swy, sex, sey, nex, ney = data
    inv_w, inv_h = 1.0 / w, 1.0 / h
    return (
        x0,
        (nex - x0) * inv_w,
        (swx - x0) * inv_h,
        (sex - swx - nex + x0) * inv_w * inv_h,
        y0,
        (ney - y0) * inv_w,
        (swy - y0) * inv_h,
        (sey - swy - ney + y0) * inv_w * inv_h,
    )


class FastCaptcha:
    """generate_image() with the package's random draws and pixels, in less time.

    `source` is the seeded stand-in the package path's code calls as `secrets`;
    `captcha` is an ImageCaptcha configured like the package path (size, fonts).
    """

    def __init__(self, captcha: ImageCaptcha, source: SeededSecrets, data: DataConfig) -> None:
        self.captcha = captcha
        # The scheme's knobs (data/scheme.py); the distortion ranges are read from `captcha`'s class.
        self.data = data
        self.source = source
        # Every bound below is positive, so the source's unchecked draws are called directly
        # (a hundred calls per captcha).
        self.below = source.below
        self.bits = source.rng.getrandbits
        self.inline_below = type(source.rng)._randbelow is random.Random._randbelow_with_getrandbits
        self.fonts = captcha.truefonts
        self.glyphs = GlyphCache(self.fonts)
        self.lut = [round(v) for v in captcha.lookup_table]
        self.font_indices = list(range(len(self.fonts)))
        self.smooth = Smoother()
        offsets = (captcha.character_offset_dx, captcha.character_offset_dy)
        self.offset_ranges = tuple((lo, hi - lo + 1) for lo, hi in offsets)

    def _glyph(self, char: str, color: tuple[int, ...], fonts: list[int]) -> tuple[Any, bool]:
        """The package's _draw_character: (core RGBA image, whether it is fully transparent)."""
        cap, src, below, bits = self.captcha, self.source, self.below, self.bits
        # secrets.choice(self.truefonts) draws an index into the same-length list.
        font_index = src.choice(fonts)
        w, h, mask, ox, oy = self.glyphs.get(font_index, char)
        (dx_lo, dx_n), (dy_lo, dy_n) = self.offset_ranges
        dx1 = below(dx_n) + dx_lo
        dy1 = below(dy_n) + dy_lo
        if mask is None:
            # A blank glyph (the word space): rotating, resizing and warping nothing gives
            # nothing, so only the random draws are made, in the same order.
            for _ in range(7):
                bits(32)
            return _core.fill("RGBA", (int(w), int(h)), 0), True
        canvas = _core.fill("RGBA", (int(w) + dx1, int(h) + dy1), 0)
        draw = _core.draw(canvas, 0)
        draw.draw_bitmap((dx1 + ox, dy1 + oy), mask, draw.draw_ink(color))
        bbox = canvas.getbbox(True)
        if bbox is not None and bbox != (0, 0, *canvas.size):
            canvas = canvas.crop(bbox)
        lo, hi = cap.character_rotate
        im = _rotate_expand(canvas, lo + (bits(32) / (2**32)) * (hi - lo))

        wlo, whi = cap.character_warp_dx
        hlo, hhi = cap.character_warp_dy
        dx2 = w * (bits(32) / (2**32)) * (whi - wlo) + wlo
        dy2 = h * (bits(32) / (2**32)) * (hhi - hlo) + hlo
        x1 = int(bits(32) / (2**32) * (dx2 - (-dx2)) + (-dx2))
        y1 = int(bits(32) / (2**32) * (dy2 - (-dy2)) + (-dy2))
        x2 = int(bits(32) / (2**32) * (dx2 - (-dx2)) + (-dx2))
        y2 = int(bits(32) / (2**32) * (dy2 - (-dy2)) + (-dy2))
        w2 = w + abs(x1) + abs(x2)
        h2 = h + abs(y1) + abs(y2)
        data = (x1, y1, -x1, h2 - y2, w2 + x2, h2 + y2, w2 - x2, -y1)
        size2 = (w2, h2)
        if im.size != size2:
            im = _rgba_resample(im, size2, "resize", _BICUBIC, (0, 0, *im.size))
        else:
            im = im.copy()
        out_size = (int(w), int(h))
        out = _core.new("RGBA", out_size)
        out.transform((0, 0, *out_size), im, _QUAD, _quad_coefficients(out_size, data), _NEAREST, True)
        return out, False

    def _noise(self, image: Any, color: tuple[int, ...], w: int, h: int) -> None:
        """The package's create_noise_dots, then create_noise_curve, drawn on the core image in place."""
        below, bits, data = self.below, self.bits, self.data
        draw = _core.draw(image, 0)
        ink = draw.draw_ink(color)
        # create_noise_dots
        line = draw.draw_lines
        dots, width = data.noise_dots, data.noise_dot_width
        if self.inline_below:
            # below(n) inlined: random.Random draws bit_length(n) bits until the value is < n.
            # Sixty draws per captcha, one Python call each, matter at this speed.
            bits_x, bits_y = (w + 1).bit_length(), (h + 1).bit_length()
            for _ in range(dots):
                x1 = bits(bits_x)
                while x1 > w:
                    x1 = bits(bits_x)
                y1 = bits(bits_y)
                while y1 > h:
                    y1 = bits(bits_y)
                line(((x1, y1), (x1 - 1, y1 - 1)), ink, width)
        else:
            for _ in range(dots):
                x1 = below(w + 1)
                y1 = below(h + 1)
                line(((x1, y1), (x1 - 1, y1 - 1)), ink, width)
        if data.noise_curve:
            box, start, end = curve_box(self.source, w, h)
            draw.draw_arc(box, start, end, ink, data.noise_curve_width)

    def generate_image(self, chars: str) -> Image.Image:
        cap, below, bits, data = self.captcha, self.below, self.bits, self.data
        background = random_color(self.source, data.background)
        color = ink_color(self.source, data)
        width0, height = cap._width, cap._height
        fonts = self.font_indices
        if data.font_per == "captcha":
            fonts = [self.source.choice(fonts)]

        images = []
        for c in chars:
            if bits(32) / (2**32) > cap.word_space_probability:
                images.append(self._glyph(" ", color, fonts))
            images.append(self._glyph(c, color, fonts))

        text_width = sum(im.size[0] for im, _ in images)
        width = max(text_width, width0)
        # The package resizes its blank background to the text's width: still one colour.
        image = _core.fill("RGB", (width, height), background)

        average = int(text_width / len(chars))
        rand = int(cap.word_offset_dx * average)
        offset = int(average * 0.1)
        lut = self.lut
        for im, blank in images:
            w, h = im.size
            if not blank:  # a transparent glyph's paste mask is all zero: nothing to paste
                mask = im.convert("L").point(lut, None)
                y = int((height - h) / 2)
                image.paste(im, (offset, y, offset + w, y + h), mask)
            offset = offset + w + (-below(rand + 1))

        if width > width0:
            image = image.resize((width0, height), _BICUBIC, (0, 0, width, height))

        if data.noise_dots or data.noise_curve:
            self._noise(image, color, width0, height)
        image = Image.Image()._new(image)
        return self.smooth(image) if data.smooth else image
