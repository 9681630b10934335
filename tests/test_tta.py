"""Test-time shifts (captcha_stream/reader/tta.py): the views, how their readings are combined, the wiring."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch

from captcha_stream.config import EvalConfig, parse_tta
from captcha_stream.data.render import Renderer
from captcha_stream.errors import CaptchaStreamError
from captcha_stream.eval.metrics import summary
from captcha_stream.model.codec import Codec
from captcha_stream.reader.recognizer import Recognizer
from captcha_stream.reader.tta import agree, shift_images, shifts_for

ROOT = Path(__file__).resolve().parents[1]


def test_shift_moves_the_picture_and_repeats_the_edge():
    images = torch.arange(2 * 3 * 4 * 10, dtype=torch.int64).reshape(2, 3, 4, 10).to(torch.uint8)
    right = shift_images(images, 3)
    assert right.shape == images.shape and right.dtype == torch.uint8
    assert torch.equal(right[..., 3:], images[..., :7])
    assert torch.equal(right[..., :3], images[..., :1].expand(2, 3, 4, 3))
    left = shift_images(images, -2)
    assert torch.equal(left[..., :8], images[..., 2:])
    assert torch.equal(left[..., 8:], images[..., 9:].expand(2, 3, 4, 2))
    assert shift_images(images, 0) is images
    assert shifts_for([]) == [0] and shifts_for([2, 4]) == [0, -2, 2, -4, 4]


def _frames(rows: list[dict[int, float]], classes: int) -> torch.Tensor:
    """(T, 1, C) log-probabilities from per-frame {class: probability}, the rest spread evenly."""
    out = torch.zeros(len(rows), 1, classes)
    for t, row in enumerate(rows):
        rest = (1.0 - sum(row.values())) / (classes - len(row))
        probs = torch.full((classes,), rest)
        for c, p in row.items():
            probs[c] = p
        out[t, 0] = probs.log()
    return out


def _labelling_probability(view: torch.Tensor, codec: Codec, text: str) -> float:
    """P(text) under a (T, 1, C) output by summing every path that collapses to it (small T only)."""
    probs = view[:, 0].exp().tolist()
    total = 0.0
    for path in itertools.product(range(len(probs[0])), repeat=len(probs)):
        symbols = [c for i, c in enumerate(path) if c != 0 and (i == 0 or c != path[i - 1])]
        if codec.decode_ids(symbols) == text:
            total += math.prod(probs[t][c] for t, c in enumerate(path))
    return total


def test_one_view_is_left_as_it_was_read():
    codec = Codec("AB")
    view = _frames([{1: 0.9}, {0: 0.9}, {2: 0.8}], 3)
    reading = codec.greedy_decode(view)
    assert agree([view], [reading], codec) == reading


def test_confidence_is_the_labelling_probability_over_all_paths():
    # Two identical views agree on the greedy answer; its confidence is the total probability of
    # the labelling (every CTC path), which a beam wide enough to keep every prefix computes exactly.
    codec = Codec("AB")
    view = _frames([{1: 0.6, 0: 0.3}, {0: 0.5, 1: 0.3}, {2: 0.7}, {2: 0.4, 0: 0.4}], 3)
    reading = codec.greedy_decode(view)
    assert reading[0][0] == "AB"
    ((text, confidence),) = agree([view, view], [reading, reading], codec)
    assert text == "AB"
    assert confidence == pytest.approx(_labelling_probability(view, codec, "AB"), rel=1e-5)
    assert confidence > reading[0][1]  # more than the best path alone


def test_the_reading_all_views_find_likely_beats_one_confident_outlier():
    codec = Codec("AB")
    # View 1 reads "A" (0.55 vs 0.45 for "B" in the middle frame); views 2 and 3 read "B" but
    # barely (0.5 vs 0.4); summed over the views, "B" is the more likely labelling.
    v1 = _frames([{0: 0.98}, {1: 0.55, 2: 0.44}, {0: 0.98}], 3)
    v2 = _frames([{0: 0.98}, {2: 0.5, 1: 0.4}, {0: 0.98}], 3)
    views = [v1, v2, v2.clone()]
    readings = [codec.greedy_decode(v) for v in views]
    assert [r[0][0] for r in readings] == ["A", "B", "B"]
    ((text, confidence),) = agree(views, readings, codec)
    assert text == "B"
    geometric_mean = math.prod(_labelling_probability(v, codec, "B") for v in views) ** (1 / 3)
    assert confidence == pytest.approx(geometric_mean, rel=1e-5)
    # Now view 1 is sure of "A": it outweighs two views that lean to "B".
    sure = _frames([{0: 0.98}, {1: 0.97, 2: 0.01}, {0: 0.98}], 3)
    views = [sure, v2, v2.clone()]
    ((text, _),) = agree(views, [codec.greedy_decode(v) for v in views], codec)
    assert text == "A"


def test_length_prior_prefers_an_answer_of_an_allowed_length():
    codec = Codec("AB")
    short = _frames([{1: 0.9}, {0: 0.9}, {0: 0.9}, {0: 0.9}], 3)  # reads "A"
    long = _frames([{1: 0.5}, {0: 0.3, 2: 0.3}, {0: 0.9}, {0: 0.9}], 3)  # reads "A" or "AB"
    long_reading = [("AB", 0.1)]
    views = [short, long]
    readings = [codec.greedy_decode(short), long_reading]
    assert agree(views, readings, codec)[0][0] == "A"
    assert agree(views, readings, codec, lengths=(2, 2))[0][0] == "AB"


def test_too_large_a_shift_is_refused_with_the_setting_named():
    reader = Recognizer.from_checkpoint(ROOT / "captcha_stream" / "weights" / "classic36.pt")
    blank = [torch.zeros(80, 170, 3, dtype=torch.uint8).numpy()]
    with pytest.raises(CaptchaStreamError, match=r"^tta: 30 pixels is more than 1/8 of data.width \(170\)"):
        reader.predict(blank, tta=[2, 30])
    with pytest.raises(CaptchaStreamError, match=r"^tta: offsets must be >= 1 pixel, got -1"):
        reader.predict(blank, tta=[-1])
    with pytest.raises(CaptchaStreamError, match=r"^tta: an offset is repeated in \[2, 2\]"):
        reader.predict(blank, tta=[2, 2])


def test_offsets_from_the_command_line():
    assert parse_tta("2") == [2] and parse_tta("2,4") == [2, 4] and parse_tta(" 2, 4 ") == [2, 4]
    assert parse_tta("0") == [] and parse_tta("") == []
    with pytest.raises(CaptchaStreamError, match=r"^--tta: expected pixel offsets like 2 or 2,4, got 'two'"):
        parse_tta("two")


def test_shipped_model_reads_with_shifts():
    # classic36 reads 99.30% of its test set; with shifts it must still read nearly all of the
    # first 100 (the wiring: views shifted, not mixed up across images, answers in order).
    reader = Recognizer.from_checkpoint(ROOT / "captcha_stream" / "weights" / "classic36.pt")
    renderer = Renderer(reader.cfg.data, seed=0)
    images, labels = zip(*(renderer.sample_at(EvalConfig().test_seed, i) for i in range(100)))
    plain = reader.predict(list(images), batch_size=32)
    shifted = reader.predict(list(images), batch_size=32, tta=[2])
    assert summary([p.text for p in shifted], list(labels))["full_string_accuracy"] >= 0.95
    # Where every view reads the same, the answer is that reading.
    assert sum(a.text == b.text for a, b in zip(plain, shifted)) >= 95
    assert reader.predict(list(images[:4]), tta=[]) == reader.predict(list(images[:4]))
