"""model.specialist_symbols: a branch that re-splits the main model's probability of a symbol group."""

import pytest
import torch

from captcha_stream.codec import Codec
from captcha_stream.export import export_set
from captcha_stream.folder import FolderDataset
from captcha_stream.model import CRNN
from captcha_stream.predict import Recognizer, model_from_checkpoint
from tests.test_train import quiet_train, smoke


def pair(data, model_cfg):
    """The same weights with and without a specialist for '01'."""
    codec = Codec(data.charset)
    torch.manual_seed(0)
    plain = CRNN(data, model_cfg, codec.num_classes).eval()
    model_cfg.specialist_symbols = "01"
    with_branch = CRNN(data, model_cfg, codec.num_classes).eval()
    outcome = with_branch.load_state_dict(plain.state_dict(), strict=False)
    assert not outcome.unexpected_keys and all(k.startswith("specialist.") for k in outcome.missing_keys)
    return plain, with_branch, codec


@pytest.fixture
def models(tmp_path):
    cfg = smoke(tmp_path)
    images = torch.randint(0, 256, (4, cfg.data.channels, cfg.data.height, cfg.data.width), dtype=torch.uint8)
    return (*pair(cfg.data, cfg.model), images)


def test_fresh_branch_changes_nothing_and_output_stays_normalized(models):
    plain, with_branch, _, images = models
    a, b = plain(images), with_branch(images)
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(b.logsumexp(dim=2), torch.zeros(b.shape[:2]), atol=1e-5)


def test_branch_moves_only_the_split_within_its_group(models):
    plain, with_branch, codec, images = models
    with torch.no_grad():
        with_branch.specialist.head.bias.copy_(torch.tensor([3.0, -3.0]))
        a, b = plain(images), with_branch(images)
    ids = codec.encode("01")
    others = [i for i in range(codec.num_classes) if i not in ids]
    assert torch.allclose(a[..., others], b[..., others], atol=1e-5)
    # The group keeps its total probability; only how it is divided changes, by exp(6).
    assert torch.allclose(a[..., ids].logsumexp(2), b[..., ids].logsumexp(2), atol=1e-5)
    assert torch.allclose(b[..., ids[0]] - b[..., ids[1]], a[..., ids[0]] - a[..., ids[1]] + 6.0, atol=1e-4)
    assert torch.allclose(b.logsumexp(dim=2), torch.zeros(b.shape[:2]), atol=1e-5)


@pytest.fixture(scope="module")
def branched(tmp_path_factory):
    """A finished run, then a frozen-base run that adds a specialist to it."""
    tmp = tmp_path_factory.mktemp("specialist")
    quiet_train(smoke(tmp, **{"train.steps": 4}))
    source = tmp / "run" / "last.pt"
    cfg = smoke(
        tmp,
        **{
            "train.steps": 6,
            "train.run_dir": str(tmp / "branch"),
            "train.init_from": str(source),
            "train.freeze_base": True,
            "model.specialist_symbols": "01",
            "optim.lr": 0.01,
            "optim.warmup_steps": 1,
        },
    )
    quiet_train(cfg)
    return tmp, source, tmp / "branch" / "last.pt", cfg


def test_freeze_base_trains_the_branch_alone(branched):
    _, source, branch, _ = branched
    before = torch.load(source, weights_only=True)["model"]
    after = torch.load(branch, weights_only=True)["model"]
    # Every weight and BatchNorm statistic of the main model is where init_from left it...
    assert set(before) == {k for k in after if not k.startswith("specialist.")}
    assert all(torch.equal(before[k], after[k]) for k in before)
    # ...while the branch, which started as a copy of the main convolutions and a zero head, moved.
    assert after["specialist.head.weight"].abs().sum() > 0
    moved = [k for k in before if k.startswith("features.") and not torch.equal(before[k], after["specialist." + k])]
    assert moved


def test_checkpoint_with_a_branch_reads_alone(branched):
    tmp, _, branch, cfg = branched
    model, saved, _ = model_from_checkpoint(branch)
    assert saved.model.specialist_symbols == "01" and model.specialist is not None
    export_set(tmp / "frozen", 12, cfg.data, seed=5, workers=1, progress=False, log=lambda s: None)
    data = FolderDataset(tmp / "frozen", cfg.data)
    readings = Recognizer.from_checkpoint(branch).predict([data.path(i) for i in range(len(data))])
    assert len(readings) == 12 and all(set(r.text) <= set(cfg.data.charset) for r in readings)


def test_onnx_export_keeps_the_branch(branched):
    pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed")
    pytest.importorskip("onnx", reason="the [onnx] extra is not installed")
    from captcha_stream.onnx_export import export_onnx

    tmp, _, branch, cfg = branched
    out = export_onnx(branch, tmp / "branch.onnx")
    images = torch.randint(0, 256, (3, cfg.data.channels, cfg.data.height, cfg.data.width), dtype=torch.uint8)
    a = Recognizer.from_checkpoint(branch).log_probs(images).numpy()
    b = Recognizer.from_checkpoint(out).log_probs(images.numpy())
    assert abs(a - b).max() < 1e-4
