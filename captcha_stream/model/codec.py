"""Charset <-> label ids, and CTC decoding. Training, evaluation and prediction all use it."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ..errors import CaptchaStreamError

BLANK = 0


def sequence_losses(log_probs: torch.Tensor, targets: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
    """Each sequence's CTC loss (N,) over all T frames of `log_probs` (T, N, C), in float32.

    A target no path of the frames can spell (too long) gets an infinite loss.
    """
    input_lengths = torch.full_like(target_lengths, log_probs.shape[0])
    return torch.nn.functional.ctc_loss(
        log_probs.float(), targets, input_lengths, target_lengths, blank=BLANK, reduction="none"
    )


def ctc_loss(log_probs: torch.Tensor, targets: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
    """The training loss: CTC over all T frames of `log_probs` (T, N, C), the mean over the batch.

    All inputs on the model's device: the native CUDA kernel wants them there.
    """
    input_lengths = torch.full((log_probs.shape[1],), log_probs.shape[0], dtype=torch.long, device=log_probs.device)
    return torch.nn.functional.ctc_loss(
        log_probs, targets, input_lengths, target_lengths, blank=BLANK, reduction="mean"
    )


class Codec:
    """Maps symbols to ids 1..len(charset); id 0 is the CTC blank."""

    def __init__(self, charset: str) -> None:
        if not charset:
            raise CaptchaStreamError("charset is empty")
        if len(set(charset)) != len(charset):
            raise CaptchaStreamError("charset has a repeated symbol")
        self.charset = charset
        self._index = {ch: i + 1 for i, ch in enumerate(charset)}

    @property
    def num_classes(self) -> int:
        """Output size of the model: every symbol plus the blank."""
        return len(self.charset) + 1

    def check(self, text: str, where: str = "label") -> None:
        for ch in text:
            if ch not in self._index:
                raise CaptchaStreamError(f"{where} {text!r}: symbol {ch!r} is not in the charset")

    def encode(self, text: str, where: str = "label") -> list[int]:
        self.check(text, where)
        return [self._index[ch] for ch in text]

    def decode_ids(self, ids: Sequence[int]) -> str:
        """Ids of symbols (no blanks, already collapsed) -> text."""
        return "".join(self.charset[i - 1] for i in ids)

    def greedy_decode(self, log_probs: torch.Tensor | np.ndarray) -> list[tuple[str, float]]:
        """Best path decoding of (T, N, C) log-probabilities (a tensor or a numpy array).

        Confidence is the probability of the best path: the product over time of the
        chosen frames' probabilities.
        """
        lp = log_probs.detach().float().cpu().numpy() if isinstance(log_probs, torch.Tensor) else log_probs
        ids_tn = lp.argmax(axis=2)  # (T, N)
        path_logp = np.take_along_axis(lp, ids_tn[:, :, None], axis=2)[:, :, 0].astype(np.float64).sum(axis=0)
        ids = ids_tn.T.tolist()
        out = []
        for n, seq in enumerate(ids):
            symbols = []
            prev = BLANK
            for i in seq:
                if i != prev and i != BLANK:
                    symbols.append(i)
                prev = i
            out.append((self.decode_ids(symbols), math.exp(float(path_logp[n]))))
        return out

    def decode(
        self, log_probs: torch.Tensor | np.ndarray, beam: int = 0, lengths: tuple[int, int] | None = None
    ) -> list[tuple[str, float]]:
        """Greedy decoding for `beam=0`, else beam search of that width with the length prior."""
        return self.beam_decode(log_probs, beam, lengths) if beam > 0 else self.greedy_decode(log_probs)

    def beam_decode(
        self, log_probs: torch.Tensor | np.ndarray, beam: int, lengths: tuple[int, int] | None = None
    ) -> list[tuple[str, float]]:
        """CTC prefix beam search of width `beam` over (T, N, C) log-probabilities.

        Confidence is the total probability of the chosen labelling (all its paths
        within the beam), which is what greedy decoding approximates. `lengths=(lo, hi)`
        is a length prior: prefixes longer than `hi` leave the beam, and the answer is the
        best labelling of `lo` to `hi` symbols (the best of any length when none is left).
        """
        lp = torch.as_tensor(log_probs).detach().float().cpu().transpose(0, 1)  # (N, T, C)
        # Only the top-k symbols per frame matter for a beam of width k.
        k = min(beam, lp.shape[2])
        top_lp, top_ids = lp.topk(k, dim=2)
        results = []
        for n in range(lp.shape[0]):
            results.append(self._beam_one(lp[n], top_lp[n].tolist(), top_ids[n].tolist(), beam, lengths))
        return results

    def _beam_one(
        self,
        frames: torch.Tensor,
        top_lp: list[list[float]],
        top_ids: list[list[int]],
        beam: int,
        lengths: tuple[int, int] | None,
    ) -> tuple[str, float]:
        longest = lengths[1] if lengths else frames.shape[0]
        # prefix -> (log p of paths ending in blank, log p of paths ending in a symbol)
        beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG_INF)}
        blank_lp = frames[:, BLANK].tolist()
        for t in range(frames.shape[0]):
            nxt: dict[tuple[int, ...], tuple[float, float]] = {}
            for prefix, (pb, pnb) in beams.items():
                total = _logsumexp(pb, pnb)
                _extend(nxt, prefix, total + blank_lp[t], NEG_INF)
                for lp, c in zip(top_lp[t], top_ids[t]):
                    if c == BLANK:
                        continue
                    if prefix and prefix[-1] == c:
                        # Repeating the last symbol needs a blank in between.
                        if len(prefix) < longest:
                            _extend(nxt, prefix + (c,), NEG_INF, pb + lp)
                        _extend(nxt, prefix, NEG_INF, pnb + lp)
                    elif len(prefix) < longest:
                        _extend(nxt, prefix + (c,), NEG_INF, total + lp)
            beams = dict(sorted(nxt.items(), key=lambda kv: -_logsumexp(*kv[1]))[:beam])
        candidates = beams.items()
        if lengths and any(lengths[0] <= len(p) for p in beams):
            candidates = [(p, v) for p, v in beams.items() if lengths[0] <= len(p)]
        prefix, (pb, pnb) = max(candidates, key=lambda kv: _logsumexp(*kv[1]))
        return self.decode_ids(prefix), math.exp(_logsumexp(pb, pnb))


NEG_INF = -math.inf


def _logsumexp(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    m = max(a, b)
    return m + math.log(math.exp(a - m) + math.exp(b - m))


def _extend(beams: dict[tuple[int, ...], tuple[float, float]], prefix: tuple[int, ...], pb: float, pnb: float) -> None:
    old_b, old_nb = beams.get(prefix, (NEG_INF, NEG_INF))
    beams[prefix] = (_logsumexp(old_b, pb), _logsumexp(old_nb, pnb))
