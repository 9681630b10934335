"""Checkpoints: plain dicts of tensors and data, written atomically, loaded without pickle code.

A checkpoint holds everything to rebuild and resume: model, optimizer, scheduler and
scaler state, the step, RNG state, the full config and the charset. It is written to a
temporary file, fsynced, and renamed over the old one; the previous checkpoint is kept
beside it (`NAME.prev.pt`) so a damaged file still leaves a good one to resume from.
Loading uses `weights_only=True`: a checkpoint cannot run code.
"""

from __future__ import annotations

import os
import pickle
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch

from .atomic import replacing
from .errors import CaptchaStreamError
from .files import check_input

FORMAT = 1


def previous_path(path: Path) -> Path:
    return path.with_name(path.stem + ".prev" + path.suffix)


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str], keep_previous: bool = True) -> Path:
    path = Path(path)
    try:
        # One rename at the end of the block: at every instant `path` is the old checkpoint or the new one.
        with replacing(path) as tmp:
            with open(tmp, "wb") as fh:
                torch.save({"format": FORMAT, **state}, fh)
                fh.flush()
                os.fsync(fh.fileno())
            if keep_previous and path.exists():
                _keep_copy(path, previous_path(path))
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise CaptchaStreamError(f"{path}: cannot write checkpoint: {exc.strerror or exc}") from None
    except RuntimeError as exc:
        # torch.save reports a short write (a full disk) as RuntimeError("... unexpected pos ...").
        first = str(exc).strip().splitlines()[0][:80] if str(exc).strip() else "RuntimeError"
        raise CaptchaStreamError(f"{path}: cannot write checkpoint (disk full?): {first}") from None
    return path


def _keep_copy(path: Path, prev: Path) -> None:
    """Make `prev` a copy of `path` without ever removing `path` (a kill between two renames
    would otherwise leave no `path` at all): a hard link, or a byte copy where links fail."""
    staging = prev.with_name(f".{prev.name}.tmp-{os.getpid()}")
    staging.unlink(missing_ok=True)
    try:
        try:
            os.link(path, staging)
        except OSError:
            shutil.copyfile(path, staging)
        os.replace(staging, prev)
    finally:
        staging.unlink(missing_ok=True)


# Far past any reader's size (the largest here is tens of MB), short of reading a disk image.
MAX_CHECKPOINT_BYTES = 10**10


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load and sanity-check a checkpoint; every failure is one line naming the file."""
    # A FIFO or a device would block torch.load, or feed it forever.
    path = check_input(path, "checkpoint", MAX_CHECKPOINT_BYTES)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise CaptchaStreamError(f"{path}: cannot read checkpoint: {exc.strerror or exc}") from None
    except pickle.UnpicklingError as exc:
        if "unsupported global" in str(exc).lower() or _names_code(path):
            raise CaptchaStreamError(f"{path}: refused: holds code or objects that are not plain data") from None
        raise CaptchaStreamError(f"{path}: not a readable checkpoint (truncated or corrupted?)") from None
    except Exception as exc:  # noqa: BLE001 - torch.load fails on damaged bytes in many ways (IndexError, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise CaptchaStreamError(
            f"{path}: not a readable checkpoint (truncated or corrupted?): {first[:100]}"
        ) from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise CaptchaStreamError(f"{path}: not a captcha-stream checkpoint (no model/config inside)")
    if state.get("format") != FORMAT:
        raise CaptchaStreamError(f"{path}: checkpoint format {state.get('format')!r} is not supported (want {FORMAT})")
    return state


def _names_code(path: Path) -> bool:
    """Whether a plain pickle file imports a function or class from outside torch and the standard
    containers (what a pickle needs to run code); read opcode by opcode, nothing is executed."""
    import pickletools

    try:
        with open(path, "rb") as fh:
            data = fh.read(64 * 1024 * 1024)
        strings: list[str] = []
        for op, arg, _ in pickletools.genops(data):
            if isinstance(arg, str):
                strings.append(arg)
            name = arg if op.name == "GLOBAL" else " ".join(strings[-2:]) if op.name == "STACK_GLOBAL" else None
            if name and name.split()[0].split(".")[0] not in ("torch", "collections", "builtins", "_codecs"):
                return True
    except Exception:  # noqa: BLE001 - damaged bytes end the scan; they are reported as damaged
        return False
    return False


def load_weights(path: str | os.PathLike[str], what: str = "weights") -> Any:
    """A file of weights (not a whole checkpoint), loaded without running code; failures are one line
    (`what` names what the file should hold)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, IsADirectoryError):
        raise CaptchaStreamError(f"{path}: no such file") from None
    except Exception:  # noqa: BLE001 - torch.load fails on foreign bytes in many ways
        raise CaptchaStreamError(f"{path}: holds no {what}") from None


def load_for_resume(path: str | os.PathLike[str], log: Any = print, set_aside: bool = False) -> dict[str, Any]:
    """Load `path`, falling back to its kept previous version when it is damaged. `set_aside` (the run
    that goes on from it) renames the damaged file to NAME.damaged: the next save keeps a copy of
    `path` as the previous version, and must never copy a file that failed to load over the good one."""
    path = Path(path)
    try:
        return load_checkpoint(path)
    except CaptchaStreamError as exc:
        prev = previous_path(path)
        if not prev.exists():
            raise
        state = load_checkpoint(prev)
        aside = path.with_name(path.name + ".damaged")
        moved = ""
        if set_aside and path.exists():
            os.replace(path, aside)
            moved = f" (the damaged file is now {aside.name})"
        log(f"warning: {exc}; resuming from the previous checkpoint {prev}{moved}")
        return state


def inference_weights(state: dict[str, Any], path: str | os.PathLike[str] = "checkpoint") -> dict[str, Any]:
    """The weights a checkpoint is read with: what it says in "read_with" (best.pt names the weights
    that won on validation), else its weight average when the run kept one, else the trained weights."""
    read_with = state.get("read_with", "ema" if "ema" in state else "model")
    if read_with not in state:
        raise CaptchaStreamError(f"{path}: says read_with={read_with!r} but holds no such weights")
    return state[read_with]
