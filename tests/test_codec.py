import math

import pytest
import torch

from captcha_stream.config import DEFAULT_CHARSET
from captcha_stream.errors import CaptchaStreamError
from captcha_stream.model.codec import BLANK, Codec


def test_round_trip():
    codec = Codec(DEFAULT_CHARSET)
    for text in ["abc", "Zz09", "AAaa", DEFAULT_CHARSET]:
        ids = codec.encode(text)
        assert BLANK not in ids
        assert codec.decode_ids(ids) == text
    assert codec.num_classes == 63


def test_unknown_symbol_named():
    with pytest.raises(CaptchaStreamError, match="'!'"):
        Codec("abc").encode("ab!")


def one_hot_log_probs(path, num_classes):
    t = torch.full((len(path), 1, num_classes), -20.0)
    for i, c in enumerate(path):
        t[i, 0, c] = 0.0
    return t.log_softmax(2)


def test_greedy_collapses_repeats_and_blanks():
    codec = Codec("abc")
    # a a _ a b b _ _ c  ->  "aabc"
    lp = one_hot_log_probs([1, 1, 0, 1, 2, 2, 0, 0, 3], codec.num_classes)
    text, conf = codec.greedy_decode(lp)[0]
    assert text == "aabc"
    assert 0.99 < conf <= 1.0


def test_beam_matches_greedy_on_peaked_input_and_sums_paths():
    codec = Codec("ab")
    lp = one_hot_log_probs([1, 0, 2, 2], codec.num_classes)
    assert codec.beam_decode(lp, 4)[0][0] == "ab"
    # Two frames, each 0.6 blank / 0.4 'a': greedy says "" (p=0.36) but "a" has
    # total probability 0.4*0.6 + 0.6*0.4 + 0.4*0.4 = 0.64, so beam search picks "a".
    probs = torch.tensor([[0.6, 0.4, 0.0], [0.6, 0.4, 0.0]]).clamp_min(1e-12)
    lp = probs.log().unsqueeze(1)
    assert codec.greedy_decode(lp)[0][0] == ""
    text, conf = codec.beam_decode(lp, 3)[0]
    assert text == "a"
    assert math.isclose(conf, 0.64, rel_tol=1e-4)


def test_beam_length_prior_keeps_to_the_allowed_lengths():
    codec = Codec("ab")

    def log_probs(rows):
        return torch.tensor(rows).clamp_min(1e-12).log().unsqueeze(1)

    # Columns: blank, a, b. Unconstrained, "a" (0.7 x 0.6) beats "ab" (0.7 x 0.4).
    lp = log_probs([[0.3, 0.7, 0.0], [0.6, 0.0, 0.4]])
    assert codec.beam_decode(lp, 4)[0][0] == "a"
    text, conf = codec.beam_decode(lp, 4, lengths=(2, 3))[0]
    assert text == "ab" and math.isclose(conf, 0.28, rel_tol=1e-4)
    # Too long: "ab" (0.9 x 0.8) is best, but at most one symbol is allowed.
    lp = log_probs([[0.1, 0.9, 0.0], [0.2, 0.0, 0.8]])
    assert codec.beam_decode(lp, 4)[0][0] == "ab"
    assert codec.beam_decode(lp, 4, lengths=(1, 1))[0][0] == "a"
    # No labelling of an allowed length in the beam: the best of any length.
    assert codec.beam_decode(lp, 4, lengths=(3, 4))[0][0] == "ab"
