"""From a checkpoint file to the reader it holds: the CRNN, wrapped in each of its stages."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import torch

from ..checkpoint import inference_weights, load_checkpoint
from ..config import Config, config_from_dict
from ..errors import CaptchaStreamError
from ..model.codec import Codec
from ..model.crnn import CRNN
from . import stages


def model_from_checkpoint(
    path: str | os.PathLike[str], without: Iterable[str] = ()
) -> tuple[torch.nn.Module, Config, dict[str, Any]]:
    """Rebuild the reader and its config from a checkpoint file alone.

    The reader is the checkpoint's `CRNN` wrapped in each stage it holds (reader/stages.py), less
    the stages named in `without` (e.g. `["denoiser"]` to measure what the denoiser adds).
    """
    state = load_checkpoint(path)
    try:
        cfg = config_from_dict(state["config"])
    except CaptchaStreamError as exc:
        raise CaptchaStreamError(f"{path}: config inside the checkpoint is invalid: {exc}") from None
    model = CRNN(cfg.data, cfg.model, Codec(cfg.data.charset).num_classes)
    try:
        model.load_state_dict(inference_weights(state, path))
    except RuntimeError:
        raise CaptchaStreamError(f"{path}: model weights do not match the config stored with them") from None
    model.eval()
    without = list(without)
    if without:
        state = stages.without(state, without, str(path))
    return stages.build(model, state, cfg, str(path)), cfg, state
