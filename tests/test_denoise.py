"""experiments/denoise.py: seeded (noisy, clean) pairs, and a denoiser that learns from them."""

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def study(docs_script):
    return docs_script("denoise")


@pytest.fixture(scope="module")
def classic36():
    from captcha_stream.config import load_config

    return load_config("configs/classic36.yaml").data


def test_pairs_are_seeded_and_differ_only_by_the_noise(study, classic36):
    first = next(iter(study.PairStream(classic36, seed=3, batch_size=4, crop=80)))
    again = next(iter(study.PairStream(classic36, seed=3, batch_size=4, crop=80)))
    other = next(iter(study.PairStream(classic36, seed=4, batch_size=4, crop=80)))
    noisy, clean = first
    assert noisy.shape == clean.shape == (4, 1, 80, 80) and noisy.dtype == torch.uint8
    assert torch.equal(noisy, again[0]) and torch.equal(clean, again[1])
    assert not torch.equal(noisy, other[0])
    # The noise is a few dots and one thin arc: most pixels are the same in both.
    changed = (noisy.int() - clean.int()).abs() > 8
    assert 0 < changed.float().mean() < 0.2


def test_a_short_run_saves_a_denoiser_and_its_curve(study, classic36, tmp_path):
    import argparse
    import json

    args = argparse.Namespace(
        seed=5,
        threads=1,
        width=4,
        val_size=2,
        lr=0.002,
        batch_size=2,
        crop=32,
        steps=4,
        eval_every=2,
        save=str(tmp_path / "d.pt"),
        json=str(tmp_path / "curve.json"),
    )
    study.train(args, classic36)
    curve = json.loads((tmp_path / "curve.json").read_text())["curve"]
    assert [point["step"] for point in curve] == [2, 4]
    assert all(point["rms_noisy"] > 0 and point["rms_denoised"] >= 0 for point in curve)
    model = study.load_denoiser(args.save)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in study.Denoiser(4).parameters())
    assert torch.load(args.save, weights_only=True)["point"]["step"] == 4


def test_denoised_images_are_uint8_of_the_same_shape(study):
    images = torch.from_numpy(np.full((3, 1, 80, 170), 240, dtype=np.uint8))
    out = study.denoise(study.Denoiser(width=4), images)
    assert out.shape == images.shape and out.dtype == torch.uint8


def test_a_missing_denoiser_is_a_clear_error(study, tmp_path):
    from captcha_stream.errors import CaptchaStreamError

    with pytest.raises(CaptchaStreamError, match="nope.pt: no such file"):
        study.load_denoiser(str(tmp_path / "nope.pt"))
    (tmp_path / "notes.txt").write_text("not weights")
    with pytest.raises(CaptchaStreamError, match="notes.txt: holds no denoiser weights"):
        study.load_denoiser(str(tmp_path / "notes.txt"))


def test_a_checkpoint_lends_its_denoiser(study):
    # models/classic36.pt carries one since session 19: --denoiser can name the checkpoint.
    from captcha_stream.reader.build import model_from_checkpoint

    shipped, _, _ = model_from_checkpoint("models/classic36.pt")
    loaded = study.load_denoiser("models/classic36.pt")
    for a, b in zip(loaded.state_dict().values(), shipped.denoiser.state_dict().values()):
        assert torch.equal(a, b)
