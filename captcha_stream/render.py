"""Seeded captcha rendering over `captcha.image.ImageCaptcha`.

The captcha package draws every random number from the `secrets` module, which cannot
be seeded. Patching `captcha.image.secrets` globally would make all renderers in a
process share (and race for) one stream. Instead each Renderer gets its own copies of
the package's functions whose global namespace maps `secrets` to a seeded source owned
by that renderer: the package's code runs unmodified, draw for draw, but every draw
comes from the renderer's `random.Random`. Several renderers in one process, threads
or DataLoader workers never touch each other's state.
"""

from __future__ import annotations

import functools
import itertools
import random
import types
from collections.abc import Sequence
from typing import Any

import numpy as np
from captcha import image as captcha_image
from PIL import Image

from .config import DataConfig
from .errors import CaptchaStreamError
from .fastrender import FastCaptcha, supported, warn_unsupported


def derive_seed(*keys: int) -> int:
    """A 63-bit seed from a tuple of non-negative integers (base seed, rank, index, ...).

    SeedSequence mixes the keys so that nearby tuples give unrelated streams, and the
    result does not depend on the process, the platform or PYTHONHASHSEED.
    """
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class SeededSecrets:
    """Stands in for the `secrets` module inside the captcha package's functions."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        # below(n) is randbelow(n) for a known positive n, without the check. randrange(n)
        # is _randbelow(n) for n > 0, minus two Python calls; a captcha draws about a
        # hundred of these, so it shows.
        self.below = getattr(rng, "_randbelow", rng.randrange)

    def randbelow(self, exclusive_upper_bound: int) -> int:
        if exclusive_upper_bound <= 0:
            raise ValueError("Upper bound must be positive.")
        return self.below(exclusive_upper_bound)

    def randbits(self, k: int) -> int:
        return self.rng.getrandbits(k)

    def choice(self, seq: Any) -> Any:
        return self.rng.choice(seq)

    def __getattr__(self, name: str) -> Any:
        # A newer captcha release calling something else from `secrets` must not fall
        # back to unseeded randomness silently.
        raise CaptchaStreamError(
            f"the installed captcha package calls secrets.{name}, which captcha_stream does not seed; "
            "pin captcha==0.7.1 or extend captcha_stream.render.SeededSecrets"
        )


def _rebind(func: types.FunctionType, namespace: dict[str, Any]) -> types.FunctionType:
    clone = types.FunctionType(func.__code__, namespace, func.__name__, func.__defaults__, func.__closure__)
    clone.__kwdefaults__ = func.__kwdefaults__
    clone.__qualname__ = func.__qualname__
    return clone


def seeded_captcha_class(source: SeededSecrets) -> type[captcha_image.ImageCaptcha]:
    """A subclass of ImageCaptcha whose methods draw from `source` instead of `secrets`."""
    module_globals = vars(captcha_image)
    namespace = dict(module_globals)
    namespace["secrets"] = source
    # Module-level helpers (random_color) are called through the globals, so they are
    # cloned into the same namespace.
    for name, value in module_globals.items():
        if isinstance(value, types.FunctionType) and value.__globals__ is module_globals:
            namespace[name] = _rebind(value, namespace)
    members: dict[str, Any] = {}
    for name, value in vars(captcha_image.ImageCaptcha).items():
        if isinstance(value, staticmethod) and isinstance(value.__func__, types.FunctionType):
            members[name] = staticmethod(_rebind(value.__func__, namespace))
        elif isinstance(value, types.FunctionType):
            members[name] = _rebind(value, namespace)
    return type("SeededImageCaptcha", (captcha_image.ImageCaptcha,), members)


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
        self, data: DataConfig, seed: int = 0, fast: bool = True, symbol_weights: Sequence[float] | None = None
    ) -> None:
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
        self._captcha = cls(width=data.width, height=data.height, fonts=self.fonts, font_sizes=tuple(data.font_sizes))
        self._captcha._truefonts = _load_fonts(tuple(self.fonts), tuple(data.font_sizes))
        # fast=True: same draws, same pixels, less time (see fastrender); the package's own
        # code path otherwise, or when the installed versions are not ones we verified.
        self._fast: FastCaptcha | None = None
        if fast:
            if supported():
                self._fast = FastCaptcha(self._captcha, self._source)
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
