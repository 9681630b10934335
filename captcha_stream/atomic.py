"""Files that are either the old version or the new one, never half written."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from .errors import CaptchaStreamError


@contextlib.contextmanager
def replacing(out: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside `out` to write to; renamed onto `out` when the block ends normally.

    Beside, not in /tmp: a rename is atomic only within one filesystem. If the block raises, `out`
    is untouched and the temporary file is removed. The name starts with a dot and holds the pid,
    so a listing of the folder skips it and two processes cannot collide; a kill -9 can leave one
    behind (train.prepare_run_dir sweeps a run folder's).
    """
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def check_writable(out: str | os.PathLike[str], flag: str) -> Path:
    """Refuse, before any work, an output path whose file could not be written at the end: a
    directory, a missing folder, a folder that does not take files (read-only, or root on a
    read-only mount: tried, not asked, since access checks pass for root)."""
    out = Path(out)
    if out.is_dir():
        raise CaptchaStreamError(f"{flag}: {out} is a directory, expected a file name")
    if out.exists() and not out.is_file():
        # A FIFO or a device: renaming a finished file over it would not write what was asked.
        raise CaptchaStreamError(f"{flag}: {out} is not a regular file")
    folder = out.resolve().parent
    if not folder.is_dir():
        raise CaptchaStreamError(f"{flag}: folder {out.parent} does not exist (for {out})")
    refused = cannot_write_in(folder)
    if refused:
        raise CaptchaStreamError(f"{flag}: cannot write {out} in {out.parent} ({refused})")
    return out


def cannot_write_in(folder: Path) -> str | None:
    """Why a file cannot be written in `folder`, or None. Tried, not asked: root passes os.access
    checks on a read-only filesystem."""
    probe = folder / f".write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return exc.strerror or str(exc)
    return None
