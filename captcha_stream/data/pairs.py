"""(noisy, clean) pairs: the same captcha drawn with and without the package's noise dots and curve.

The noise is drawn after every glyph, from the end of each captcha's random draws, so a renderer
that leaves it out (`Renderer(noise=False)`) makes exactly the same labels, glyphs, places and
colours from the same seed. A denoiser learns from an endless stream of such pairs.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..config import DataConfig
from ..errors import CaptchaStreamError
from .render import Renderer
from .seeding import derive_seed


def render_pair(plain: Renderer, quiet: Renderer, seed: int, index: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Captcha `index` of the sequence `seed`, grey, with and without its noise."""
    noisy, label = plain.sample_at(seed, index)
    clean, same = quiet.sample_at(seed, index)
    if same != label:  # the quiet renderer must make exactly the same draws before the noise
        raise CaptchaStreamError(f"pair {seed}/{index}: labels differ ({label!r}, {same!r})")
    return np.asarray(noisy.convert("L")), np.asarray(clean.convert("L")), label


class PairStream(IterableDataset):
    """Batches of (noisy, clean) uint8 crops (N, 1, height, `crop`) from new captchas, endlessly."""

    def __init__(self, data: DataConfig, seed: int, batch_size: int, crop: int) -> None:
        if not 1 <= crop <= data.width:
            raise CaptchaStreamError(f"addon.crop: must be 1..data.width ({data.width}), got {crop}")
        self.data, self.seed, self.batch_size, self.crop = data, seed, batch_size, crop

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        seed = derive_seed(self.seed, info.id if info else 0)
        plain, quiet = Renderer(self.data), Renderer(self.data, noise=False)
        rng = np.random.default_rng(seed)
        index = 0
        while True:
            noisy, clean = [], []
            for _ in range(self.batch_size):
                a, b, _ = render_pair(plain, quiet, seed, index)
                index += 1
                x = int(rng.integers(0, a.shape[1] - self.crop + 1))
                noisy.append(a[:, x : x + self.crop])
                clean.append(b[:, x : x + self.crop])
            yield torch.from_numpy(np.stack(noisy))[:, None], torch.from_numpy(np.stack(clean))[:, None]


def held_out_pairs(data: DataConfig, seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` whole (noisy, clean) captchas of the sequence `seed`, as uint8 (n, 1, H, W) each."""
    plain, quiet = Renderer(data), Renderer(data, noise=False)
    pairs = [render_pair(plain, quiet, seed, i)[:2] for i in range(n)]
    noisy, clean = (torch.from_numpy(np.stack(side))[:, None] for side in zip(*pairs))
    return noisy, clean
