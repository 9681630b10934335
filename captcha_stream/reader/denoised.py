"""The denoiser stage: a reader that reads what a `Denoiser` makes of each image.

`Denoised` wraps a reader (a `CRNN`, or a `SecondLook` around one) and hands it the denoised image,
so a second look's crops come from it too, and everything downstream (decoding, evaluation,
Recognizer, ONNX) is unchanged. A checkpoint carries it under "denoiser", so the file alone reads.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from ..checkpoint import load_weights
from ..config import Config
from ..errors import CaptchaStreamError
from ..model.denoiser import Denoiser
from . import stages


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
    return stages.add(state, "denoiser", {"model": denoiser_state, "width": width})


def build(reader: nn.Module, saved: dict[str, Any], cfg: Config, path: str) -> nn.Module:
    """`reader` with the denoiser a checkpoint saved (its "denoiser" entry) in front of it."""
    try:
        denoiser = Denoiser(int(saved["width"]))
        denoiser.load_state_dict(saved["model"])
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise CaptchaStreamError(f"{path}: its denoiser cannot be read ({exc.__class__.__name__})") from None
    return Denoised(denoiser.eval(), reader).eval()


def load_denoiser(path: str | os.PathLike[str]) -> Denoiser:
    """A denoiser saved by train-addon, or the one a checkpoint carries, in evaluation mode."""
    saved = load_weights(path, "denoiser weights")
    try:
        saved = saved.get("denoiser", saved)
        model = Denoiser(int(saved["width"]))
        model.load_state_dict(saved["model"])
    except (AttributeError, KeyError, TypeError, ValueError, RuntimeError):
        raise CaptchaStreamError(f"{path}: holds no denoiser weights") from None
    return model.eval()
