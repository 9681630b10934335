"""What a new user meets first: shipped readers by name, any kind of image input, per-item errors,
the shape warning, the console command and its help, and an installed wheel that reads with no clone."""

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from captcha_stream.config import DataConfig
from captcha_stream.data.render import Renderer
from captcha_stream.errors import CaptchaStreamError
from captcha_stream.reader.recognizer import Recognizer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reader():
    return Recognizer.from_pretrained("captcha62")


@pytest.fixture(scope="module")
def captcha():
    """A captcha the shipped reader reads right (seeds tried in order), and its label."""
    for seed in range(20):
        image, label = Renderer(DataConfig(), seed=seed).sample()
        if Recognizer.from_pretrained("captcha62").predict_one(image).text == label:
            return image, label
    raise AssertionError("the shipped reader read none of 20 captchas")


def png_bytes(image):
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def test_every_shipped_reader_loads_by_name():
    for name, size in (("captcha62", (280, 90)), ("captcha62-160x60", (160, 60)), ("classic36", (170, 80))):
        r = Recognizer.from_pretrained(name)
        assert (r.cfg.data.width, r.cfg.data.height) == size
    with pytest.raises(CaptchaStreamError, match="no shipped reader 'captcha99' \\(shipped: captcha62, "):
        Recognizer.from_pretrained("captcha99")


def test_paths_pil_arrays_bytes_and_file_objects_read_alike(reader, captcha, tmp_path):
    import numpy as np

    image, label = captcha
    image.save(tmp_path / "c.png")
    data = png_bytes(image)
    items = [str(tmp_path / "c.png"), tmp_path / "c.png", image, np.asarray(image), data, io.BytesIO(data)]
    with open(tmp_path / "c.png", "rb") as fh:
        items.append(fh)
        preds = reader.predict(items)
    assert [p.text for p in preds] == [label] * len(items)
    assert all(p.error is None for p in preds)
    assert reader.predict(data)[0].text == label  # one item alone, not a sequence of bytes
    assert reader.predict(tmp_path / "c.png")[0].text == label  # a Path alone too
    with pytest.raises(CaptchaStreamError, match="errors: must be 'keep' or 'raise'"):
        reader.predict([image], errors="ignore")


def test_a_bad_item_gets_an_error_and_the_rest_are_read(reader, captcha):
    image, label = captcha
    preds = reader.predict([image, b"not an image", b"", "missing.png", 42, image], batch_size=4)
    assert [p.text for p in preds] == [label, "", "", "", "", label]
    assert preds[1].error == "image bytes: not a readable image (UnidentifiedImageError)"
    assert preds[2].error == "image bytes: empty"
    assert preds[3].error == "missing.png: image file not found"
    assert preds[4].error == "cannot read an image from a int"
    with pytest.raises(CaptchaStreamError, match="image bytes: empty"):
        reader.predict_one(b"")
    with pytest.raises(CaptchaStreamError, match="missing.png"):
        reader.predict(["missing.png"], errors="raise")


def test_an_image_of_another_readers_shape_is_warned_about_once(reader, capsys):
    small, _ = Renderer(DataConfig(width=160, height=60), seed=1).sample()
    reader.predict([small, small])
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "warning: image 0 is 160x60, the reader was trained on 280x90; it reads such images badly "
        "(the shipped reader captcha62-160x60 fits them)"
    ]
    reader.predict([Image.new("L", (290, 92), 255)])  # near the trained shape: no warning
    assert capsys.readouterr().err == ""
    reader.predict([Image.new("L", (100, 100), 255)])
    assert "100x100" in capsys.readouterr().err


def console(*args, cwd, env=None):
    return subprocess.run(
        [sys.executable, "-m", "captcha_stream", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def test_help_lists_every_command_and_exits_0(tmp_path):
    from captcha_stream.__main__ import COMMANDS

    done = console("--help", cwd=tmp_path)
    assert done.returncode == 0
    for name in COMMANDS:
        assert f"  {name} " in done.stdout
    done = console("nonsense", cwd=tmp_path)
    assert done.returncode == 2 and "error: no command 'nonsense'" in done.stderr
    # No command imports torch before its arguments are parsed (its --help answers at once).
    probe = "import sys, runpy; sys.argv = ['captcha-stream', sys.argv[1], '--help']\n"
    probe += "try:\n    runpy.run_module('captcha_stream', run_name='__main__')\nexcept SystemExit:\n    pass\n"
    probe += "assert 'torch' not in sys.modules, sys.argv[1]"
    for name in COMMANDS:
        done = subprocess.run([sys.executable, "-c", probe, name], capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert f"usage: captcha-stream {name}" in done.stdout


def test_configs_by_name_from_any_folder(tmp_path):
    from captcha_stream.cli import resolve_config

    assert resolve_config("cpu").resolve() == ROOT / "configs" / "cpu.yaml"
    assert resolve_config("configs/smoke.yaml").resolve() == ROOT / "configs" / "smoke.yaml"
    done = console("export", "--config", "smoke", "--n", "2", "--out", "s", "--workers", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "s" / "labels.csv").is_file()


@pytest.mark.slow
def test_an_installed_wheel_reads_with_its_bundled_reader_from_an_unrelated_folder(tmp_path, captcha):
    image, label = captcha
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("captcha_stream-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in ("captcha62.pt", "captcha62-160x60.pt", "classic36.pt"):
        assert f"captcha_stream/weights/{shipped}" in names
    assert "captcha_stream/configs/cpu.yaml" in names
    target = tmp_path / "site"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    image.save(elsewhere / "captcha.png")
    # The installed copy comes first on the path, so nothing is read from this checkout.
    env = {**os.environ, "PYTHONPATH": str(target)}
    script = target / "bin" / "captcha-stream"
    done = subprocess.run(
        [sys.executable, str(script), "predict", "captcha.png"], capture_output=True, text=True, cwd=elsewhere, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\t")[:2] == ["captcha.png", label]
    assert f"using captcha62 ({target / 'captcha_stream' / 'weights' / 'captcha62.pt'})" in done.stderr
    done = subprocess.run(
        [sys.executable, str(script), "export", "--config", "cpu", "--n", "1", "--out", "one", "--workers", "1"],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=env,
    )
    assert done.returncode == 0, done.stderr


def test_demo_renders_reads_and_can_run_again(tmp_path):
    for _ in range(2):
        done = console("demo", "--n", "3", "--seed", "5", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "rendered 3 captchas into demo/ (seed 5" in done.stdout and "full-string accuracy" in done.stdout
        assert (tmp_path / "demo" / "view.html").is_file()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    done = console("demo", "--out", "mine", cwd=tmp_path)
    assert done.returncode == 2 and "mine: exists and holds something else than a demo" in done.stderr
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
