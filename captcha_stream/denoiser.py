"""An optional first step of reading: a small CNN that takes the package's noise dots and curve out.

The package draws 30 dots and one thin arc in the text's own colour over every captcha, after the
glyphs. The seeded renderer can draw any captcha with and without them (same draws, the noise left
out), so a network learns to remove them from an endless stream of (noisy, clean) pairs
(docs/denoise.py trains it). `Denoised` wraps a reader, a `CRNN` or a `SecondLook` around one: it
hands the reader the denoised image, so the second look's crops come from it too, and everything
downstream (decoding, evaluate.py, Recognizer) is unchanged.

A checkpoint carries it under "denoiser" (`attach` below), so the checkpoint alone still reads.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .errors import CaptchaStreamError


class Denoiser(nn.Module):
    """A full-resolution residual CNN for grey images: the image minus what it takes to be noise.

    No normalisation layers: a one-pixel stroke-width cue separates 0 from O, and BatchNorm's
    running statistics moved such a cue enough to tip it (models/README.md, session 13).
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


class Denoised(nn.Module):
    """A reader that reads what the denoiser makes of each image."""

    def __init__(self, denoiser: Denoiser, reader: nn.Module) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.reader = reader

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.reader(self.denoiser.clean(images))


def attach(state: dict[str, Any], denoiser_state: dict[str, Any], width: int) -> dict[str, Any]:
    """`state` (a checkpoint's contents) with a denoiser in front of its reader."""
    data = state["config"]["data"]
    if data.get("channels", 1) != 1:
        raise CaptchaStreamError(
            f"denoiser: works on grey images (data.channels=1), the checkpoint reads channels={data['channels']}"
        )
    try:
        Denoiser(width).load_state_dict(denoiser_state)  # fails here, not at reading time
    except RuntimeError:
        raise CaptchaStreamError(f"denoiser: its weights do not fit Denoiser(width={width})") from None
    return {**state, "denoiser": {"model": denoiser_state, "width": width}}


def wrap(reader: nn.Module, state: dict[str, Any], path: str) -> nn.Module:
    """The reader with the checkpoint's denoiser in front of it, or the reader alone if it has none."""
    saved = state.get("denoiser")
    if saved is None:
        return reader
    try:
        denoiser = Denoiser(int(saved["width"]))
        denoiser.load_state_dict(saved["model"])
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise CaptchaStreamError(f"{path}: its denoiser cannot be read ({exc.__class__.__name__})") from None
    return Denoised(denoiser.eval(), reader).eval()
