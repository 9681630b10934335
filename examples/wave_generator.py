"""An example captcha generator written on Pillow alone, in another style than the captcha package's:
upright glyphs of Pillow's own font on a hatched background, bent by a sine wave, with a line struck
through them.

The contract (docs/schemes.md): render(text, rng, data) -> PIL image of data.width x data.height,
every random number drawn from `rng`. Use it with `data.generator: "examples/wave_generator.py:render"`
(configs/wave.yaml); the path is relative to the folder training runs in.
"""

import math
import random

from PIL import Image, ImageDraw, ImageFont


def render(text: str, rng: random.Random, data) -> Image.Image:
    w, h = data.width, data.height
    image = Image.new("L", (w, h), rng.randint(215, 255))
    draw = ImageDraw.Draw(image)
    spacing = rng.randint(7, 12)
    for x in range(-h, w, spacing):  # diagonal hatching behind the text
        draw.line([(x, 0), (x + h, h)], fill=rng.randint(150, 205), width=1)
    font = ImageFont.load_default(size=max(8, int(h * rng.uniform(0.5, 0.62))))
    step = w / (len(text) + 0.8)
    for i, ch in enumerate(text):
        x = step * (i + 0.4) + rng.uniform(-0.12, 0.12) * step
        y = h * 0.18 + rng.uniform(-0.1, 0.1) * h
        draw.text((x, y), ch, font=font, fill=rng.randint(0, 90))
    image = _wave(image, rng)
    draw = ImageDraw.Draw(image)
    y0, y1 = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * h
    draw.line([(0, y0), (w, y1)], fill=rng.randint(0, 90), width=rng.randint(1, 3))
    return image


def _wave(image: Image.Image, rng: random.Random) -> Image.Image:
    """Shift each column up or down along a sine wave (Pillow's MESH transform, 8-pixel strips)."""
    w, h = image.size
    amplitude, period, phase = rng.uniform(2, 0.08 * h), rng.uniform(0.4, 0.9) * w, rng.uniform(0, 2 * math.pi)

    def shift(x: float) -> float:
        return amplitude * math.sin(2 * math.pi * x / period + phase)

    mesh = []
    for x in range(0, w, 8):
        x1 = min(x + 8, w)
        quad = (x, shift(x), x, h + shift(x), x1, h + shift(x1), x1, shift(x1))
        mesh.append(((x, 0, x1, h), quad))
    return image.transform((w, h), Image.Transform.MESH, mesh, Image.Resampling.BILINEAR, fillcolor=255)
