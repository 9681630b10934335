"""Which device a run or a reading uses, and how many cores render for it."""

from __future__ import annotations

import os

import torch

from .config import check_device_name
from .errors import CaptchaStreamError


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def pick_device(name: str, where: str = "train.device") -> torch.device:
    """The torch device `name` asks for; a name that is not a device, or one this machine lacks, is
    one line naming `where` it came from (a config key or a command's --device)."""
    check_device_name(name, where)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CaptchaStreamError(f"{where}: {name!r} asked for, but no CUDA device is available")
    if name.startswith("mps") and not _mps_available():
        raise CaptchaStreamError(f"{where}: {name!r} asked for, but MPS is not available")
    device = torch.device(name)
    if device.type == "cuda" and device.index is not None:
        count = torch.cuda.device_count()
        if device.index >= count:
            # Otherwise the first tensor moved there fails deep inside torch.
            raise CaptchaStreamError(
                f"{where}: {name!r} asked for, but there is no CUDA device {device.index} ({count} available)"
            )
    return device


def default_workers() -> int:
    # Leave a core for the training process itself.
    return max(1, min(8, (os.cpu_count() or 2) - 1))
