"""Put separately trained stages (train-addon's files) into a reader's checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

from ..checkpoint import load_checkpoint, save_checkpoint
from ..reader import denoised, second_look

# Where classic36's reader puts its CTC peaks: 6 px left of a glyph's middle, and the last glyph's
# middle 41 px right of the second-to-last peak (measured on 1000 captchas; docs/history.md).
PEAK_TO_CENTRE = 6
LAST_GAP = 41


def attach_stages(
    reader: str | os.PathLike[str],
    out: str | os.PathLike[str],
    denoiser: str | os.PathLike[str] | None = None,
    classifier: str | os.PathLike[str] | None = None,
    peak_to_centre: int = PEAK_TO_CENTRE,
    last_gap: int | None = LAST_GAP,
) -> Path:
    """`reader`'s checkpoint with a second look (`classifier`) and/or a `denoiser` in it, written to `out`.

    Either may be a train-addon file or a checkpoint that carries that stage.
    """
    state = load_checkpoint(reader)
    if classifier is not None:
        model, symbols = second_look.load_classifier(classifier)
        state = second_look.attach(state, model.state_dict(), symbols, peak_to_centre, last_gap)
    if denoiser is not None:
        model = denoised.load_denoiser(denoiser)
        state = denoised.attach(state, model.state_dict(), model.width)
    return save_checkpoint(state, out, keep_previous=False)
