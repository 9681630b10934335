"""The captcha package's scheme as config knobs: colours, noise, glyph distortion, spacing, font choice.

`ImageCaptcha` keeps its distortion ranges as class attributes (rotation, warp, offsets, word
spaces) and hard-codes the rest in `generate_image` (colour ranges, 30 noise dots of width 3,
one arc of width 1, the SMOOTH filter). A renderer's own seeded subclass (seeding.py) gets the
configured ranges as its class attributes, and, when any hard-coded part differs from the
package, a `generate_image` that draws the same numbers in the same order with the configured
values. With every knob at its default the package's own `generate_image` runs, unchanged, so
the defaults are the package's behaviour by construction (and tests compare the two anyway).
The fast renderer (fastrender.py) reads the same knobs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from captcha.image import ImageCaptcha
from PIL.ImageDraw import Draw
from PIL.ImageFilter import SMOOTH

from ..config import DataConfig, scheme_defaults
from .seeding import SeededSecrets

# DataConfig key -> the ImageCaptcha class attribute it sets.
CLASS_KNOBS = {
    "rotation": "character_rotate",
    "warp_dx": "character_warp_dx",
    "warp_dy": "character_warp_dy",
    "offset_dx": "character_offset_dx",
    "offset_dy": "character_offset_dy",
    "word_space_probability": "word_space_probability",
    "word_offset_dx": "word_offset_dx",
}
# Knobs that `generate_image` hard-codes in the package.
IMAGE_KNOBS = (
    "background",
    "ink",
    "ink_alpha",
    "noise_dots",
    "noise_dot_width",
    "noise_curve",
    "noise_curve_width",
    "smooth",
    "font_per",
)


def quiet(data: DataConfig) -> DataConfig:
    """The same scheme without the noise dots and curve: drawn last, from the end of each captcha's
    draws, so labels, glyphs, places and colours stay those of `data` (data/pairs.py)."""
    return dataclasses.replace(data, noise_dots=0, noise_curve=False)


def differs_from_package(data: DataConfig) -> list[str]:
    """The knobs of `data` that are not the package's own values."""
    defaults = scheme_defaults()
    return [k for k in (*CLASS_KNOBS, *IMAGE_KNOBS) if getattr(data, k) != defaults[k]]


def random_color(source: SeededSecrets, channel: list[int], alpha: int | None = None) -> tuple[int, ...]:
    """The package's random_color(start, end, opacity): red, green, blue drawn in that order."""
    lo, span = channel[0], channel[1] - channel[0] + 1
    red, green, blue = (source.below(span) + lo for _ in range(3))
    return (red, green, blue) if alpha is None else (red, green, blue, alpha)


def ink_color(source: SeededSecrets, data: DataConfig) -> tuple[int, ...]:
    """The ink: as in the package, its opacity is drawn before its channels."""
    alpha = source.below(data.ink_alpha[1] - data.ink_alpha[0] + 1) + data.ink_alpha[0]
    return random_color(source, data.ink, alpha)


def curve_box(source: SeededSecrets, w: int, h: int) -> tuple[list[int], int, int]:
    """create_noise_curve's draws: the arc's box, start and end angles."""
    x1 = source.below(int(w / 5) + 1)
    x2 = source.below(w - int(w / 5) + 1) + int(w / 5)
    y1 = source.below(h - 2 * int(h / 5) + 1) + int(h / 5)
    y2 = source.below(h - y1 - int(h / 5) + 1) + y1
    end = source.below(41) + 160
    start = source.below(21)
    return [x1, y1, x2, y2], start, end


def configure(cls: type[ImageCaptcha], data: DataConfig, source: SeededSecrets) -> None:
    """Set `data`'s scheme on a renderer's own seeded ImageCaptcha subclass (no other class is touched)."""
    for key, attr in CLASS_KNOBS.items():
        setattr(cls, attr, tuple(getattr(data, key)) if isinstance(getattr(data, key), list) else getattr(data, key))
    if set(differs_from_package(data)) & set(IMAGE_KNOBS):
        cls.generate_image = configured_generate_image(data, source)  # else the package's own


def configured_generate_image(data: DataConfig, source: SeededSecrets) -> Any:
    """ImageCaptcha.generate_image with `data`'s colours, noise, blur and font choice: the package's
    draws in the package's order (at the defaults, its exact pixels: tests/test_scheme.py)."""

    def generate_image(self: ImageCaptcha, chars: str, bg_color: Any = None, fg_color: Any = None) -> Any:
        background = random_color(source, data.background)
        color = ink_color(source, data)
        every_font = self.truefonts
        if data.font_per == "captcha":
            self._truefonts = [source.choice(every_font)]
        try:
            image = self.create_captcha_image(chars, color, background)
        finally:
            self._truefonts = every_font
        if data.noise_dots:
            self.create_noise_dots(image, color, data.noise_dot_width, data.noise_dots)
        if data.noise_curve:
            box, start, end = curve_box(source, *image.size)
            Draw(image).arc(box, start, end, fill=color, width=data.noise_curve_width)
        return image.filter(SMOOTH) if data.smooth else image

    return generate_image
