"""Stages trained on their own (train/addons.py): their seeded data, a short run of each, and attaching them."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from captcha_stream.config import load_config
from captcha_stream.data.glyphs import GlyphMaker, glyph_set
from captcha_stream.data.pairs import PairStream
from captcha_stream.data.render import Renderer
from captcha_stream.errors import CaptchaStreamError
from captcha_stream.model.denoiser import Denoiser
from captcha_stream.model.glyph_classifier import CROP_H, CROP_W, crop
from captcha_stream.reader.denoised import load_denoiser
from captcha_stream.reader.second_look import load_classifier
from captcha_stream.train.addons import classify, denoise, train_addon

ROOT = Path(__file__).resolve().parents[1]
DENOISER = ROOT / "configs" / "classic36-denoiser.yaml"
SECOND_LOOK = ROOT / "configs" / "classic36-second-look.yaml"
CLASSIC36 = ROOT / "captcha_stream" / "weights" / "classic36.pt"


@pytest.fixture(scope="module")
def classic36():
    return load_config(ROOT / "configs" / "classic36.yaml").data


def test_pairs_are_seeded_and_differ_only_by_the_noise(classic36):
    first = next(iter(PairStream(classic36, seed=3, batch_size=4, crop=80)))
    again = next(iter(PairStream(classic36, seed=3, batch_size=4, crop=80)))
    other = next(iter(PairStream(classic36, seed=4, batch_size=4, crop=80)))
    noisy, clean = first
    assert noisy.shape == clean.shape == (4, 1, 80, 80) and noisy.dtype == torch.uint8
    assert torch.equal(noisy, again[0]) and torch.equal(clean, again[1])
    assert not torch.equal(noisy, other[0])
    # The noise is a few dots and one thin arc: most pixels are the same in both.
    changed = (noisy.int() - clean.int()).abs() > 8
    assert 0 < changed.float().mean() < 0.2


@pytest.mark.parametrize("fast", [True, False])
def test_a_quiet_renderer_leaves_out_only_the_noise(classic36, fast):
    quiet = Renderer(classic36, fast=fast, noise=False)
    plain = Renderer(classic36, fast=fast)  # made after: must still draw noise
    for i in range(4):
        (a, la), (b, lb) = plain.sample_at(9, i), quiet.sample_at(9, i)
        assert la == lb
        a, b = np.asarray(a.convert("L"), dtype=int), np.asarray(b.convert("L"), dtype=int)
        assert (a < b - 8).sum() > 20  # the dots and curve are ink only the plain image has
        assert (b < a - 8).sum() < 20  # and the quiet image adds no ink of its own


def test_the_fast_quiet_renderer_draws_the_packages_pixels(classic36):
    fast, package = Renderer(classic36, noise=False), Renderer(classic36, fast=False, noise=False)
    if not fast.fast:
        pytest.skip("the fast renderer is not supported by the installed captcha/Pillow")
    for i in range(6):
        (a, la), (b, lb) = fast.sample_at(21, i), package.sample_at(21, i)
        assert la == lb and a.tobytes() == b.tobytes()


def test_same_seed_same_glyphs(classic36):
    a, b = GlyphMaker(classic36, 3, jitter=6), GlyphMaker(classic36, 3, jitter=6)
    for symbol in "0O0O":
        ga, gb = a.glyph(symbol), b.glyph(symbol)
        assert ga.shape == (CROP_H, CROP_W) and ga.dtype == np.uint8
        assert np.array_equal(ga, gb)
    assert not np.array_equal(GlyphMaker(classic36, 4).glyph("0"), GlyphMaker(classic36, 3).glyph("0"))


def test_a_glyph_in_context_is_in_the_middle_of_its_crop(classic36):
    # Only the glyph differs between a captcha and its copy with a blank in the glyph's place,
    # so that difference, seen through the crop, must sit in the crop's middle.
    maker = GlyphMaker(classic36, 5)
    for symbol in "0O0O0O":
        full, blank = maker.pair(symbol)
        centre = maker.centre(full, blank)
        diff = np.abs(crop(full, centre).astype(int) - crop(blank, centre)).max(axis=0) > 8
        columns = np.nonzero(diff)[0]
        assert len(columns) > 5
        assert abs((columns[0] + columns[-1] + 1) / 2 - CROP_W / 2) <= 1


def test_jittered_crops_are_the_same_captcha_moved_at_most_jitter(classic36):
    shifts = []
    for seed in range(1, 9):
        glyph = GlyphMaker(classic36, seed, jitter=6).glyph("O")
        plain = GlyphMaker(classic36, seed)
        full, blank = plain.pair("O")
        centre = plain.centre(full, blank)
        found = [s for s in range(-6, 7) if np.array_equal(glyph, crop(full, centre + s))]
        assert found, f"seed {seed}: not a crop of the captcha within 6 px of its glyph"
        shifts.append(found[0])
    assert any(abs(s) > 1 for s in shifts)


def test_pair_says_which_character_it_replaced(classic36):
    maker = GlyphMaker(classic36, 11)
    for _ in range(6):
        full, blank = maker.pair("0")
        columns = np.nonzero(np.abs(full - blank).max(axis=0) > 8)[0]
        # Characters run left to right, so the glyph's place across the image follows its index.
        expected = (columns.mean() / classic36.width) * classic36.max_length
        assert abs(expected - (maker.position + 0.5)) < 1.5


def test_set_labels_alternate_and_match_images(classic36):
    images, labels = glyph_set(classic36, "0O", 7, 6)
    assert images.shape == (6, 1, CROP_H, CROP_W)
    assert labels.tolist() == [0, 1, 0, 1, 0, 1]


def short(config, tmp_path, **overrides):
    base = {"addon.steps": 4, "addon.eval_every": 2, "addon.val_size": 4, "addon.batch_size": 2}
    return load_config(config, {**base, **overrides})


def test_a_short_denoiser_run_saves_weights_and_curve_that_attach(tmp_path):
    cfg = short(DENOISER, tmp_path, **{"addon.width": 4, "addon.crop": 32})
    curve = train_addon("denoiser", cfg, tmp_path / "d.pt", log=lambda s: None)
    assert [point["step"] for point in curve] == [2, 4]
    assert all(point["rms_noisy"] > 0 and point["rms_denoised"] >= 0 for point in curve)
    model = load_denoiser(tmp_path / "d.pt")
    assert not model.training and model.width == 4
    assert torch.load(tmp_path / "d.pt", weights_only=True)["point"]["step"] == 4
    out = denoise(model, torch.full((3, 1, 80, 170), 240, dtype=torch.uint8))
    assert out.shape == (3, 1, 80, 170) and out.dtype == torch.uint8


def test_a_short_second_look_run_saves_a_classifier_that_attaches(tmp_path):
    from captcha_stream.reader.build import model_from_checkpoint
    from captcha_stream.reader.second_look import SecondLook
    from captcha_stream.tools.attach import attach_stages
    from captcha_stream.tools.slim import slim_checkpoint

    cfg = short(SECOND_LOOK, tmp_path)
    curve = train_addon("second_look", cfg, tmp_path / "s.pt", log=lambda s: None)
    assert [point["step"] for point in curve] == [2, 4] and 0 <= curve[-1]["accuracy"] <= 1
    reader = slim_checkpoint(CLASSIC36, tmp_path / "r.pt", without=["second_look", "denoiser"])
    attach_stages(reader, tmp_path / "c.pt", classifier=tmp_path / "s.pt")
    model, _, _ = model_from_checkpoint(tmp_path / "c.pt")
    assert isinstance(model, SecondLook) and model.ids == (1, 25)  # "0" and "O" of classic36's charset
    saved, _ = load_classifier(tmp_path / "s.pt")
    assert all(torch.equal(a, b) for a, b in zip(saved.state_dict().values(), model.classifier.state_dict().values()))


def test_classifier_and_denoiser_weights_come_from_a_checkpoint_too():
    from captcha_stream.reader.build import model_from_checkpoint

    shipped, _, _ = model_from_checkpoint(CLASSIC36)
    denoiser = load_denoiser(CLASSIC36)
    classifier, symbols = load_classifier(CLASSIC36)
    assert symbols == "0O"
    for a, b in zip(denoiser.state_dict().values(), shipped.denoiser.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(classifier.state_dict().values(), shipped.reader.classifier.state_dict().values()):
        assert torch.equal(a, b)
    crops = torch.randint(0, 256, (4, 1, CROP_H, CROP_W), dtype=torch.uint8)
    assert torch.equal(classify(classifier, crops), classify(shipped.reader.classifier, crops))


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", "no such file"),
        ("a folder", "no such file"),
        ("not a classifier", "holds no glyph classifier weights"),
        ("not a torch file", "holds no glyph classifier weights"),
    ],
)
def test_bad_init_gets_one_line_before_any_work(kind, message, tmp_path):
    path = tmp_path / "init.pt"
    if kind == "a folder":
        path.mkdir()
    elif kind == "not a classifier":
        torch.save({"model": {"weight": torch.zeros(2)}}, path)
    elif kind == "not a torch file":
        path.write_text("label,text\n")
    cfg = short(SECOND_LOOK, tmp_path, **{"addon.init_from": str(path), "addon.val_size": 100000})
    with pytest.raises(CaptchaStreamError, match=f"init.pt: {message}$"):
        train_addon("second_look", cfg, tmp_path / "s.pt", log=lambda s: None)


def test_a_denoiser_for_colour_images_or_symbols_outside_the_charset_are_refused(tmp_path):
    with pytest.raises(CaptchaStreamError, match="grey images"):
        train_addon("denoiser", short(DENOISER, tmp_path, **{"data.channels": 3}), tmp_path / "d.pt")
    with pytest.raises(CaptchaStreamError, match="addon.symbols: 'o' is not in data.charset"):
        train_addon("second_look", short(SECOND_LOOK, tmp_path, **{"addon.symbols": "0o"}), tmp_path / "s.pt")
    with pytest.raises(CaptchaStreamError, match="addon.symbols: must be two different symbols"):
        short(SECOND_LOOK, tmp_path, **{"addon.symbols": "00"})


def run_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "captcha_stream", *args], capture_output=True, text=True, cwd=cwd)


def test_train_addon_and_attach_from_the_command_line(tmp_path):
    sets = ["--set", "addon.eval_every=2", "--set", "addon.val_size=2", "--set", "addon.width=4"]
    done = run_cli(
        "train-addon", "denoiser", "--config", str(DENOISER), "--out", str(tmp_path / "d.pt"), "--steps", "2",
        "--json", str(tmp_path / "curve.json"), *sets,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "curve.json").read_text())["curve"][-1]["step"] == 2
    done = run_cli("attach", str(CLASSIC36), str(tmp_path / "c.pt"), "--denoiser", str(tmp_path / "d.pt"))
    assert done.returncode == 0, done.stderr
    assert load_denoiser(tmp_path / "c.pt").width == 4
    missing = run_cli("attach", str(CLASSIC36), str(tmp_path / "x.pt"), "--second-look", "nope.pt")
    assert missing.returncode == 2 and missing.stderr.strip() == "error: nope.pt: no such file"


def test_an_untrained_denoiser_file_is_not_a_classifier(tmp_path):
    torch.save({"model": Denoiser(4).state_dict(), "width": 4}, tmp_path / "d.pt")
    with pytest.raises(CaptchaStreamError, match="d.pt: holds no glyph classifier weights"):
        load_classifier(tmp_path / "d.pt")
