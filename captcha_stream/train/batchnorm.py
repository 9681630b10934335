"""BatchNorm statistics re-estimated for the weights being read, before a validation.

In training mode BatchNorm normalises with each batch's own statistics and keeps an exponential
average of them (momentum 0.1: about the last ten steps) for evaluation. While the learning rate
is high the weights move faster than that average follows, so a validation read with it measures
weights normalised with statistics of weights that no longer exist: on the CPU recipe at batch 64,
lr 0.003, the same weights read 64.9% with the running statistics and 70.7% with statistics
re-estimated on 1280 fresh captchas, and readings of a few percent appeared between good ones while
the training loss went smoothly down. Late in a run, at low learning rates, the two agree.

The trainer's own model is never changed (its running statistics are part of the state a resumed run
continues from); validation reads a copy whose statistics are measured anew on a fixed set of
training-stream images, and `best.pt` keeps those statistics.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn


def _norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def has_batchnorm(model: nn.Module) -> bool:
    return bool(_norms(model))


def calibration_images(batches: Iterable[Any], n: int) -> torch.Tensor:
    """The first `n` images of `batches` (objects with `.images`), as one uint8 tensor."""
    taken: list[torch.Tensor] = []
    count = 0
    for batch in batches:
        taken.append(batch.images[: n - count])
        count += len(taken[-1])
        if count >= n:
            break
    return torch.cat(taken)


@torch.no_grad()
def with_fresh_statistics(
    model: nn.Module,
    images: torch.Tensor,
    batch_size: int,
    device: torch.device,
    autocast: contextlib.AbstractContextManager | None = None,
    channels_last: bool = False,
) -> nn.Module:
    """A copy of `model` (in eval mode) whose BatchNorm layers hold the mean and variance of their
    inputs over `images`, computed as in training (batches of `batch_size`, under `autocast`)."""
    fresh = copy.deepcopy(model).eval()
    for norm in _norms(fresh):
        norm.reset_running_stats()
        # None: a plain average over all the batches, not an exponential one.
        norm.momentum = None
        # Only the normalisation layers run in training mode: dropout stays off.
        norm.train()
    context = autocast if autocast is not None else contextlib.nullcontext()
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device)
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with context:
            fresh(batch)
    return fresh.eval()
