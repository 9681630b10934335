"""The shipped model reads the default captchas out of the box (issue 8: a fresh clone needs no training)."""

from __future__ import annotations

from pathlib import Path

import pytest

from captcha_stream.config import DataConfig, EvalConfig, load_config
from captcha_stream.data.render import Renderer
from captcha_stream.eval.metrics import summary
from captcha_stream.reader.recognizer import Recognizer

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "captcha_stream" / "weights" / "captcha62.pt"


@pytest.fixture(scope="module")
def reader():
    assert SHIPPED.exists(), f"{SHIPPED} is missing: the repository ships it"
    return Recognizer.from_checkpoint(SHIPPED)


def test_shipped_model_is_for_the_default_data(reader):
    data = reader.cfg.data
    default = DataConfig()
    assert (data.width, data.height, data.charset) == (default.width, default.height, default.charset)
    assert (data.min_length, data.max_length) == (default.min_length, default.max_length)


def test_shipped_model_reads_the_default_test_captchas(reader):
    # The first 150 captchas of the default frozen test set, rendered in memory (image i of
    # a set depends only on the seed and i). models/README.md reports 98.40% on all 2000;
    # 150 images put that within a few points, so 85% fails only a broken model or pipeline.
    renderer = Renderer(DataConfig(), seed=0)
    images, labels = zip(*(renderer.sample_at(EvalConfig().test_seed, i) for i in range(150)))
    predictions = [p.text for p in reader.predict(list(images))]
    result = summary(predictions, list(labels))
    assert result["full_string_accuracy"] >= 0.85, result
    assert result["char_accuracy"] >= 0.95, result


@pytest.mark.parametrize(
    "model, config",
    [("captcha62", "cpu-long"), ("captcha62-160x60", "cpu-160x60"), ("classic36", "classic36-wide")],
)
def test_every_shipped_model_matches_its_config(model, config):
    # models/README.md names the config each model was trained with; the checkpoint carries it.
    path = ROOT / "captcha_stream" / "weights" / f"{model}.pt"
    assert path.exists(), f"{path} is missing: the repository ships it"
    shipped = Recognizer.from_checkpoint(path).cfg
    expected = load_config(ROOT / "configs" / f"{config}.yaml")
    assert shipped.data == expected.data
    assert shipped.model == expected.model
