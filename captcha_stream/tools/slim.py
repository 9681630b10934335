"""A shippable copy of a checkpoint: only what reading needs, optionally less some reader stages."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..checkpoint import inference_weights, load_checkpoint, save_checkpoint
from ..config import config_from_dict, merge
from ..reader import stages


def slim_checkpoint(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    overrides: dict[str, Any] | None = None,
    without: Iterable[str] = (),
) -> Path:
    """A copy of `src` with only what reading captchas needs (no optimizer): for shipping.

    `overrides` (dotted keys) change the copy's config, checked as any config is.
    `without` names reader stages to leave out (reader/stages.py); all of them, and the copy is
    the CRNN alone.
    """
    state = stages.without(load_checkpoint(src), without, str(src))
    names = ["config", "charset", "step", "best_accuracy", "elapsed", *stages.names_in(state)]
    keep = {k: state[k] for k in names if k in state}
    if overrides:
        keep["config"] = merge(state["config"], overrides)
        config_from_dict(keep["config"])
    keep["model"] = inference_weights(state, src)
    return save_checkpoint(keep, dst, keep_previous=False)
