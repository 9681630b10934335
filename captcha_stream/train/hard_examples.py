"""Online hard-example mining: train on the captchas of a rendered pool the model reads worst.

A reader at 99.5% learns little from most captchas it is shown: they cost a forward and a
backward pass and hardly move the weights. `train.hard_pool: K` renders K times the batch each
step, scores the pool with one forward pass without gradients (about 40% of a training pass per
image on a CPU) and trains on the batch with the highest CTC loss, so the steps go to the tail
of noisy, overlapping or ambiguous captchas (Shrivastava et al. 2016, "Training Region-based
Object Detectors with Online Hard Example Mining"; Jiang et al. 2019, "Accelerating Deep
Learning by Focusing on the Biggest Losers").
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..data.stream import Batch
from ..model.codec import sequence_losses


def sample_losses(
    model: nn.Module, batch: Batch, device: torch.device, autocast: contextlib.AbstractContextManager
) -> torch.Tensor:
    """Each captcha's CTC loss per character (N,), as `reduction="mean"` weighs it, read in eval mode.

    Eval mode, so dropout draws nothing from the RNG (a resumed run still matches) and batch
    norm neither uses nor updates the pool's statistics.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast:
            log_probs = model(batch.images.to(device, non_blocking=True))
        lengths = batch.target_lengths.to(device)
        losses = sequence_losses(log_probs, batch.targets.to(device), lengths)
    finally:
        model.train(was_training)
    return (losses / lengths.clamp(min=1)).cpu()


def subset(batch: Batch, keep: torch.Tensor) -> Batch:
    """The captchas `keep` (indices into `batch`) of a batch, in that order, targets re-cut to match."""
    ends = batch.target_lengths.cumsum(0)
    starts = ends - batch.target_lengths
    order = keep.tolist()
    targets = [batch.targets[starts[i] : ends[i]] for i in order]
    return Batch(
        batch.images[keep],
        torch.cat(targets) if targets else batch.targets[:0],
        batch.target_lengths[keep],
        [batch.labels[i] for i in order],
    )


def hardest(
    model: nn.Module, pool: Batch, keep: int, device: torch.device, autocast: contextlib.AbstractContextManager
) -> Batch:
    """The `keep` captchas of `pool` with the highest loss (a non-finite loss counts as the highest)."""
    losses = sample_losses(model, pool, device, autocast)
    losses = torch.nan_to_num(losses, nan=float("inf"))
    # Sorted again by position so the batch keeps the stream's order (ties: the stream decides).
    chosen = losses.topk(min(keep, len(losses))).indices.sort().values
    return subset(pool, chosen)
