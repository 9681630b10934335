"""Input files a user names: a regular file of a size that makes sense, or one line saying why not.

A FIFO or a device would block a reader forever or feed it without end, and a file far larger than
its kind ever is (a 3 GB "labels.csv") would be read into memory before any check could look at it.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import CaptchaStreamError


def check_input(path: str | os.PathLike[str], what: str, max_bytes: int) -> Path:
    """`path` as a Path if it is a regular file of at most `max_bytes`; else one line naming it."""
    path = Path(path)
    if path.is_dir():
        raise CaptchaStreamError(f"{path}: is a directory, expected a {what}")
    if not path.exists():
        raise CaptchaStreamError(f"{path}: {what} not found")
    if not path.is_file():
        raise CaptchaStreamError(f"{path}: is not a regular file, expected a {what}")
    size = path.stat().st_size
    if size > max_bytes:
        raise CaptchaStreamError(
            f"{path}: {size / 1e6:.0f} MB, too large for a {what} (at most {max_bytes // 10**6} MB)"
        )
    return path
