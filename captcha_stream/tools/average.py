"""One reader whose weights are the mean of several checkpoints' weights."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from ..checkpoint import inference_weights, load_checkpoint, save_checkpoint
from ..errors import CaptchaStreamError
from ..reader import stages


def average_checkpoints(srcs: Sequence[str | os.PathLike[str]], dst: str | os.PathLike[str]) -> Path:
    """A slim checkpoint whose weights are the mean of several checkpoints' inference weights.

    Weights only average into a working model when the runs share a starting point (phases continued
    from one checkpoint with `train.init_from`, different seeds or learning rates): their minima lie in
    one basin, and the mean often reads better than each. Read the result on validation before using it.
    """
    if len(srcs) < 2:
        raise CaptchaStreamError("average: name at least two checkpoints")
    states = [load_checkpoint(src) for src in srcs]
    for src, state in zip(srcs, states):
        extra = stages.names_in(state)
        if extra:
            # A stage was fitted to one reader's outputs (a second look to its CTC peaks): it does
            # not follow the average, so averaging refuses it rather than dropping it silently.
            raise CaptchaStreamError(
                f"{src}: carries a {extra[0]} stage, which does not average; "
                f"average the readers alone (python -m captcha_stream slim {src} READER.pt --without {extra[0]})"
            )
    first = states[0]
    for src, state in zip(srcs[1:], states[1:]):
        for section in ("data", "model"):
            for key, value in first["config"].get(section, {}).items():
                if state["config"].get(section, {}).get(key) != value:
                    raise CaptchaStreamError(
                        f"{src}: {section}.{key}={state['config'].get(section, {}).get(key)!r}, but {srcs[0]} has "
                        f"{value!r}: only checkpoints of one model and data average"
                    )
    weights = [inference_weights(state, src) for src, state in zip(srcs, states)]
    mean = {}
    for name, tensor in weights[0].items():
        if tensor.is_floating_point():
            mean[name] = torch.stack([w[name].float() for w in weights]).mean(0).to(tensor.dtype)
        else:
            mean[name] = tensor  # batch-norm step counters: not weights
    keep = {k: first[k] for k in ("config", "charset") if k in first}
    keep["step"] = max(int(state.get("step", 0)) for state in states)
    keep["averaged_from"] = [f"{src} (step {state.get('step', '?')})" for src, state in zip(srcs, states)]
    keep["model"] = mean
    return save_checkpoint(keep, dst, keep_previous=False)
