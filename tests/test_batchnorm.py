"""Validation reads BatchNorm statistics measured for the weights being read, not the lagging running averages."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from captcha_stream.cli import evaluate_main
from captcha_stream.errors import CaptchaStreamError
from captcha_stream.eval.evaluation import evaluate_checkpoint
from captcha_stream.reader.build import model_from_checkpoint
from captcha_stream.train.batchnorm import calibration_images, has_batchnorm, with_fresh_statistics
from captcha_stream.train.loop import with_measured_statistics

from .test_train import logged, quiet_train, smoke


class ToFloat(nn.Module):
    # The trainer feeds uint8 images; the reader scales them itself.
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() / 255


def net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(ToFloat(), nn.Conv2d(1, 4, 3), nn.Dropout(0.5), nn.BatchNorm2d(4), nn.ReLU())


def test_statistics_are_the_mean_and_variance_of_the_inputs_and_the_model_is_left_alone():
    model = net().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.randint(0, 256, (12, 1, 8, 8), dtype=torch.uint8)
    fresh = with_fresh_statistics(model, images, batch_size=12, device=torch.device("cpu"))
    norm = fresh[3]
    with torch.no_grad():
        # The input BatchNorm sees, dropout off: the copy measures what evaluation will feed it.
        inputs = fresh[1](fresh[0](images))
    assert torch.allclose(norm.running_mean, inputs.mean(dim=(0, 2, 3)), atol=1e-4)
    assert torch.allclose(norm.running_var, inputs.var(dim=(0, 2, 3), unbiased=True), rtol=1e-4)
    assert not fresh.training and int(norm.num_batches_tracked) == 1
    # The trainer's model (and its training mode) untouched: its running averages are resumable state.
    assert model.training
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_statistics_average_over_batches():
    model = net()
    images = torch.randint(0, 256, (12, 1, 8, 8), dtype=torch.uint8)
    whole = with_fresh_statistics(model, images, batch_size=12, device=torch.device("cpu"))[3]
    thirds = with_fresh_statistics(model, images, batch_size=4, device=torch.device("cpu"))[3]
    # Equal batches: the plain average of the batch means is the mean (not an exponential average).
    assert torch.allclose(thirds.running_mean, whole.running_mean, atol=1e-4)
    assert int(thirds.num_batches_tracked) == 3


def test_calibration_images_takes_the_first_n_and_a_model_without_batchnorm_is_noticed():
    batches = [SimpleNamespace(images=torch.full((5, 1, 2, 2), i, dtype=torch.uint8)) for i in range(4)]
    taken = calibration_images(iter(batches), 12)
    assert taken.shape[0] == 12 and taken[:, 0, 0, 0].tolist() == [0] * 5 + [1] * 5 + [2] * 2
    assert has_batchnorm(net()) and not has_batchnorm(nn.Linear(2, 2))


def _buffers_and_weights(path):
    state = torch.load(path, weights_only=True)["model"]
    stats = {k: v for k, v in state.items() if "running_" in k or "num_batches" in k}
    return stats, {k: v for k, v in state.items() if k not in stats}


@pytest.mark.parametrize("refresh", [0, 32])
def test_best_checkpoint_keeps_the_statistics_it_was_read_with(tmp_path, refresh):
    # One validation, at the last step: best.pt and last.pt hold the same weights.
    cfg = smoke(tmp_path, **{"train.steps": 4, "train.eval_every": 4, "eval.bn_refresh": refresh})
    quiet_train(cfg)
    best_stats, best_weights = _buffers_and_weights(tmp_path / "run" / "best.pt")
    last_stats, last_weights = _buffers_and_weights(tmp_path / "run" / "last.pt")
    assert all(torch.equal(best_weights[k], v) for k, v in last_weights.items())
    means = [k for k in best_stats if k.endswith("running_mean")]
    assert means
    if refresh == 0:
        assert all(torch.equal(best_stats[k], v) for k, v in last_stats.items())
    else:
        assert not any(torch.equal(best_stats[k], last_stats[k]) for k in means)
        counted = {int(v) for k, v in best_stats.items() if k.endswith("num_batches_tracked")}
        assert counted == {refresh // cfg.train.batch_size}


def test_resume_equals_uninterrupted_when_statistics_were_measured_before_the_stop(tmp_path):
    # Validations at 2, 4, 6, 8: the straight run makes its calibration images at step 2, the run
    # resumed from step 4 at step 6. With dropout, any draw from the global RNG would change the losses.
    overrides = {
        "train.steps": 8,
        "train.log_every": 1,
        "train.checkpoint_every": 4,
        "train.eval_every": 2,
        "model.dropout": 0.2,
        "model.rnn_layers": 2,
    }
    cfg = smoke(tmp_path, **overrides)
    quiet_train(cfg)
    straight = {r["step"]: r["loss"] for r in logged(tmp_path / "run") if "loss" in r}
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    (resumed_dir / "last.pt").write_bytes((tmp_path / "run" / "last.prev.pt").read_bytes())
    cfg.train.run_dir = str(resumed_dir)
    quiet_train(cfg, resume=True)
    again = {r["step"]: r["loss"] for r in logged(resumed_dir) if "loss" in r}
    assert sorted(again) == [5, 6, 7, 8]
    assert all(again[s] == straight[s] for s in again)
    evals = {r["step"]: r["eval"] for r in logged(resumed_dir) if "eval" in r}
    assert evals[8] == {r["step"]: r["eval"] for r in logged(tmp_path / "run") if "eval" in r}[8]


def test_evaluate_reads_a_mid_run_checkpoint_as_validation_did(tmp_path, capsys):
    # One validation at the last step: last.pt holds the running averages, best.pt the same weights
    # with the statistics validation measured. `evaluate --bn-refresh` must measure the same ones.
    cfg = smoke(tmp_path, **{"train.steps": 4, "train.eval_every": 4, "eval.bn_refresh": 32})
    quiet_train(cfg)
    run = tmp_path / "run"
    best_stats, _ = _buffers_and_weights(run / "best.pt")
    model, ckpt_cfg, _ = model_from_checkpoint(run / "last.pt")
    measured = with_measured_statistics(model, ckpt_cfg, torch.device("cpu"), 32).state_dict()
    for name, value in best_stats.items():
        assert torch.allclose(measured[name].float(), value.float(), atol=1e-5), name

    def refresh(m, c, d):
        return with_measured_statistics(m, c, d, 32)

    validation = [r["eval"] for r in logged(run) if "eval" in r][-1]
    read = evaluate_checkpoint(run / "last.pt", data=tmp_path / "val", progress=False, prepare=refresh)
    assert read.results.summary() == pytest.approx(validation)
    args = ["--checkpoint", str(run / "last.pt"), "--data", str(tmp_path / "val"), "--no-progress"]
    assert evaluate_main([*args, "--bn-refresh", "32", "--samples", "0"]) == 0
    said = capsys.readouterr().out
    assert "BatchNorm measured on 32 stream images" in said
    # What validation logged at that step (CER tells a 4-step model's readings apart; accuracy is 0).
    assert f"CER                        {validation['cer']:.2%}" in said
    with pytest.raises(CaptchaStreamError, match="--bn-refresh: must be at least 1"):
        with_measured_statistics(model, ckpt_cfg, torch.device("cpu"), 0)
    # A reader wrapped in further stages (a denoiser, a second look) is refused by name, not half-measured.
    with pytest.raises(CaptchaStreamError, match="--bn-refresh: .*holds more stages"):
        with_measured_statistics(nn.Sequential(model), ckpt_cfg, torch.device("cpu"), 32)
