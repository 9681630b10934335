"""Crops of one glyph cut out of whole captchas: what a second look is trained on.

A random captcha holding the symbol is rendered twice from one seed, once with a blank in the
symbol's place: a blank makes the same random draws and is as wide, so everything else lands on
the same pixels and the difference is the glyph (where the neighbours pasted after it leave it
visible). The crop is the window the second look cuts at reading time, centred on that glyph,
optionally moved up to `jitter` pixels (at reading time the centre comes from a CTC peak, which
lands a few pixels off).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..config import DataConfig
from ..errors import CaptchaStreamError
from ..model.glyph_classifier import CROP_H, crop
from .render import Renderer
from .seeding import derive_seed


class GlyphMaker:
    """Crops of `symbols[0]` or `symbols[1]` from captchas of `data`, from one seeded stream."""

    def __init__(self, data: DataConfig, seed: int, jitter: int = 0) -> None:
        if data.height < CROP_H:
            raise CaptchaStreamError(f"second look: needs images at least {CROP_H} px high, data.height={data.height}")
        self.data = data
        self.rng = random.Random(seed)
        self.renderer = Renderer(data, seed=0)
        self.jitter = jitter

    def pair(self, symbol: str) -> tuple[np.ndarray, np.ndarray]:
        """A random captcha holding `symbol`, and the same captcha with a blank in its place.

        `self.position` says which character it is (0 = first).
        """
        length = self.data.max_length
        where = self.position = self.rng.randrange(length)
        text = [self.rng.choice(self.data.charset) for _ in range(length)]
        seed = self.rng.getrandbits(63)
        images = []
        for ch in (symbol, " "):
            text[where] = ch
            self.renderer.reseed(seed)
            images.append(np.asarray(self.renderer.render("".join(text)).convert("L"), dtype=np.int16))
        return images[0], images[1]

    def centre(self, full: np.ndarray, blank: np.ndarray) -> int:
        """The middle column of the pixels the glyph changes."""
        columns = np.nonzero(np.abs(full - blank).max(axis=0) > 8)[0]
        return (int(columns[0]) + int(columns[-1]) + 1) // 2 if len(columns) else self.data.width // 2

    def glyph(self, symbol: str) -> np.ndarray:
        full, blank = self.pair(symbol)
        shift = self.rng.randint(-self.jitter, self.jitter) if self.jitter else 0
        return crop(full, self.centre(full, blank) + shift)


def glyph_set(data: DataConfig, symbols: str, seed: int, n: int, jitter: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` crops alternating between the two symbols, and their labels (0 or 1)."""
    maker = GlyphMaker(data, seed, jitter)
    labels = torch.arange(n) % 2
    images = np.stack([maker.glyph(symbols[int(y)]) for y in labels])
    return torch.from_numpy(images)[:, None], labels


class GlyphStream(IterableDataset):
    """Batches of (uint8 crops (N, 1, CROP_H, CROP_W), labels), each label a fair coin, endlessly."""

    def __init__(self, data: DataConfig, symbols: str, seed: int, batch_size: int, jitter: int = 0) -> None:
        self.data, self.symbols, self.seed, self.batch_size, self.jitter = data, symbols, seed, batch_size, jitter

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        maker = GlyphMaker(self.data, derive_seed(self.seed, info.id if info else 0), self.jitter)
        while True:
            labels = torch.tensor([maker.rng.getrandbits(1) for _ in range(self.batch_size)])
            images = np.stack([maker.glyph(self.symbols[int(y)]) for y in labels])
            yield torch.from_numpy(images)[:, None], labels
