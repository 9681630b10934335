"""The fast renderer must produce exactly the package's pixels for the same random draws."""

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from captcha.image import DEFAULT_FONTS
from PIL import Image, ImageFilter

from captcha_stream.config import DEFAULT_CHARSET, DataConfig
from captcha_stream.data import fastrender
from captcha_stream.data.render import Renderer

pytestmark = pytest.mark.skipif(not fastrender.supported(), reason="fast path not enabled for these versions")


def labels(count):
    # Lengths 1..8 in turn, walking through every symbol of the charset.
    out, k = [], 0
    for i in range(count):
        n = 1 + i % 8
        out.append("".join(DEFAULT_CHARSET[(k + j) % len(DEFAULT_CHARSET)] for j in range(n)))
        k += n
    return out


def compare(data, count, seed):
    fast, package = Renderer(data, seed=seed, fast=True), Renderer(data, seed=seed, fast=False)
    assert fast.fast and not package.fast
    texts = labels(count)
    for i, text in enumerate(texts):
        fast.reseed(seed * 100_000 + i)
        package.reseed(seed * 100_000 + i)
        a, b = fast.render(text), package.render(text)
        assert a.mode == b.mode and a.size == b.size
        assert a.tobytes() == b.tobytes(), f"pixels differ for sample {i} ({text!r})"
        # Both consumed exactly the same random draws.
        assert fast.rng.getstate() == package.rng.getstate()
    return fast, texts


def test_default_config_identical_to_package():
    fast, texts = compare(DataConfig(), 700, seed=1)
    assert set("".join(texts)) == set(DEFAULT_CHARSET)
    assert {len(t) for t in texts} == set(range(1, 9))
    # Every font size was drawn from (the cache is keyed by font index).
    assert {key[0] for key in fast._fast.glyphs._entries} == {0, 1, 2}


def test_other_size_and_fonts_identical_to_package(tmp_path):
    dejavu = Path("/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf")
    second = tmp_path / "second.ttf"
    shutil.copy(dejavu if dejavu.exists() else DEFAULT_FONTS[0], second)
    data = DataConfig(width=160, height=60, fonts=[DEFAULT_FONTS[0], str(second)], font_sizes=[30, 44])
    fast, _ = compare(data, 400, seed=2)
    assert {key[0] for key in fast._fast.glyphs._entries} == {0, 1, 2, 3}


def test_sample_stream_identical_to_package():
    fast, package = Renderer(DataConfig(), seed=5, fast=True), Renderer(DataConfig(), seed=5, fast=False)
    for i in range(20):
        (a, la), (b, lb) = fast.sample_at(9, i), package.sample_at(9, i)
        assert la == lb and a.tobytes() == b.tobytes()


def test_untested_versions_fall_back_with_one_warning(monkeypatch):
    monkeypatch.setattr(fastrender, "supported", lambda: False)
    monkeypatch.setattr(fastrender, "_warned", False)
    import captcha_stream.data.render as render

    monkeypatch.setattr(render, "supported", lambda: False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r1 = Renderer(DataConfig(), seed=0)
        r2 = Renderer(DataConfig(), seed=0)
    assert not r1.fast and not r2.fast
    assert len([w for w in caught if "fast renderer" in str(w.message)]) == 1


@pytest.mark.parametrize("shape", [(90, 280, 3), (60, 160, 3), (3, 3, 3), (2, 7, 3), (40, 50)])
def test_smoother_equals_pillow_smooth(shape):
    # Noise and hard black/white edges reach the extremes of the kernel's range, where a
    # rounding slip would show; the captchas themselves are covered by the tests above.
    rng = np.random.default_rng(sum(shape))
    smoother = fastrender.Smoother()
    for k in range(12):
        if k % 3 == 0:
            pixels = rng.integers(0, 2, shape, dtype=np.uint8) * 255
        else:
            pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        image = Image.fromarray(pixels)
        expected = np.asarray(image.filter(ImageFilter.SMOOTH))
        assert np.array_equal(np.asarray(smoother(image)), expected)
