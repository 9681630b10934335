"""optim.name: muon — Muon for the hidden weight matrices, AdamW for the rest."""

import pytest
import torch

from captcha_stream.config import load_config
from captcha_stream.errors import CaptchaStreamError
from captcha_stream.model.crnn import CRNN
from captcha_stream.train.muon import MuonAdamW, orthogonalize
from captcha_stream.train.schedule import make_optimizer


@pytest.mark.parametrize("shape", [(96, 864), (384, 128), (16, 16)])
def test_orthogonalize_sets_every_singular_value_near_one(shape):
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(0)) * 37.0
    s = torch.linalg.svdvals(orthogonalize(g))
    assert orthogonalize(g).shape == g.shape
    assert s.min() > 0.6 and s.max() < 1.25, s


def _model(rnn: str) -> tuple[CRNN, object]:
    cfg = load_config("configs/cpu.yaml", {"optim.name": "muon", "model.rnn": rnn})
    return CRNN(cfg.data, cfg.model, len(cfg.data.charset) + 1), cfg


@pytest.mark.parametrize("rnn, gates", [("gru", 3), ("lstm", 4)])
def test_the_input_layer_head_and_vectors_stay_with_adamw(rnn, gates):
    model, cfg = _model(rnn)
    opt = make_optimizer(model, cfg)
    assert isinstance(opt, MuonAdamW)
    where = {id(p): g for g in opt.param_groups for p in g["params"]}
    assert sorted(where) == sorted(id(p) for p in model.parameters())  # each exactly once
    assert not where[id(model.features[0][0].weight)]["muon"]
    assert not where[id(model.head.weight)]["muon"]
    assert all(
        not where[id(p)]["muon"] and where[id(p)]["weight_decay"] == 0 for p in model.parameters() if p.ndim == 1
    )
    assert where[id(model.project.weight)]["muon"] and where[id(model.project.weight)]["blocks"] == 1
    assert where[id(model.rnn.weight_hh_l0)]["muon"] and where[id(model.rnn.weight_hh_l0)]["blocks"] == gates


def test_a_recurrent_layers_gates_are_orthogonalised_one_by_one():
    model, cfg = _model("gru")
    cfg.optim.weight_decay = 0.0
    opt = make_optimizer(model, cfg)
    w = model.rnn.weight_hh_l0
    grad = torch.randn_like(w)
    for p in model.parameters():
        p.grad = None
    w.grad = grad.clone()
    before = w.detach().clone()
    opt.step()
    # Nesterov momentum from zero only scales the first gradient, and the iteration normalises it.
    blocks = [orthogonalize(g) for g in grad.chunk(3)]
    expected = before - cfg.optim.lr * 0.2 * 128**0.5 * torch.cat(blocks)
    torch.testing.assert_close(w.detach(), expected, rtol=1e-4, atol=1e-6)
    whole = before - cfg.optim.lr * 0.2 * 384**0.5 * orthogonalize(grad)
    assert not torch.allclose(w.detach(), whole, atol=1e-5)


def test_a_bad_optimizer_name_is_named():
    with pytest.raises(CaptchaStreamError, match=r"optim\.name: must be adamw or muon, got 'sgd'"):
        load_config("configs/cpu.yaml", {"optim.name": "sgd"})
