"""Accuracy metrics: pure functions over predicted and true strings.

Character accuracy is position-wise, as the original design defines it: the i-th
predicted character is compared with the i-th true one. Unequal lengths count against
the prediction: the denominator of each pair is the longer of the two lengths, so a
missing or an extra character is one error, and everything after an insertion or a
deletion is misaligned (which is exactly why CER is reported as well). An empty
prediction scores 0 for its label's characters.

CER is the Levenshtein distance summed over all pairs, divided by the number of true
characters; it can exceed 1 when predictions are much longer than labels.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from math import comb


def _check(preds: Sequence[str], truths: Sequence[str]) -> None:
    if len(preds) != len(truths):
        raise ValueError(f"{len(preds)} predictions for {len(truths)} labels")


def full_string_accuracy(preds: Sequence[str], truths: Sequence[str]) -> float:
    _check(preds, truths)
    return sum(p == t for p, t in zip(preds, truths)) / len(truths) if truths else 0.0


def case_insensitive_accuracy(preds: Sequence[str], truths: Sequence[str]) -> float:
    _check(preds, truths)
    return sum(p.lower() == t.lower() for p, t in zip(preds, truths)) / len(truths) if truths else 0.0


def char_accuracy(preds: Sequence[str], truths: Sequence[str]) -> float:
    _check(preds, truths)
    correct = sum(sum(a == b for a, b in zip(p, t)) for p, t in zip(preds, truths))
    total = sum(max(len(p), len(t)) for p, t in zip(preds, truths))
    return correct / total if total else 0.0


def levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def cer(preds: Sequence[str], truths: Sequence[str]) -> float:
    _check(preds, truths)
    chars = sum(len(t) for t in truths)
    return sum(levenshtein(p, t) for p, t in zip(preds, truths)) / chars if chars else 0.0


def accuracy_by_length(preds: Sequence[str], truths: Sequence[str]) -> dict[int, tuple[int, float]]:
    """True label length -> (count, full-string accuracy)."""
    _check(preds, truths)
    groups: dict[int, list[bool]] = {}
    for p, t in zip(preds, truths):
        groups.setdefault(len(t), []).append(p == t)
    return {n: (len(v), sum(v) / len(v)) for n, v in sorted(groups.items())}


def alignment(pred: str, truth: str) -> list[tuple[str | None, str | None]]:
    """One optimal Levenshtein alignment as (true, predicted) character pairs, in reading order:
    both set for a match or a substitution, (true, None) for a character the prediction left out,
    (None, predicted) for one it added."""
    n, m = len(truth), len(pred)
    d = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        d[i][0] = i
    for j in range(m + 1):
        d[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (truth[i - 1] != pred[j - 1]))
    pairs: list[tuple[str | None, str | None]] = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and d[i][j] == d[i - 1][j - 1] + (truth[i - 1] != pred[j - 1]):
            pairs.append((truth[i - 1], pred[j - 1]))
            i, j = i - 1, j - 1
        elif i > 0 and d[i][j] == d[i - 1][j] + 1:
            pairs.append((truth[i - 1], None))
            i -= 1
        else:
            pairs.append((None, pred[j - 1]))
            j -= 1
    return pairs[::-1]


def substitutions(pred: str, truth: str) -> list[tuple[str, str]]:
    """(true, predicted) character pairs substituted in one optimal Levenshtein alignment."""
    return [(t, p) for t, p in alignment(pred, truth) if t is not None and p is not None and t != p]


def confusions(preds: Sequence[str], truths: Sequence[str], top: int = 10) -> list[tuple[str, str, int]]:
    """The most frequent (true, predicted, count) substitutions."""
    _check(preds, truths)
    counts: Counter[tuple[str, str]] = Counter()
    for p, t in zip(preds, truths):
        if p != t:
            counts.update(substitutions(p, t))
    return [(a, b, c) for (a, b), c in counts.most_common(top)]


def symbol_errors(preds: Sequence[str], truths: Sequence[str]) -> dict[str, tuple[int, float]]:
    """Per true symbol: (occurrences, share read wrong), a symbol read wrong when one optimal
    alignment of its string substitutes or drops it."""
    _check(preds, truths)
    seen: Counter[str] = Counter()
    wrong: Counter[str] = Counter()
    for p, t in zip(preds, truths):
        seen.update(t)
        if p != t:
            wrong.update(a for a, b in alignment(p, t) if a is not None and a != b)
    return {s: (n, wrong[s] / n) for s, n in seen.items()}


def wilson_interval(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% (z=1.96) confidence interval of an accuracy of `hits` out of `n` images.

    Wilson's score interval rather than p +- z*sqrt(p(1-p)/n): near 100%, where captcha readers
    live, the plain formula gives a zero-width interval for a perfect score and can pass 1.
    """
    if not 0 <= hits <= n:
        raise ValueError(f"{hits} hits out of {n}")
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def full_string_interval(preds: Sequence[str], truths: Sequence[str]) -> tuple[float, float]:
    """The 95% interval of full-string accuracy: how far another set of this size could land."""
    _check(preds, truths)
    return wilson_interval(sum(p == t for p, t in zip(preds, truths)), len(truths))


def summary(preds: Sequence[str], truths: Sequence[str]) -> dict[str, float]:
    """The headline numbers, all fractions in 0..1 (CER may exceed 1)."""
    return {
        "n": len(truths),
        "full_string_accuracy": full_string_accuracy(preds, truths),
        "char_accuracy": char_accuracy(preds, truths),
        "cer": cer(preds, truths),
        "case_insensitive_accuracy": case_insensitive_accuracy(preds, truths),
    }


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact two-sided p-value: the chance of a split at least this uneven from fair coins."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2**n
    return min(1.0, 2 * tail)
