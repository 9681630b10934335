"""An optional first step of reading: a small CNN that takes the package's noise dots and curve out.

The package draws 30 dots and one thin arc in the text's own colour over every captcha, after the
glyphs. The seeded renderer can draw any captcha with and without them (same draws, the noise left
out), so a network learns to remove them from an endless stream of (noisy, clean) pairs
(captcha_stream/reader/denoised.py puts it in front of a reader).
"""

from __future__ import annotations

import torch
from torch import nn


class Denoiser(nn.Module):
    """A full-resolution residual CNN for grey images: the image minus what it takes to be noise.

    No normalisation layers: a one-pixel stroke-width cue separates 0 from O, and BatchNorm's
    running statistics moved such a cue enough to tip it (docs/history.md).
    Dilations 1-2-4-8-1 give a 35-pixel receptive field, enough to see that a one-pixel arc or a
    three-pixel dot is not part of a glyph's stroke.
    """

    def __init__(self, width: int = 24) -> None:
        super().__init__()
        self.width = width
        layers: list[nn.Module] = [nn.Conv2d(1, width, 3, padding=1), nn.ReLU()]
        for dilation in (1, 2, 4, 8, 1):
            layers += [nn.Conv2d(width, width, 3, padding=dilation, dilation=dilation), nn.ReLU()]
        layers.append(nn.Conv2d(width, 1, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 or [0, 1] float (N, 1, H, W) -> [0, 1] float of the same shape."""
        if x.dtype == torch.uint8:
            x = x.float() / 255
        return (x + self.body(x)).clamp(0, 1)

    def clean(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 1, H, W) -> denoised uint8: the bytes a reader is given, as if read from a file."""
        return self(images).mul(255).round().to(torch.uint8)
