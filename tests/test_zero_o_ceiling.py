"""experiments/zero_o_ceiling.py: the 0/O study's glyph makers are seeded and find their glyph."""

from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "zero_o_ceiling.py"


@pytest.fixture(scope="module")
def study(docs_script):
    return docs_script("zero_o_ceiling")


@pytest.mark.parametrize("context", [False, True])
def test_same_seed_same_glyphs(study, context):
    a, b = study.make_maker(3, context), study.make_maker(3, context)
    for symbol in "0O0O":
        ga, gb = a.glyph(symbol), b.glyph(symbol)
        assert ga.shape == (study.CROP_H, study.CROP_W) and ga.dtype == np.uint8
        assert np.array_equal(ga, gb)
    assert not np.array_equal(study.make_maker(4, context).glyph("0"), a.glyph("0"))


def test_a_lone_glyph_is_in_the_middle_of_its_crop(study):
    maker = study.GlyphMaker(5)
    for symbol in "0O0O0O":
        ink = np.nonzero((maker.glyph(symbol) < 200).any(axis=0))[0]
        assert abs((ink[0] + ink[-1] + 1) / 2 - study.CROP_W / 2) <= 2


def test_a_glyph_in_context_is_in_the_middle_of_its_crop(study):
    # Only the glyph differs between a captcha and its copy with a blank in the glyph's place,
    # so that difference, seen through the crop, must sit in the crop's middle.
    maker = study.ContextGlyphMaker(5)
    for symbol in "0O0O0O":
        full, blank = maker.pair(symbol)
        centre = maker.centre(full, blank)
        diff = np.abs(maker.crop(full, centre).astype(int) - maker.crop(blank, centre)).max(axis=0) > 8
        columns = np.nonzero(diff)[0]
        assert len(columns) > 5
        assert abs((columns[0] + columns[-1] + 1) / 2 - study.CROP_W / 2) <= 1


def test_set_labels_alternate_and_match_images(study):
    images, labels = study.make_set(7, 6)
    assert images.shape == (6, 1, study.CROP_H, study.CROP_W)
    assert labels.tolist() == [0, 1, 0, 1, 0, 1]


def test_quiet_renderer_leaves_out_only_the_noise(study):
    from captcha_stream.data.render import Renderer

    quiet = study.quiet_renderer(study.CLASSIC36)
    plain = Renderer(study.CLASSIC36, fast=False)  # made after: must still draw noise
    for i in range(4):
        (a, la), (b, lb) = plain.sample_at(9, i), quiet.sample_at(9, i)
        assert la == lb
        a, b = np.asarray(a.convert("L"), dtype=int), np.asarray(b.convert("L"), dtype=int)
        assert (a < b - 8).sum() > 20  # the dots and curve are ink only the plain image has
        assert (b < a - 8).sum() < 20  # and the quiet image adds no ink of its own


@pytest.mark.parametrize(
    "args, message",
    [
        (["--reader", "models/classic36.pt"], "--reader needs --data DIR"),
        (["--reader", "models/classic36.pt", "--without-noise", "12,x"], "--without-noise '12,x'"),
        (["--reader", "missing.pt", "--data", "data/val-classic36"], "missing.pt: checkpoint not found"),
    ],
)
def test_bad_reader_arguments_get_one_line(args, message):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=SCRIPT.parents[1])
    assert done.returncode != 0
    assert message in done.stderr.strip().splitlines()[-1]
    assert "Traceback" not in done.stderr


def test_jittered_crops_are_the_same_captcha_moved_at_most_jitter(study):
    # A jittered maker's first glyph is a crop of the same captcha an unjittered maker draws
    # from that seed, centred at most `jitter` pixels off the glyph, and not always on it.
    shifts = []
    for seed in range(1, 9):
        glyph = study.ContextGlyphMaker(seed, jitter=6).glyph("O")
        plain = study.ContextGlyphMaker(seed)
        full, blank = plain.pair("O")
        centre = plain.centre(full, blank)
        found = [s for s in range(-6, 7) if np.array_equal(glyph, plain.crop(full, centre + s))]
        assert found, f"seed {seed}: not a crop of the captcha within 6 px of its glyph"
        shifts.append(found[0])
    assert any(abs(s) > 1 for s in shifts)


def test_pair_says_which_character_it_replaced(study):
    maker = study.ContextGlyphMaker(11)
    for _ in range(6):
        full, blank = maker.pair("0")
        columns = np.nonzero(np.abs(full - blank).max(axis=0) > 8)[0]
        # Characters run left to right, so the glyph's place across the image follows its index.
        expected = (columns.mean() / study.WIDTH) * study.LENGTH
        assert abs(expected - (maker.position + 0.5)) < 1.5


def test_classifier_weights_come_from_a_save_file_or_a_checkpoints_second_look(study, tmp_path):
    import argparse

    import torch

    shipped = study.load_classifier("models/classic36.pt")
    saved = tmp_path / "classifier.pt"
    study.save_weights(shipped, argparse.Namespace(seed=1), {"step": 0}, str(saved))
    again = study.load_classifier(str(saved))
    assert not shipped.training and not again.training
    weights, weights_again = shipped.state_dict(), again.state_dict()
    assert all(torch.equal(weights[k], weights_again[k]) for k in weights)
    # the same network, reading alike
    crops = torch.randint(0, 256, (4, 1, study.CROP_H, study.CROP_W), dtype=torch.uint8)
    assert torch.equal(study.classify(shipped, crops), study.classify(again, crops))


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
    import subprocess
    import sys

    import torch

    path = tmp_path / "init.pt"
    if kind == "a folder":
        path.mkdir()
    elif kind == "not a classifier":
        torch.save({"model": {"weight": torch.zeros(2)}}, path)
    elif kind == "not a torch file":
        path.write_text("label,text\n")
    args = ["--context", "--init", str(path), "--val-size", "100000", "--steps", "1"]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=SCRIPT.parents[1], timeout=60
    )
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.endswith(f"--init {path}: {message}")
    assert "Traceback" not in done.stderr and "held-out set" not in done.stdout
