"""captcha_stream/reader/denoised.py: a checkpoint's denoiser is what its reader reads through."""

from pathlib import Path

import pytest
import torch

from captcha_stream.checkpoint import load_checkpoint, save_checkpoint
from captcha_stream.errors import CaptchaStreamError
from captcha_stream.model.denoiser import Denoiser
from captcha_stream.reader.denoised import Denoised, attach
from captcha_stream.reader.second_look import SecondLook
from captcha_stream.tools.slim import slim_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def constant(residual):
    """A denoiser that adds `residual` to every pixel: 0 leaves images as they are, 2 turns them white."""
    model = Denoiser(width=4)
    torch.nn.init.zeros_(model.body[-1].weight)
    model.body[-1].bias.data.fill_(residual)
    return model.eval()


def with_denoiser(path, residual, source):
    save_checkpoint(attach(load_checkpoint(source), constant(residual).state_dict(), 4), path, keep_previous=False)
    return path


def test_the_reader_reads_what_the_denoiser_makes(read_folder, classic36_set, classic36_reader, tmp_path):
    plain, _ = read_folder(classic36_reader, classic36_set)
    same, reader = read_folder(with_denoiser(tmp_path / "identity.pt", 0.0, classic36_reader), classic36_set)
    # In front of everything, the second look included: its crops come from the denoised image.
    assert isinstance(reader.model, Denoised) and isinstance(reader.model.reader, SecondLook)
    assert same == plain
    # A denoiser that makes every image white: every captcha reads the same, whatever it shows.
    white, _ = read_folder(with_denoiser(tmp_path / "white.pt", 2.0, classic36_reader), classic36_set)
    assert len(set(white)) == 1 and len(set(plain)) == len(plain)


def test_clean_gives_the_bytes_of_an_image(tmp_path):
    images = torch.tensor([[[[0, 128, 255]]]], dtype=torch.uint8)
    assert torch.equal(constant(0.0).clean(images), images)
    assert torch.equal(constant(2.0).clean(images), torch.full_like(images, 255))


def test_the_shipped_classic36_carries_a_denoiser():
    from captcha_stream.reader.recognizer import Recognizer

    model = Recognizer.from_checkpoint(ROOT / "captcha_stream" / "weights" / "classic36.pt").model
    assert isinstance(model, Denoised) and isinstance(model.reader, SecondLook)


def test_slim_keeps_the_denoiser_unless_told_and_onnx_carries_it(
    read_folder, classic36_set, classic36_reader, tmp_path
):
    checkpoint = with_denoiser(tmp_path / "d.pt", 2.0, classic36_reader)
    assert "denoiser" in load_checkpoint(slim_checkpoint(checkpoint, tmp_path / "slim.pt"))
    alone = slim_checkpoint(checkpoint, tmp_path / "alone.pt", without=["second_look", "denoiser"])
    assert not {"denoiser", "second_look"} & set(load_checkpoint(alone))
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from captcha_stream.reader.onnx import export_onnx

    reader_and_denoiser = slim_checkpoint(checkpoint, tmp_path / "rd.pt", without=["second_look"])
    export_onnx(reader_and_denoiser, tmp_path / "rd.onnx")
    texts, _ = read_folder(tmp_path / "rd.onnx", classic36_set)
    assert texts == read_folder(reader_and_denoiser, classic36_set)[0]
    assert len(set(texts)) == 1  # the white denoiser went into the ONNX graph too


def test_bad_denoisers_get_one_line(tmp_path, classic36_reader):
    state = load_checkpoint(classic36_reader)
    rgb = {**state, "config": {**state["config"], "data": {**state["config"]["data"], "channels": 3}}}
    with pytest.raises(CaptchaStreamError, match="grey images"):
        attach(rgb, constant(0.0).state_dict(), 4)
    with pytest.raises(CaptchaStreamError, match=r"do not fit Denoiser\(width=8\)"):
        attach(state, constant(0.0).state_dict(), 8)
    broken = {**state, "denoiser": {"model": {"x": torch.zeros(1)}, "width": 4}}
    save_checkpoint(broken, tmp_path / "broken.pt", keep_previous=False)
    from captcha_stream.reader.build import model_from_checkpoint

    with pytest.raises(CaptchaStreamError, match="broken.pt: its denoiser cannot be read"):
        model_from_checkpoint(tmp_path / "broken.pt")
