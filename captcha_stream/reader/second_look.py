"""A second look at two symbols a reader confuses: classic36's 0 and O.

The package stretches every glyph into its font's full box, so 0 and O differ by about a pixel of
stroke width (docs/ablations.md). A small classifier trained on crops of just that glyph, cut out of
whole captchas (experiments/zero_o_ceiling.py --context), is a second opinion from a network that looks at
nothing else. `SecondLook` wraps a reader: where the reader writes one of the two symbols, it crops
the image around the reader's CTC peak for that character, and re-divides the probability the reader
gives the pair between them by the sum of both networks' log-odds. Everything downstream (greedy
decoding, confidences, evaluate.py, Recognizer) reads the adjusted log-probabilities unchanged.

A checkpoint carries it under "second_look" (`attach` below), so the checkpoint alone still reads.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from ..checkpoint import load_weights
from ..config import Config
from ..errors import CaptchaStreamError
from ..model.codec import BLANK, Codec
from ..model.glyph_classifier import CROP_H, crop, glyph_classifier, normalize
from . import stages


class Character(NamedTuple):
    """One character of a greedy CTC reading: its symbol id, its frames [start, stop) and its surest frame."""

    symbol: int
    start: int
    stop: int
    peak: int


def characters(log_probs: np.ndarray) -> list[Character]:
    """The greedy CTC reading of one image's (T, C) log-probabilities, character by character.

    A character is a run of frames whose most probable id is the same symbol (a blank or another
    symbol ends it); its peak is the frame where that symbol is most probable.
    """
    out: list[Character] = []
    prev = BLANK
    for t, i in enumerate(log_probs.argmax(axis=1).tolist()):
        if i != BLANK and i != prev:
            out.append(Character(i, t, t + 1, t))
        elif i != BLANK:
            last = out[-1]
            peak = t if log_probs[t, i] > log_probs[last.peak, i] else last.peak
            out[-1] = Character(i, last.start, t + 1, peak)
        prev = i
    return out


class Look(NamedTuple):
    """One character the second look examined, with both opinions as log-odds of the first symbol over the second."""

    image: int  # its image in the batch
    index: int  # its place in the reading
    char: Character
    reader_odds: float  # at the reader's peak
    classifier_odds: float


def frame_x(frame: int, frames: int, width: int) -> float:
    """The image column at the middle of CTC frame `frame`."""
    return (frame + 0.5) * width / frames


def look_centres(
    chars: list[Character], ids: tuple[int, int], frames: int, width: int, peak_to_centre: int, last_gap: int | None
) -> list[tuple[int, int]]:
    """(index, crop centre column) of each character of `chars` whose symbol is in `ids`.

    A character is centred `peak_to_centre` right of its CTC peak. The last one is not: a
    bidirectional reader fires on it at the end of the sequence, 24-60 pixels right of the glyph,
    so it is placed `last_gap` right of the previous character's peak instead, or left to the
    reader when `last_gap` is None (or it has no previous character).
    """
    out = []
    for k, char in enumerate(chars):
        if char.symbol not in ids:
            continue
        if k < len(chars) - 1:
            out.append((k, round(frame_x(char.peak, frames, width)) + peak_to_centre))
        elif last_gap is not None and k > 0:
            out.append((k, round(frame_x(chars[k - 1].peak, frames, width)) + last_gap))
    return out


class SecondLook(nn.Module):
    """A reader whose log-probabilities for `ids` (two symbol ids) are re-divided by a glyph classifier.

    Where it crops is `look_centres`': `peak_to_centre` is the measured distance from a peak to the
    glyph's middle (the reader fires on a glyph's left half), `last_gap` the measured distance from
    the second-to-last character's peak to the last glyph's middle (None: the last is not looked at).
    """

    def __init__(
        self,
        reader: nn.Module,
        classifier: nn.Module,
        ids: tuple[int, int],
        peak_to_centre: int,
        last_gap: int | None = None,
    ) -> None:
        super().__init__()
        self.reader = reader
        self.classifier = classifier
        self.ids = ids
        self.peak_to_centre = peak_to_centre
        self.last_gap = last_gap

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] != 1:
            raise CaptchaStreamError("second look: needs grey images (data.channels = 1)")
        log_probs = self.reader(images)
        a, b = self.ids
        out = log_probs.clone()
        for look in self.looks(images, log_probs):
            # The two opinions, summed at the reader's peak, decide the whole run of frames, so the
            # character stays one character; the probability of the pair is kept, only split anew.
            odds, n = look.reader_odds + look.classifier_odds, look.image
            span = slice(look.char.start, look.char.stop)
            pair = torch.logaddexp(out[span, n, a], out[span, n, b])
            out[span, n, a] = pair + nn.functional.logsigmoid(torch.tensor(odds))
            out[span, n, b] = pair + nn.functional.logsigmoid(torch.tensor(-odds))
        return out

    def looks(self, images: torch.Tensor, log_probs: torch.Tensor) -> list[Look]:
        """The characters of the reader's greedy reading that are one of the two symbols, with both opinions.

        `images` are the grey uint8 (N, 1, H, W) images the reader read, `log_probs` its (T, N, C) output.
        """
        lp = log_probs.detach().float().cpu().numpy()
        frames, width = lp.shape[0], images.shape[-1]
        grey = images[:, 0].cpu().numpy()
        a, b = self.ids
        found: list[tuple[int, int, Character]] = []
        crops = []
        for n in range(lp.shape[1]):
            chars = characters(lp[:, n])
            for k, centre in look_centres(chars, self.ids, frames, width, self.peak_to_centre, self.last_gap):
                found.append((n, k, chars[k]))
                crops.append(crop(grey[n], centre))
        if not crops:
            return []
        with torch.no_grad():
            logits = self.classifier(normalize(torch.from_numpy(np.stack(crops))[:, None]).to(images.device))
        second = (logits[:, 0] - logits[:, 1]).float().cpu().tolist()
        return [
            Look(n, k, char, float(lp[char.peak, n, a] - lp[char.peak, n, b]), odds2)
            for (n, k, char), odds2 in zip(found, second)
        ]


def attach(
    state: dict[str, Any],
    classifier_state: dict[str, Any],
    symbols: str,
    peak_to_centre: int,
    last_gap: int | None = None,
) -> dict[str, Any]:
    """`state` (a checkpoint's contents) with a second look for `symbols` (two of its charset's symbols)."""
    data = state["config"]["data"]
    charset = data["charset"]
    if len(symbols) != 2 or any(s not in charset for s in symbols):
        raise CaptchaStreamError(f"second look: {symbols!r} must be two symbols of the charset {charset!r}")
    # The classifier was made for classic36's grey 170x80 captchas: its crops must fit the image.
    if data.get("channels", 1) != 1 or data.get("height", 0) < CROP_H:
        raise CaptchaStreamError(
            f"second look: needs grey images at least {CROP_H} px high (data.channels=1), "
            f"the checkpoint reads channels={data.get('channels')} height={data.get('height')}"
        )
    try:
        glyph_classifier().load_state_dict(classifier_state)  # fails here, not at reading time
    except RuntimeError:
        raise CaptchaStreamError("second look: the classifier's weights do not fit glyph_classifier()") from None
    saved = {"model": classifier_state, "symbols": symbols, "peak_to_centre": peak_to_centre, "last_gap": last_gap}
    return stages.add(state, "second_look", saved)


def build(reader: nn.Module, saved: dict[str, Any], cfg: Config, path: str) -> nn.Module:
    """`reader` with the second look a checkpoint saved (its "second_look" entry) around it."""
    classifier = glyph_classifier()
    try:
        classifier.load_state_dict(saved["model"])
        first, second = Codec(cfg.data.charset).encode(saved["symbols"])
        peak_to_centre = int(saved["peak_to_centre"])
        last_gap = None if saved.get("last_gap") is None else int(saved["last_gap"])
    except (KeyError, ValueError, RuntimeError, TypeError, CaptchaStreamError) as exc:
        raise CaptchaStreamError(f"{path}: its second look cannot be read ({exc.__class__.__name__})") from None
    return SecondLook(reader, classifier.eval(), (first, second), peak_to_centre, last_gap).eval()


def load_classifier(path: str | os.PathLike[str]) -> tuple[nn.Module, str]:
    """A glyph classifier saved by train-addon, or the second look a checkpoint carries, in evaluation
    mode, and the two symbols it tells apart (files that do not say are classic36's 0 and O)."""
    saved = load_weights(path, "glyph classifier weights")
    model = glyph_classifier()
    try:
        entry = saved["second_look"] if "second_look" in saved else saved
        model.load_state_dict(entry["model"])
        symbols = str(entry.get("symbols", "0O"))
    except (KeyError, TypeError, RuntimeError, AttributeError):
        raise CaptchaStreamError(f"{path}: holds no glyph classifier weights") from None
    return model.eval(), symbols
