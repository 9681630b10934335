"""The readers that ship inside the package, by name, and how a command picks its checkpoint.

The default is always the shipped `captcha62`: a run of one's own is read only when named
(`--checkpoint runs/cpu/best.pt`), so a fresh, unfinished run never takes its place unnoticed.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import CaptchaStreamError

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
# name -> (file, what it reads, (width, height) it reads)
PRETRAINED = {
    "captcha62": ("captcha62.pt", "280x90, 62 symbols (0-9A-Za-z), 5-8 characters", (280, 90)),
    "captcha62-160x60": ("captcha62-160x60.pt", "160x60 (the package's default size), 62 symbols, 5-8", (160, 60)),
    "classic36": ("classic36.pt", "170x80, 36 symbols (0-9A-Z), 4 characters", (170, 80)),
}
DEFAULT = "captcha62"


def pretrained_path(name: str) -> Path:
    """The bundled checkpoint of a shipped reader; an unknown name is one line listing the known ones."""
    if name not in PRETRAINED:
        raise CaptchaStreamError(f"no shipped reader {name!r} (shipped: {', '.join(PRETRAINED)})")
    path = WEIGHTS / PRETRAINED[name][0]
    if not path.is_file():
        raise CaptchaStreamError(f"{path}: the shipped reader {name!r} is missing from this installation")
    return path


def resolve_checkpoint(given: str | os.PathLike[str] | None) -> Path:
    """A checkpoint path as given, a shipped reader's name, or (None) the shipped default."""
    if given is None:
        return pretrained_path(DEFAULT)
    if str(given) in PRETRAINED and not Path(given).exists():
        return pretrained_path(str(given))
    path = Path(given)
    if path.exists() and not path.is_file() and not path.is_dir():
        # A FIFO or a device would block whatever opens it first.
        raise CaptchaStreamError(f"{path}: is not a regular file, expected a checkpoint file")
    return path


def describe(path: Path) -> str:
    """How a command names the checkpoint it uses: the shipped reader's name, or the path."""
    for name, (file, _, _) in PRETRAINED.items():
        if path.resolve() == (WEIGHTS / file).resolve():
            return f"{name} ({path})"
    return str(path)


def fitting(width: int, height: int, tolerance: float = 0.25) -> str | None:
    """The shipped reader made for `width` x `height` images, else the one nearest in aspect ratio
    if one is within `tolerance`."""
    for name, (_, _, size) in PRETRAINED.items():
        if size == (width, height):
            return name
    best = min(PRETRAINED, key=lambda n: abs(PRETRAINED[n][2][0] / PRETRAINED[n][2][1] / (width / height) - 1))
    w, h = PRETRAINED[best][2]
    return best if abs(w / h / (width / height) - 1) <= tolerance else None
