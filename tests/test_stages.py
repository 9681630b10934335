"""Reader stacks over reader/stages.py: every stack reads, strips, re-attaches and exports alike.

Tiny random weights on classic36-sized images (the second look needs 72 px of height): the stage
machinery is under test here, not accuracy.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from captcha_stream.checkpoint import load_checkpoint, save_checkpoint
from captcha_stream.config import load_config
from captcha_stream.errors import CaptchaStreamError
from captcha_stream.model.codec import Codec
from captcha_stream.model.crnn import CRNN
from captcha_stream.model.denoiser import Denoiser
from captcha_stream.model.glyph_classifier import glyph_classifier
from captcha_stream.reader import denoised, second_look, stages
from captcha_stream.reader.build import model_from_checkpoint

ROOT = Path(__file__).resolve().parents[1]
STACKS = [(), ("second_look",), ("denoiser",), ("second_look", "denoiser")]


def tiny_state(names):
    torch.manual_seed(0)
    cfg = load_config(
        ROOT / "configs" / "classic36.yaml",
        {"model.cnn_channels": [4, 4, 8], "model.rnn_hidden": 8, "model.rnn": "gru"},
    )
    crnn = CRNN(cfg.data, cfg.model, Codec(cfg.data.charset).num_classes)
    state = {"model": crnn.state_dict(), "config": cfg.to_dict(), "charset": cfg.data.charset, "step": 1}
    if "second_look" in names:
        # Scaled up so the classifier's opinion moves the reading.
        classifier = glyph_classifier()
        classifier[-1].weight.data *= 50
        state = second_look.attach(state, classifier.state_dict(), "0O", 6, 41)
    if "denoiser" in names:
        state = denoised.attach(state, Denoiser(width=4).state_dict(), 4)
    return state


@pytest.fixture(scope="module")
def images():
    from captcha_stream.data.images import preprocess
    from captcha_stream.data.render import Renderer

    data = load_config(ROOT / "configs" / "classic36.yaml").data
    renderer = Renderer(data, seed=3)
    return torch.stack([preprocess(renderer.render(text), data) for text in ("0O0O", "O0AB", "Z0O9")])


@pytest.fixture(params=STACKS, ids=lambda names: "+".join(("crnn", *names)))
def stack(request, tmp_path):
    path = tmp_path / "reader.pt"
    save_checkpoint(tiny_state(request.param), path, keep_previous=False)
    return request.param, path


def test_stack_reads_log_probabilities_of_the_crnns_shape(stack, images):
    names, path = stack
    model, cfg, state = model_from_checkpoint(path)
    assert stages.names_in(state) == list(names)
    with torch.no_grad():
        out = model(images)
        crnn_out = model_from_checkpoint(path, without=names)[0](images)
    assert out.shape == crnn_out.shape == (crnn_out.shape[0], 3, len(cfg.data.charset) + 1)
    assert torch.allclose(out.exp().sum(-1), torch.ones(out.shape[:2]), atol=1e-4)
    # Every wrapper says what it holds under `reader`, down to the CRNN.
    depth, inner = 0, model
    while hasattr(inner, "reader"):
        depth, inner = depth + 1, inner.reader
    assert depth == len(names) and isinstance(inner, CRNN)


def test_strip_and_attach_round_trip(stack, images, tmp_path):
    names, path = stack
    state = load_checkpoint(path)
    bare = stages.without(state, names)
    assert stages.names_in(bare) == []
    again = bare
    for name in reversed(names):  # attached in any order, they wrap in the registry's order
        again = stages.add(again, name, state[name])
    assert stages.names_in(again) == list(names)
    save_checkpoint(again, tmp_path / "again.pt", keep_previous=False)
    with torch.no_grad():
        assert torch.equal(
            model_from_checkpoint(path)[0](images), model_from_checkpoint(tmp_path / "again.pt")[0](images)
        )


def test_onnx_exports_the_stack_or_refuses_naming_the_stage(stack, images, tmp_path):
    pytest.importorskip("onnxruntime")
    from captcha_stream.reader.onnx import OnnxModel, export_onnx

    names, path = stack
    if "second_look" in names:
        with pytest.raises(
            CaptchaStreamError, match="has a second_look stage, which ONNX cannot carry.*--without second_look"
        ):
            export_onnx(path, tmp_path / "m.onnx")
        return
    export_onnx(path, tmp_path / "m.onnx")
    with torch.no_grad():
        expected = model_from_checkpoint(path)[0](images).numpy()
    assert np.allclose(OnnxModel(tmp_path / "m.onnx")(images.numpy()), expected, atol=1e-4)


def test_leaving_out_a_stage_it_does_not_have_or_does_not_know_is_one_line():
    state = tiny_state(("denoiser",))
    with pytest.raises(CaptchaStreamError, match="has no second_look stage to leave out \\(it has: denoiser\\)"):
        stages.without(state, ["second_look"])
    with pytest.raises(CaptchaStreamError, match="no stage 'sharpener' \\(stages: second_look, denoiser\\)"):
        stages.without(state, ["sharpener"])


@pytest.mark.parametrize(
    "name, expected",
    [("captcha62.pt", []), ("captcha62-160x60.pt", []), ("classic36.pt", ["second_look", "denoiser"])],
)
def test_the_shipped_checkpoints_load_as_stacks(name, expected):
    state = load_checkpoint(ROOT / "captcha_stream" / "weights" / name)
    assert stages.names_in(state) == expected


def test_average_refuses_a_stage_instead_of_dropping_it(tmp_path):
    from captcha_stream.tools.average import average_checkpoints

    for k, names in enumerate([("denoiser",), ()]):
        save_checkpoint(tiny_state(names), tmp_path / f"{k}.pt", keep_previous=False)
    with pytest.raises(CaptchaStreamError, match="0.pt: carries a denoiser stage, which does not average"):
        average_checkpoints([tmp_path / "0.pt", tmp_path / "1.pt"], tmp_path / "mean.pt")


class Inverted(torch.nn.Module):
    """A stage for the test below: reads the negative of each image."""

    def __init__(self, reader):
        super().__init__()
        self.reader = reader

    def forward(self, images):
        return self.reader(255 - images)


def build_inverted(reader, saved, cfg, path):
    return Inverted(reader)


def test_a_new_stage_is_one_registry_line_and_one_builder(monkeypatch, images, tmp_path):
    new = stages.Stage("inverted", "tests.test_stages:build_inverted", True, "reads the negative image")
    monkeypatch.setattr(stages, "STAGES", (*stages.STAGES, new))
    monkeypatch.setattr(stages, "BY_NAME", {**stages.BY_NAME, "inverted": new})
    state = stages.add(tiny_state(("denoiser",)), "inverted", {})
    save_checkpoint(state, tmp_path / "inv.pt", keep_previous=False)
    model, _, _ = model_from_checkpoint(tmp_path / "inv.pt")
    assert isinstance(model, Inverted) and stages.names_in(state) == ["denoiser", "inverted"]
    with torch.no_grad():
        inner = model_from_checkpoint(tmp_path / "inv.pt", without=["inverted"])[0]
        assert torch.equal(model(images), inner(255 - images))
    from captcha_stream.tools.slim import slim_checkpoint

    slim_checkpoint(tmp_path / "inv.pt", tmp_path / "slim.pt", without=["inverted"])
    assert stages.names_in(load_checkpoint(tmp_path / "slim.pt")) == ["denoiser"]
