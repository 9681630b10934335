"""Grow a trained CRNN into a wider one that computes exactly the same function.

A continuation from a finished run can only add capacity by starting over, unless the new
units start silent: every new channel or hidden unit gets fresh random incoming weights, and
every weight *from* a new unit *into* an old one is zero. The old units then see exactly the
inputs they saw before, the head reads only old units, and the widened model's output equals
the original's (to float rounding). Training then grows the zero weights (their gradient is
the new units' activity, which is not zero), so the extra capacity comes into use gradually
instead of disturbing a model that already reads 99% of captchas.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import inference_weights, load_checkpoint, save_checkpoint
from ..config import MODEL_DATA_KEYS, Config, config_from_dict, merge
from ..errors import CaptchaStreamError
from ..model.codec import Codec
from ..model.crnn import CRNN
from ..reader import stages


def check_widening(old: Config, new: Config) -> None:
    """Only widths may grow; depth, pooling, recurrent type and the data must stay."""
    om, nm = old.model, new.model
    for key in ("width_pools", "stem_stride", "stem_pool", "pool_first", "rnn", "rnn_layers", "bidirectional"):
        if getattr(om, key) != getattr(nm, key):
            raise CaptchaStreamError(f"model.{key}: widening keeps it ({getattr(om, key)!r}), got {getattr(nm, key)!r}")
    if len(om.cnn_channels) != len(nm.cnn_channels):
        raise CaptchaStreamError(
            f"model.cnn_channels: widening keeps the number of stages ({len(om.cnn_channels)}), got {nm.cnn_channels}"
        )
    for i, (a, b) in enumerate(zip(om.cnn_channels, nm.cnn_channels)):
        if b < a:
            raise CaptchaStreamError(f"model.cnn_channels[{i}]: cannot shrink {a} to {b}")
    if nm.rnn_hidden < om.rnn_hidden:
        raise CaptchaStreamError(f"model.rnn_hidden: cannot shrink {om.rnn_hidden} to {nm.rnn_hidden}")
    for key in MODEL_DATA_KEYS:
        if getattr(old.data, key) != getattr(new.data, key):
            raise CaptchaStreamError(f"data.{key}: widening keeps the data, got {getattr(new.data, key)!r}")


def _block_index(old_size: int, new_size: int, blocks: int) -> torch.Tensor:
    """Where the old entries sit in a tensor made of `blocks` stacked blocks that each grew from
    `old_size` to `new_size`: LSTM/GRU gates (stacked rows) and bidirectional outputs (concatenated)."""
    return torch.cat([torch.arange(old_size) + b * new_size for b in range(blocks)])


def _embed(new: torch.Tensor, old: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor | None) -> torch.Tensor:
    """Copy `old` into `new` at (rows, cols); zero what the old rows read from new columns."""
    out = new.clone()
    if cols is None:
        out[rows] = old
        return out
    out[rows] = 0.0
    out[rows[:, None], cols[None, :]] = old
    return out


def widen_state(old_state: dict[str, Any], old: Config, new: Config, num_classes: int, seed: int = 0) -> dict[str, Any]:
    """The state dict of `CRNN(new)` that computes what `old_state` (a `CRNN(old)`) computes.

    New units get PyTorch's default initialisation from a generator seeded with `seed`, so the
    result is reproducible.
    """
    check_widening(old, new)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        wide = CRNN(new.data, new.model, num_classes)
    fresh = wide.state_dict()
    om, nm = old.model, new.model
    directions = 2 if om.bidirectional else 1
    gates = 4 if om.rnn == "lstm" else 3
    height = wide.feature_height
    # The projection reads channel-major (channel, row) features: old channel c, row y was c*height+y.
    project_in = (torch.arange(om.cnn_channels[-1])[:, None] * height + torch.arange(height)[None, :]).reshape(-1)
    hidden_rows = torch.arange(om.rnn_hidden)
    rnn_out = _block_index(om.rnn_hidden, nm.rnn_hidden, directions)
    gate_rows = _block_index(om.rnn_hidden, nm.rnn_hidden, gates)

    out: dict[str, Any] = {}
    in_channels = torch.arange(old.data.channels)
    for name, tensor in fresh.items():
        if name not in old_state:
            raise CaptchaStreamError(f"widen: the source checkpoint has no {name}")
        src = old_state[name]
        if name.startswith("features."):
            if name.endswith("num_batches_tracked"):
                out[name] = src.clone()
            elif tensor.dim() == 4:  # a convolution: (out, in, k, k)
                rows = torch.arange(src.shape[0])
                out[name] = _embed(tensor, src, rows, in_channels)
                in_channels = rows
            else:  # batch-norm weight, bias, running statistics of the last convolution
                out[name] = _embed(tensor, src, in_channels, None)
        elif name == "project.weight":
            out[name] = _embed(tensor, src, hidden_rows, project_in)
        elif name == "project.bias":
            out[name] = _embed(tensor, src, hidden_rows, None)
        elif name.startswith("rnn.weight_ih"):
            layer_input = hidden_rows if name.startswith("rnn.weight_ih_l0") else rnn_out
            out[name] = _embed(tensor, src, gate_rows, layer_input)
        elif name.startswith("rnn.weight_hh"):
            out[name] = _embed(tensor, src, gate_rows, hidden_rows)
        elif name.startswith("rnn.bias"):
            out[name] = _embed(tensor, src, gate_rows, None)
        elif name == "head.weight":
            out[name] = _embed(tensor, src, torch.arange(src.shape[0]), rnn_out)
        elif name == "head.bias":
            out[name] = src.clone()
        else:
            raise CaptchaStreamError(f"widen: does not know how to widen {name}")
    return out


WIDTH_KEYS = ("model.cnn_channels", "model.rnn_hidden")


def widen_checkpoint(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], overrides: dict[str, Any], seed: int = 0
) -> Path:
    """A slim checkpoint of the wider model (`overrides`: new `model.cnn_channels` and/or
    `model.rnn_hidden`) that reads exactly as `src` does; continue it with `train.init_from`."""
    for key in overrides:
        if key not in WIDTH_KEYS:
            raise CaptchaStreamError(f"--set {key}: widen changes only {' and '.join(WIDTH_KEYS)}")
    if not overrides:
        raise CaptchaStreamError(f"widen: say how wide with --set ({' and/or '.join(WIDTH_KEYS)})")
    state = load_checkpoint(src)
    old = config_from_dict(state["config"])
    new_dict = merge(state["config"], overrides)
    new = config_from_dict(new_dict)
    weights = widen_state(inference_weights(state, src), old, new, Codec(old.data.charset).num_classes, seed)
    # The stages stay: the widened CRNN reads exactly as before, so what was fitted to its outputs still fits.
    keep = {k: state[k] for k in ("charset", "step", *stages.names_in(state)) if k in state}
    keep["config"] = new_dict
    keep["widened_from"] = f"{src} (step {state.get('step', '?')})"
    keep["model"] = weights
    return save_checkpoint(keep, dst, keep_previous=False)
