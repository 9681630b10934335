"""A small classifier of one glyph crop between two symbols (classic36's 0 and O): the second look's network."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

CROP_W, CROP_H = 48, 72  # holds the widest classic36 glyph (font size 56) after rotation, warp and squeeze


def _conv(cin: int, cout: int) -> nn.Sequential:
    # GroupNorm, not BatchNorm: the answer hangs on a pixel of stroke width, and BatchNorm's running
    # statistics, lagging a few steps behind the weights, shifted the held-out logits enough to read
    # 44% of the Os as 0 at a training loss of 0.04 (first attempt; in a 400-step check, eval mode
    # read 62-92% where the same weights with batch statistics read 93-97%).
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.GroupNorm(8, cout), nn.ReLU(inplace=True))


def glyph_classifier() -> nn.Sequential:
    """(N, 1, CROP_H, CROP_W) float crops in [-1, 1] -> logits for the two symbols."""
    # Full resolution in the first stage, like the captcha readers: stroke widths are a pixel apart.
    return nn.Sequential(
        _conv(1, 16),
        _conv(16, 16),
        nn.MaxPool2d(2),
        _conv(16, 32),
        nn.MaxPool2d(2),
        _conv(32, 64),
        _conv(64, 64),
        nn.MaxPool2d(2),
        _conv(64, 128),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(128, 2),
    )


def normalize(crops: torch.Tensor) -> torch.Tensor:
    return crops.float().div(127.5).sub(1.0)


def crop(image: np.ndarray, centre: int) -> np.ndarray:
    """A CROP_H x CROP_W window of a grey (H, W) image centred on column `centre`, edges repeated."""
    height = image.shape[0]
    padded = np.pad(image, ((0, 0), (CROP_W, CROP_W)), mode="edge")
    left, top = centre + CROP_W - CROP_W // 2, (height - CROP_H) // 2
    return padded[top : top + CROP_H, left : left + CROP_W].astype(np.uint8)
