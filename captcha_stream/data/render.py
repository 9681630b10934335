"""Seeded captcha rendering: `Renderer` draws labels and images from one seeded `random.Random`.

Images come from the captcha package's own code run with a seeded `secrets` (seeding.py), or from
the pixel-identical fast path (fastrender.py) where the installed versions are the tested ones.
Several renderers in one process, threads or DataLoader workers never touch each other's state.
"""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Sequence
from typing import Any

from captcha import image as captcha_image
from PIL import Image

from ..config import DataConfig
from ..errors import CaptchaStreamError
from . import generator, scheme
from .fastrender import FastCaptcha, supported, warn_unsupported
from .seeding import SeededSecrets, derive_seed, seeded_captcha_class


def default_fonts() -> list[str]:
    return list(captcha_image.DEFAULT_FONTS)


@functools.lru_cache(maxsize=16)
def _load_fonts(fonts: tuple[str, ...], sizes: tuple[int, ...]) -> list[Any]:
    # Same order as ImageCaptcha.truefonts, so secrets.choice picks the same font.
    loaded = []
    for path in fonts:
        for size in sizes:
            try:
                loaded.append(captcha_image.truetype(path, size))
            except OSError as exc:
                raise CaptchaStreamError(f"{path}: cannot load font: {exc}") from None
    return loaded


class Renderer:
    """Renders captchas in which one integer seed fixes every random draw.

    Same seed, same sequence of calls and same package versions give identical pixels.
    """

    def __init__(
        self,
        data: DataConfig,
        seed: int = 0,
        fast: bool = True,
        symbol_weights: Sequence[float] | None = None,
        noise: bool = True,
    ) -> None:
        """`noise=False` draws the same captchas without the noise dots and curve (data/pairs.py)."""
        data = data if noise else scheme.quiet(data)
        self.data = data
        # None keeps the uniform draws (and so the exact labels) every exported set was made with.
        self._cum_weights = None if symbol_weights is None else list(itertools.accumulate(symbol_weights))
        if self._cum_weights is not None and len(self._cum_weights) != len(data.charset):
            raise CaptchaStreamError(
                f"symbol_weights: {len(self._cum_weights)} weights for {len(data.charset)} symbols of data.charset"
            )
        self.fonts = list(data.fonts) or default_fonts()
        self.rng = random.Random(seed)
        self._source = SeededSecrets(self.rng)
        cls = seeded_captcha_class(self._source)
        scheme.configure(cls, data, self._source)
        self._captcha = cls(width=data.width, height=data.height, fonts=self.fonts, font_sizes=tuple(data.font_sizes))
        self._captcha._truefonts = _load_fonts(tuple(self.fonts), tuple(data.font_sizes))
        # fast=True: same draws, same pixels, less time (see fastrender); the package's own
        # code path otherwise, or when the installed versions are not ones we verified.
        self._fast: FastCaptcha | None = None
        if fast:
            if supported():
                self._fast = FastCaptcha(self._captcha, self._source, data)
            else:
                warn_unsupported()

    @property
    def fast(self) -> bool:
        return self._fast is not None

    def reseed(self, seed: int) -> None:
        """Restart the random stream, as if the renderer had just been made with `seed`."""
        self.rng.seed(seed)

    def random_label(self) -> str:
        length = self.rng.randint(self.data.min_length, self.data.max_length)
        if self._cum_weights is not None:
            return "".join(self.rng.choices(self.data.charset, cum_weights=self._cum_weights, k=length))
        return "".join(self.rng.choice(self.data.charset) for _ in range(length))

    def render(self, text: str) -> Image.Image:
        """Render `text` with the next draws of this renderer's random stream (RGB image)."""
        if not text:
            raise CaptchaStreamError("cannot render an empty label")
        if self.data.generator:
            return generator.render(self.data.generator, text, self.rng, self.data)
        if self._fast is not None:
            return self._fast.generate_image(text)
        return self._captcha.generate_image(text)

    def sample(self) -> tuple[Image.Image, str]:
        """A random label (length and symbols from the config) and its image."""
        text = self.random_label()
        return self.render(text), text

    def sample_at(self, base_seed: int, index: int) -> tuple[Image.Image, str]:
        """Sample number `index` of the sequence fixed by `base_seed`.

        Each sample is seeded on its own, so any sample can be made without making the
        ones before it: exports split across processes, and a resumed stream, give the
        same bytes as one sequential pass.
        """
        self.reseed(derive_seed(base_seed, index))
        return self.sample()
