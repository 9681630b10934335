"""Test-time shifts: read each captcha as it is and moved a few pixels left and right (`eval.tta`),
and answer with the reading the views agree on best.

Views can align their frames differently, so their outputs are not mixed frame by frame (that
lost accuracy in docs/ablations.md). Instead every view's answer is a candidate, and each
candidate is scored by its CTC log-likelihood summed over all views: an answer one view reads
confidently and the others find plausible beats one that a single view gets from a glitch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..model.codec import Codec, sequence_losses


def shifts_for(offsets: Sequence[int]) -> list[int]:
    """The horizontal moves read for `eval.tta` offsets: [2, 4] -> [0, -2, 2, -4, 4]; [] -> [0]."""
    return [0] + [d for pixels in offsets for d in (-pixels, pixels)]


def shift_images(images: torch.Tensor, dx: int) -> torch.Tensor:
    """uint8 images (N, C, H, W) moved dx pixels right (left when negative), edge columns repeated:
    the background continues, and no border the model never saw in training appears."""
    if dx == 0:
        return images
    width = images.shape[-1]
    if abs(dx) >= width:
        raise ValueError(f"shift {dx} is not smaller than the image width {width}")
    if dx > 0:
        edge = images[..., :1].expand(*images.shape[:-1], dx)
        return torch.cat([edge, images[..., : width - dx]], dim=-1)
    edge = images[..., -1:].expand(*images.shape[:-1], -dx)
    return torch.cat([images[..., -dx:], edge], dim=-1)


def agree(
    views: Sequence[torch.Tensor | np.ndarray],
    readings: Sequence[Sequence[tuple[str, float]]],
    codec: Codec,
    lengths: tuple[int, int] | None = None,
) -> list[tuple[str, float]]:
    """The best-agreed (text, confidence) per image.

    `views` are the model outputs (T, N, C) of each view, `readings` each view's decoded answers.
    Confidence is the geometric mean over views of the answer's probability. With `lengths`,
    answers of other lengths lose to any candidate inside it (beam search's length prior).
    """
    if len(views) == 1:
        return list(readings[0])
    n = len(readings[0])
    candidates = sorted({(i, text) for reading in readings for i, (text, _) in enumerate(reading) if text})
    best: dict[int, tuple[bool, float, str]] = {}
    if candidates:
        index = torch.tensor([i for i, _ in candidates])
        targets = [codec.encode(text) for _, text in candidates]
        flat = torch.tensor([s for t in targets for s in t])
        target_lengths = torch.tensor([len(t) for t in targets])
        score = torch.zeros(len(candidates), dtype=torch.float64)
        for view in views:
            # An answer no path of this view can spell (too long) gets an infinite loss: it loses.
            score -= sequence_losses(torch.as_tensor(view)[:, index], flat, target_lengths).double()
        for (i, text), s in zip(candidates, (score / len(views)).tolist()):
            fits = lengths is None or lengths[0] <= len(text) <= lengths[1]
            key = (fits, s, text)
            if i not in best or key[:2] > best[i][:2]:
                best[i] = key
    return [(best[i][2], float(np.exp(best[i][1]))) if i in best else ("", 0.0) for i in range(n)]


def read(
    model: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    codec: Codec,
    beam: int = 0,
    lengths: tuple[int, int] | None = None,
    offsets: Sequence[int] = (),
) -> list[tuple[str, float]]:
    """(text, confidence) for each uint8 image of one batch: the reading of evaluation and prediction alike.

    Each shifted view (`offsets`; none: the image alone) is read by `model` (uint8 images to
    log-probabilities), decoded greedily or by beam search, and the views' answers agreed on.
    """
    views = [model(shift_images(images, dx)).cpu() for dx in shifts_for(offsets)]
    return agree(views, [codec.decode(v, beam, lengths) for v in views], codec, lengths)
