"""captcha_stream/reader/second_look.py: a glyph classifier's second opinion on two symbols a reader confuses."""

import numpy as np
import pytest
import torch

from captcha_stream.checkpoint import load_checkpoint, save_checkpoint
from captcha_stream.errors import CaptchaStreamError
from captcha_stream.model.glyph_classifier import CROP_H, CROP_W, crop, glyph_classifier
from captcha_stream.reader.second_look import (
    SecondLook,
    attach,
    characters,
    frame_x,
    look_centres,
)
from captcha_stream.tools.slim import slim_checkpoint


def log_probs(path, peaks, classes=4):
    """(T, C) log-probabilities following `path` (one id per frame), with the frames in `peaks` surer."""
    lp = np.full((len(path), classes), -9.0)
    for t, i in enumerate(path):
        lp[t, i] = -0.001 if t in peaks else -0.5
    return lp


def test_characters_are_runs_with_their_surest_frame():
    # 3 3 _ 3 2 2 _ reads "3 3 2": a blank separates the repeated 3, and the run of 2 peaks at frame 5.
    chars = characters(log_probs([0, 3, 3, 0, 3, 2, 2, 0], peaks={2, 5}))
    assert [(c.symbol, c.start, c.stop, c.peak) for c in chars] == [(3, 1, 3, 2), (3, 4, 5, 4), (2, 5, 7, 5)]
    assert characters(log_probs([0, 0, 0], peaks=set())) == []


def test_frame_x_is_the_middle_of_the_frame():
    assert frame_x(0, 22, 176) == 4.0
    assert frame_x(21, 22, 176) == 172.0


def test_look_centres_place_the_last_character_from_the_previous_peak():
    # Symbols 3 (looked at) and 2 (not): "3 2 3" with peaks at frames 2, 5, 9 of 22 over 176 px (8 px a frame).
    lp = log_probs([0, 3, 3, 0, 2, 2, 0, 0, 3, 3, 0] + [0] * 11, peaks={2, 5, 9})
    chars = characters(lp)
    assert look_centres(chars, (3, 1), 22, 176, 6, None) == [(0, 20 + 6)]
    assert look_centres(chars, (3, 1), 22, 176, 6, 41) == [(0, 20 + 6), (2, 44 + 41)]
    lone = characters(log_probs([0, 3, 0] + [0] * 19, peaks={1}))
    assert look_centres(lone, (3, 1), 22, 176, 6, 41) == []  # no previous character to place it from


def test_crop_is_centred_and_repeats_the_edges():
    image = np.tile(np.arange(170, dtype=np.uint8), (80, 1))  # each pixel holds its column
    window = crop(image, 100)
    assert window.shape == (CROP_H, CROP_W)
    assert window[0, CROP_W // 2] == 100 and window[0, 0] == 100 - CROP_W // 2
    assert (crop(image, 2)[:, 0] == 0).all()  # left of the image: the first column repeated


def always(symbol_index):
    """A glyph classifier that answers one of its two symbols, whatever it is shown, overwhelmingly."""
    model = glyph_classifier()
    torch.nn.init.zeros_(model[-1].weight)
    model[-1].bias.data = torch.tensor([100.0, -100.0] if symbol_index == 0 else [-100.0, 100.0])
    return model.eval()


@pytest.fixture(scope="module")
def with_look(tmp_path_factory, classic36_reader):
    """captcha_stream/weights/classic36.pt's reader with a second look that always answers O."""
    path = tmp_path_factory.mktemp("ck") / "look.pt"
    state = attach(load_checkpoint(classic36_reader), always(1).state_dict(), "0O", 6)
    save_checkpoint(state, path, keep_previous=False)
    return path


def test_a_checkpoint_with_a_second_look_reads_through_it(read_folder, classic36_set, classic36_reader, with_look):
    plain, _ = read_folder(classic36_reader, classic36_set)
    looked, reader = read_folder(with_look, classic36_set)
    assert isinstance(reader.model, SecondLook)
    # Every 0 before the last character becomes an O; nothing else changes.
    assert looked == ["".join("O" if c == "0" and i < len(t) - 1 else c for i, c in enumerate(t)) for t in plain]
    assert looked != plain  # the set has 0s to change


def test_with_a_last_gap_the_last_character_is_looked_at_too(read_folder, classic36_set, classic36_reader, tmp_path):
    path = tmp_path / "look-last.pt"
    # This time a classifier that always answers 0: two of the set's strings end in O.
    state = attach(load_checkpoint(classic36_reader), always(0).state_dict(), "0O", 6, 41)
    save_checkpoint(state, path, keep_previous=False)
    plain, _ = read_folder(classic36_reader, classic36_set)
    looked, _ = read_folder(path, classic36_set)
    assert looked == [t.replace("O", "0") if len(t) > 1 else t for t in plain]
    assert any(t.endswith("O") for t in plain)


def test_the_second_look_only_splits_the_pairs_probability(classic36_set, with_look):
    from captcha_stream.data.folder import FolderDataset
    from captcha_stream.reader.build import model_from_checkpoint

    look, cfg, _ = model_from_checkpoint(with_look)
    images = torch.stack([FolderDataset(classic36_set, cfg.data)[i][0] for i in range(8)])
    with torch.no_grad():
        before, after = look.reader(images), look(images)
    zero, oh = cfg.data.charset.index("0") + 1, cfg.data.charset.index("O") + 1
    others = [c for c in range(before.shape[2]) if c not in (zero, oh)]
    assert torch.equal(before[:, :, others], after[:, :, others])
    pair = torch.logaddexp(before[:, :, zero], before[:, :, oh])
    assert torch.allclose(pair, torch.logaddexp(after[:, :, zero], after[:, :, oh]), atol=1e-5)


def test_slim_keeps_the_second_look_unless_told_and_onnx_refuses_it(tmp_path, with_look):
    slim = slim_checkpoint(with_look, tmp_path / "slim.pt")
    assert "second_look" in load_checkpoint(slim)
    alone = slim_checkpoint(with_look, tmp_path / "alone.pt", without=["second_look"])
    assert "second_look" not in load_checkpoint(alone)
    pytest.importorskip("onnx")
    from captcha_stream.reader.onnx import export_onnx

    with pytest.raises(CaptchaStreamError, match="--without second_look"):
        export_onnx(with_look, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_bad_second_looks_get_one_line(tmp_path, classic36_reader):
    state = load_checkpoint(classic36_reader)
    with pytest.raises(CaptchaStreamError, match="must be two symbols of the charset"):
        attach(state, always(1).state_dict(), "0o", 6)
    small = {**state, "config": {**state["config"], "data": {**state["config"]["data"], "height": 60}}}
    with pytest.raises(CaptchaStreamError, match="at least 72 px high"):
        attach(small, always(1).state_dict(), "0O", 6)
    with pytest.raises(CaptchaStreamError, match="weights do not fit"):
        attach(state, {"nonsense": torch.zeros(1)}, "0O", 6)
    broken = {**state, "second_look": {"model": {"x": torch.zeros(1)}, "symbols": "0O", "peak_to_centre": 6}}
    save_checkpoint(broken, tmp_path / "broken.pt", keep_previous=False)
    from captcha_stream.reader.build import model_from_checkpoint

    with pytest.raises(CaptchaStreamError, match="broken.pt: its second look cannot be read"):
        model_from_checkpoint(tmp_path / "broken.pt")
