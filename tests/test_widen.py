"""Widening a trained model: the wider copy computes the same function, and training uses the new units."""

import dataclasses
from pathlib import Path

import pytest
import torch

from captcha_stream.config import load_config
from captcha_stream.errors import CaptchaStreamError
from captcha_stream.model.crnn import CRNN
from captcha_stream.tools.widen import widen_state

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"
CLASSES = 11


def pair(rnn="gru", layers=1, bidirectional=True, channels=(12, 24), hidden=48):
    old = load_config(SMOKE, {"model.rnn": rnn, "model.rnn_layers": layers, "model.bidirectional": bidirectional})
    new = dataclasses.replace(old, model=dataclasses.replace(old.model, cnn_channels=list(channels), rnn_hidden=hidden))
    return old, new


def trained_looking(cfg, seed=0):
    """A random model whose batch-norm statistics are not the defaults, as a trained one's are not."""
    torch.manual_seed(seed)
    model = CRNN(cfg.data, cfg.model, CLASSES)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    return model


def images(cfg, n=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    shape = (n, cfg.data.channels, cfg.data.height, cfg.data.width)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)


@pytest.mark.parametrize(
    "rnn, layers, bidirectional", [("gru", 1, True), ("lstm", 1, True), ("lstm", 2, True), ("lstm", 2, False)]
)
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_wider_copy_reads_exactly_as_the_original(rnn, layers, bidirectional, mode):
    old_cfg, new_cfg = pair(rnn, layers, bidirectional)
    old = trained_looking(old_cfg)
    wide = CRNN(new_cfg.data, new_cfg.model, CLASSES)
    wide.load_state_dict(widen_state(old.state_dict(), old_cfg, new_cfg, CLASSES))
    assert sum(p.numel() for p in wide.parameters()) > 2 * sum(p.numel() for p in old.parameters())
    # Train mode too: batch statistics of the old channels must not see the new ones.
    old.train(mode == "train")
    wide.train(mode == "train")
    x = images(old_cfg)
    with torch.no_grad():
        assert torch.allclose(old(x), wide(x), atol=1e-5)


def test_a_model_with_an_unpooled_stem_widens_exactly_and_keeps_its_stem():
    stem = {"model.stem_stride": 4, "model.stem_pool": False, "model.width_pools": 1}
    old_cfg = load_config(SMOKE, stem)
    new_cfg = dataclasses.replace(old_cfg, model=dataclasses.replace(old_cfg.model, cnn_channels=[12, 24]))
    old = trained_looking(old_cfg)
    wide = CRNN(new_cfg.data, new_cfg.model, CLASSES)
    wide.load_state_dict(widen_state(old.state_dict(), old_cfg, new_cfg, CLASSES))
    old.eval()
    wide.eval()
    x = images(old_cfg)
    with torch.no_grad():
        assert torch.allclose(old(x), wide(x), atol=1e-5)
    pooled = dataclasses.replace(new_cfg, model=dataclasses.replace(new_cfg.model, stem_pool=True))
    with pytest.raises(CaptchaStreamError, match="model.stem_pool: widening keeps it"):
        widen_state(old.state_dict(), old_cfg, pooled, CLASSES)


def test_training_brings_the_new_units_into_use():
    old_cfg, new_cfg = pair("lstm")
    old = trained_looking(old_cfg)
    wide = CRNN(new_cfg.data, new_cfg.model, CLASSES)
    wide.load_state_dict(widen_state(old.state_dict(), old_cfg, new_cfg, CLASSES))
    new_cols = torch.arange(old_cfg.model.rnn_hidden, new_cfg.model.rnn_hidden)  # forward direction's new units
    assert torch.count_nonzero(wide.head.weight[:, new_cols]) == 0
    x = images(old_cfg, n=8)
    log_probs = wide(x)
    targets = torch.randint(1, CLASSES, (8, 2))
    loss = torch.nn.functional.ctc_loss(log_probs, targets, torch.full((8,), log_probs.shape[0]), torch.full((8,), 2))
    loss.backward()
    # The head's silent columns get a gradient from the new units' activity: they start learning.
    assert torch.count_nonzero(wide.head.weight.grad[:, new_cols]) > 0


def test_new_units_are_seeded():
    old_cfg, new_cfg = pair()
    state = trained_looking(old_cfg).state_dict()
    a = widen_state(state, old_cfg, new_cfg, CLASSES, seed=3)
    b = widen_state(state, old_cfg, new_cfg, CLASSES, seed=3)
    c = widen_state(state, old_cfg, new_cfg, CLASSES, seed=4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["features.1.0.weight"], c["features.1.0.weight"])
    # ... and only the new units differ between seeds.
    assert torch.equal(a["features.1.0.weight"][:16, :8], c["features.1.0.weight"][:16, :8])


def test_widen_command_then_continue_training(tmp_path, capsys):
    from captcha_stream.checkpoint import save_checkpoint
    from captcha_stream.cli import run, widen_main
    from captcha_stream.reader.build import model_from_checkpoint
    from captcha_stream.train.loop import train

    base = {
        "train.run_dir": str(tmp_path / "run"),
        "eval.test_dir": str(tmp_path / "test"),
        "eval.val_dir": str(tmp_path / "val"),
    }
    cfg = load_config(SMOKE, base)
    old = trained_looking(cfg)
    src = tmp_path / "old.pt"
    save_checkpoint({"config": cfg.to_dict(), "charset": cfg.data.charset, "model": old.state_dict(), "step": 7}, src)
    dst = tmp_path / "wide.pt"
    with pytest.raises(SystemExit) as exc:
        run(widen_main, [str(src), str(dst), "--set", "model.cnn_channels=[12,24]", "--set", "model.rnn_hidden=40"])
    assert exc.value.code == 0 and "wide.pt" in capsys.readouterr().out
    wide, wide_cfg, state = model_from_checkpoint(dst)
    assert wide_cfg.model.cnn_channels == [12, 24] and wide_cfg.model.rnn_hidden == 40
    assert "old.pt (step 7)" in state["widened_from"] and "optimizer" not in state
    old.eval()
    x = images(cfg)
    with torch.no_grad():
        assert torch.allclose(old(x), wide(x), atol=1e-5)
    # The documented continuation: init_from the wide copy with the same model.* settings.
    more = load_config(
        SMOKE,
        {
            **base,
            "train.init_from": str(dst),
            "model.cnn_channels": [12, 24],
            "model.rnn_hidden": 40,
            "train.steps": 2,
            "train.eval_every": 2,
        },
    )
    result = train(more, progress=False, log=lambda s: None)
    assert result["step"] == 2


def test_widen_keeps_the_stages_and_reads_as_before(tmp_path, read_folder, classic36_set):
    from captcha_stream.checkpoint import load_checkpoint
    from captcha_stream.reader import stages
    from captcha_stream.tools.widen import widen_checkpoint

    src = ROOT / "captcha_stream" / "weights" / "classic36.pt"
    wide = widen_checkpoint(src, tmp_path / "wide.pt", {"model.rnn_hidden": 200})
    assert stages.names_in(load_checkpoint(wide)) == ["second_look", "denoiser"]
    assert read_folder(wide, classic36_set)[0] == read_folder(src, classic36_set)[0]
