import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from captcha_stream.config import load_config
from captcha_stream.data.frozen import export_set
from captcha_stream.errors import CaptchaStreamError
from captcha_stream.train.loop import train

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"


def smoke(tmp_path, **overrides):
    base = {
        "train.run_dir": str(tmp_path / "run"),
        "eval.test_dir": str(tmp_path / "test"),
        "eval.val_dir": str(tmp_path / "val"),
    }
    return load_config(SMOKE, {**base, **overrides})


def logged(run_dir):
    """Every record of the run's metrics.jsonl, in order."""
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def losses(run_dir):
    return {rec["step"]: rec["loss"] for rec in logged(run_dir) if "loss" in rec}


def quiet_train(cfg, **kw):
    return train(cfg, progress=False, log=lambda s: None, **kw)


def test_tiny_model_overfits_tiny_set(tmp_path):
    overrides = {
        "data.charset": "abcd",
        "data.min_length": 2,
        "data.max_length": 3,
        "data.width": 64,
        "data.height": 32,
        "data.font_sizes": [26],
        "model.cnn_channels": [16, 32],
        "model.rnn_hidden": 64,
        "optim.lr": 0.005,
        "optim.warmup_steps": 10,
        "train.steps": 600,
        "train.batch_size": 32,
        "train.eval_every": 600,
        "train.checkpoint_every": 600,
        "train.log_every": 100,
    }
    cfg = smoke(tmp_path, **overrides)
    export_set(tmp_path / "tiny", 32, cfg.data, seed=0, workers=1, progress=False, log=lambda s: None)
    cfg.train.train_dir = cfg.eval.val_dir = str(tmp_path / "tiny")
    result = quiet_train(cfg)
    assert result["final_eval"]["full_string_accuracy"] >= 0.9, result["final_eval"]
    assert (tmp_path / "run" / "best.pt").is_file()


def test_best_is_chosen_on_validation_and_reported_on_test(tmp_path):
    from captcha_stream.checkpoint import inference_weights, load_checkpoint
    from captcha_stream.data.folder import FolderDataset
    from captcha_stream.data.frozen import read_meta
    from captcha_stream.eval.evaluation import load_all, run_eval

    cfg = smoke(tmp_path, **{"train.steps": 6, "train.eval_every": 2, "train.log_every": 2, "train.ema_decay": 0.5})
    result = quiet_train(cfg)
    assert read_meta(tmp_path / "val")["seed"] == cfg.eval.val_seed
    assert read_meta(tmp_path / "test")["seed"] == cfg.eval.test_seed != cfg.eval.val_seed
    records = logged(tmp_path / "run")
    evals = {r["step"]: r["eval"]["full_string_accuracy"] for r in records if "eval" in r}
    assert sorted(evals) == [2, 4, 6]
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    # best.pt is the first evaluation with the highest validation accuracy.
    assert best["step"] == min(s for s, acc in evals.items() if acc == max(evals.values()))
    tested = [r for r in records if r.get("event") == "test"]
    assert len(tested) == 1 and tested[0]["best_step"] == best["step"] == result["test"]["best_step"]
    # The reported test numbers are best.pt's weights read on the test set, recomputed here.
    from captcha_stream.train.loop import build_model

    model, codec = build_model(cfg)
    model.load_state_dict(inference_weights(best))
    images, labels = load_all(FolderDataset(tmp_path / "test", cfg.data), 16)
    again = run_eval(model, images, labels, codec, torch.device("cpu")).summary()
    assert tested[0]["test"] == again
    assert again["n"] == cfg.eval.test_size


def test_a_recipe_with_shifts_reports_the_test_set_read_both_ways(tmp_path):
    # eval.tta is how the checkpoint's reader reads: the test reading says what it reads, beside the
    # plain reading that validation chose best.pt by.
    from captcha_stream.checkpoint import inference_weights, load_checkpoint
    from captcha_stream.data.folder import FolderDataset
    from captcha_stream.eval.evaluation import load_all, run_eval
    from captcha_stream.train.loop import build_model

    cfg = smoke(tmp_path, **{"train.steps": 4, "train.eval_every": 4, "eval.tta": [2]})
    said = []
    result = train(cfg, progress=False, log=said.append)
    tested = [r for r in logged(tmp_path / "run") if r.get("event") == "test"]
    model, codec = build_model(cfg)
    model.load_state_dict(inference_weights(load_checkpoint(tmp_path / "run" / "best.pt")))
    images, labels = load_all(FolderDataset(tmp_path / "test", cfg.data), 16)
    plain = run_eval(model, images, labels, codec, torch.device("cpu")).summary()
    shifted = run_eval(model, images, labels, codec, torch.device("cpu"), tta=[2]).summary()
    assert plain != shifted  # the two readings differ, so the check below tells them apart
    assert tested[0]["test"] == plain and tested[0]["test_tta"] == {"tta": [2], **shifted}
    assert result["test"]["tta"] == {"tta": [2], **shifted}
    assert any("with shifts of 2 px" in line for line in said), said


def test_final_test_false_leaves_the_test_set_unread(tmp_path):
    cfg = smoke(tmp_path, **{"train.steps": 2, "train.eval_every": 2, "eval.final_test": False})
    said = []
    result = train(cfg, progress=False, log=said.append)
    assert result["test"] is None and (tmp_path / "run" / "best.pt").exists()
    # Not even exported: a candidate still to be chosen elsewhere has seen nothing of it.
    assert not (tmp_path / "test").exists()
    records = logged(tmp_path / "run")
    assert not [r for r in records if r.get("event") == "test"]
    assert any("eval.final_test: false" in line for line in said), said


@pytest.mark.parametrize(
    "workers, ema, hard_pool, optim",
    [(0, 0.0, 1, "adamw"), (2, 0.0, 1, "adamw"), (0, 0.9, 1, "adamw"), (0, 0.0, 3, "adamw"), (0, 0.0, 1, "muon")],
)
def test_resume_equals_uninterrupted(tmp_path, workers, ema, hard_pool, optim):
    cfg = smoke(
        tmp_path,
        **{
            "train.steps": 8,
            "train.log_every": 1,
            "train.checkpoint_every": 4,
            "train.num_workers": workers,
            "train.ema_decay": ema,
            "train.hard_pool": hard_pool,
            "optim.name": optim,
            "model.dropout": 0.2,
            "model.rnn_layers": 2,
        },
    )
    quiet_train(cfg)
    straight = losses(tmp_path / "run")
    straight_ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    # last.prev.pt is the checkpoint of step 4: resume from it in a fresh run directory.
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    (resumed_dir / "last.pt").write_bytes((tmp_path / "run" / "last.prev.pt").read_bytes())
    cfg.train.run_dir = str(resumed_dir)
    result = quiet_train(cfg, resume=True)
    assert result["step"] == 8
    again = losses(resumed_dir)
    assert sorted(again) == [5, 6, 7, 8]
    for step in again:
        assert again[step] == straight[step]
    resumed_ckpt = torch.load(resumed_dir / "last.pt", weights_only=True)
    assert ("ema" in resumed_ckpt) == (ema > 0)
    # Muon's momentum travels in last.pt with the rest of the optimizer's state.
    assert any("momentum_buffer" in st for st in resumed_ckpt["optimizer"]["state"].values()) == (optim == "muon")
    for key in ("model", "ema") if ema else ("model",):
        for name, value in straight_ckpt[key].items():
            assert torch.equal(resumed_ckpt[key][name], value), (key, name)


def test_weight_average_follows_its_formula():
    from captcha_stream.train.ema import WeightAverage

    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    avg = WeightAverage(net, decay=0.5)
    start = net[0].weight.detach().clone()
    with torch.no_grad():
        net[0].weight.add_(1.0)
    net[1].num_batches_tracked.fill_(7)
    avg.update(net)  # first update: decay min(0.5, 1/10) = 0.1
    assert torch.allclose(avg.model[0].weight, 0.1 * start + 0.9 * (start + 1.0))
    assert int(avg.model[1].num_batches_tracked) == 7
    with torch.no_grad():
        net[0].weight.add_(1.0)
    avg.update(net)  # then min(0.5, 2/11)
    d = 2 / 11
    assert torch.allclose(avg.model[0].weight, d * (start + 0.9) + (1 - d) * (start + 2.0))
    assert not avg.model[0].weight.requires_grad


@pytest.mark.parametrize(
    ("raw", "average", "best_step", "read_with"),
    [
        ([0.5, 0.3], [0.4, 0.45], 3, "model"),  # raw ahead at step 3 and better than anything after
        ([0.5, 0.3], [0.4, 0.6], 6, "ema"),  # the average overtakes it at step 6
        ([0.4, 0.3], [0.4, 0.3], 3, "ema"),  # a tie goes to the average
    ],
)
def test_best_keeps_whichever_weights_read_validation_better(tmp_path, monkeypatch, raw, average, best_step, read_with):
    import captcha_stream.train.loop as train_module
    from captcha_stream.checkpoint import inference_weights
    from captcha_stream.eval.metrics import summary
    from captcha_stream.reader.build import model_from_checkpoint
    from captcha_stream.tools.slim import slim_checkpoint

    scores = {"raw": list(raw) + [0.0], "average": list(average)}  # the raw-like extra: test_best's fresh model

    class Scored:
        def __init__(self, accuracy):
            self.accuracy = accuracy

        def summary(self):
            return {**summary(["a"], ["a"]), "full_string_accuracy": self.accuracy}

    def fake_eval(model, *args, **kwargs):
        # The weight average is the copy whose parameters take no gradient.
        kind = "raw" if next(model.parameters()).requires_grad else "average"
        return Scored(scores[kind].pop(0))

    monkeypatch.setattr(train_module, "run_eval", fake_eval)
    cfg = smoke(tmp_path, **{"train.steps": 6, "train.eval_every": 3, "train.ema_decay": 0.9})
    result = quiet_train(cfg)
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert (best["step"], best["read_with"]) == (best_step, read_with)
    assert result["best_accuracy"] == max(max(raw), max(average))
    name = "rnn.weight_ih_l0"
    assert not torch.equal(best["ema"][name], best["model"][name])
    assert inference_weights(best) is best[read_with]
    model, _, _ = model_from_checkpoint(tmp_path / "run" / "best.pt")
    assert torch.equal(model.state_dict()[name], best[read_with][name])
    slim_checkpoint(tmp_path / "run" / "best.pt", tmp_path / "slim.pt")
    assert torch.equal(torch.load(tmp_path / "slim.pt", weights_only=True)["model"][name], best[read_with][name])


def test_average_of_checkpoints_is_the_mean_of_what_each_is_read_with(tmp_path, capsys):
    from captcha_stream.checkpoint import save_checkpoint
    from captcha_stream.cli import average_main, run
    from captcha_stream.model.crnn import CRNN
    from captcha_stream.reader.build import model_from_checkpoint

    cfg = smoke(tmp_path)
    nets = []
    for seed in range(3):
        torch.manual_seed(seed)
        nets.append(CRNN(cfg.data, cfg.model, len(cfg.data.charset) + 1).state_dict())
    base = {"config": cfg.to_dict(), "charset": cfg.data.charset}
    save_checkpoint({**base, "model": nets[0], "step": 10}, tmp_path / "a.pt")
    # b is read with its average (nets[2]), not its raw weights (nets[1]).
    save_checkpoint({**base, "model": nets[1], "ema": nets[2], "step": 30}, tmp_path / "b.pt")
    with pytest.raises(SystemExit) as exc:
        run(average_main, [str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--out", str(tmp_path / "avg.pt")])
    assert exc.value.code == 0 and "the mean of 2 checkpoints" in capsys.readouterr().out
    model, _, state = model_from_checkpoint(tmp_path / "avg.pt")
    assert state["step"] == 30 and len(state["averaged_from"]) == 2 and "optimizer" not in state
    got = model.state_dict()
    for name, tensor in nets[0].items():
        if tensor.is_floating_point():
            assert torch.allclose(got[name], (tensor + nets[2][name]) / 2), name
    assert not torch.allclose(got["rnn.weight_ih_l0"], (nets[0]["rnn.weight_ih_l0"] + nets[1]["rnn.weight_ih_l0"]) / 2)


def test_weight_average_is_evaluated_saved_and_served(tmp_path):
    from captcha_stream.reader.build import model_from_checkpoint
    from captcha_stream.tools.slim import slim_checkpoint

    cfg = smoke(tmp_path, **{"train.steps": 6, "train.eval_every": 3, "train.ema_decay": 0.9})
    quiet_train(cfg)
    records = logged(tmp_path / "run")
    evals = [r for r in records if "eval" in r]
    assert [r["step"] for r in evals] == [3, 6] and all("eval_raw" in r for r in evals)
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    name = "rnn.weight_ih_l0"
    assert not torch.equal(ckpt["ema"][name], ckpt["model"][name])
    model, _, _ = model_from_checkpoint(tmp_path / "run" / "last.pt")
    assert torch.equal(model.state_dict()[name], ckpt["ema"][name])
    slim_checkpoint(tmp_path / "run" / "last.pt", tmp_path / "slim.pt")
    slim = torch.load(tmp_path / "slim.pt", weights_only=True)
    assert "ema" not in slim and torch.equal(slim["model"][name], ckpt["ema"][name])
    # slim --set repoints a copy's eval settings (which test set it is read on), and nothing else.
    from captcha_stream.cli import run, slim_main

    with pytest.raises(SystemExit) as exc:
        run(slim_main, [str(tmp_path / "run" / "last.pt"), str(tmp_path / "s2.pt"), "--set", "eval.test_seed=7"])
    assert exc.value.code == 0
    s2 = torch.load(tmp_path / "s2.pt", weights_only=True)
    assert s2["config"]["eval"]["test_seed"] == 7 and s2["config"]["data"] == ckpt["config"]["data"]
    for bad, message in [("data.width=99", "slim changes only eval.*"), ("eval.beam=-1", "eval.beam: must be >= 0")]:
        with pytest.raises(CaptchaStreamError, match=message):
            slim_main([str(tmp_path / "run" / "last.pt"), str(tmp_path / "s3.pt"), "--set", bad])
    assert not (tmp_path / "s3.pt").exists()


def test_init_from_starts_from_the_checkpoint_weights(tmp_path):
    first = smoke(tmp_path, **{"train.steps": 3})
    quiet_train(first)
    source = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]

    def params_after_one_tiny_step(run, **extra):
        cfg = smoke(tmp_path, **{"train.steps": 1, "train.run_dir": str(tmp_path / run), "optim.lr": 1e-9, **extra})
        quiet_train(cfg)
        ckpt = torch.load(tmp_path / run / "last.pt", weights_only=True)
        assert ckpt["step"] == 1  # a fresh schedule, not the source's
        # Parameters only: BatchNorm's running statistics move with any forward pass.
        return {k: v for k, v in ckpt["model"].items() if "running" not in k and "num_batches" not in k}

    warm = params_after_one_tiny_step("warm", **{"train.init_from": str(tmp_path / "run" / "last.pt")})
    cold = params_after_one_tiny_step("cold")
    assert all(torch.allclose(v, source[k], atol=1e-6) for k, v in warm.items())
    assert not all(torch.allclose(v, source[k], atol=1e-6) for k, v in cold.items())


def test_non_finite_losses_abort_with_message(tmp_path, monkeypatch):
    cfg = smoke(tmp_path, **{"train.max_bad_steps": 3})
    import captcha_stream.train.loop as train_module

    monkeypatch.setattr(train_module, "ctc_loss", lambda *a: torch.tensor(float("nan")))
    with pytest.raises(CaptchaStreamError, match="3 non-finite losses in a row at step 0"):
        quiet_train(cfg)


def test_refuses_to_overwrite_a_run(tmp_path):
    cfg = smoke(tmp_path, **{"train.steps": 2})
    quiet_train(cfg)
    with pytest.raises(CaptchaStreamError, match="holds a run already"):
        quiet_train(cfg)


def test_model_too_narrow_for_labels(tmp_path):
    cfg = smoke(tmp_path, **{"data.max_length": 12, "data.min_length": 5, "data.width": 40})
    with pytest.raises(CaptchaStreamError, match="fewer than 2 x data.max_length"):
        quiet_train(cfg)


def run_script(script, *args, cwd, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args], cwd=cwd, capture_output=True, text=True, env=env, **kw
    )


def test_sigint_saves_then_resume_matches(tmp_path):
    args = [
        "--config",
        str(SMOKE),
        "--steps",
        "400",
        "--set",
        "train.log_every=1",
        "--set",
        "train.eval_every=1000",
        "--set",
        "train.checkpoint_every=1000",
        "--no-progress",
    ]
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args, "--run-dir", "a"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = tmp_path / "a" / "metrics.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 5):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "stopped by SIGINT" in err and "Traceback" not in err
    stopped = losses(tmp_path / "a")
    assert 5 <= max(stopped) < 400
    r = run_script("train.py", *args, "--run-dir", "a", "--resume", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run_script("train.py", *args, "--run-dir", "b", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert losses(tmp_path / "a") == losses(tmp_path / "b")


def test_documented_commands_and_checkpoint_alone(tmp_path):
    cfg_args = ["--config", str(SMOKE), "--no-progress"]
    r = run_script("train.py", *cfg_args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "done: 20 steps" in r.stdout
    with Image.open(tmp_path / "runs" / "smoke" / "curve.png") as curve:  # the learning-curve picture
        assert curve.size == (900, 330 + 16)  # the plot and its legend row
    r = run_script("export_fixed_set.py", "--n", "6", "--config", str(SMOKE), "--workers", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # The checkpoint alone: move it away from its run and config.
    ckpt = tmp_path / "alone.pt"
    (tmp_path / "runs" / "smoke" / "best.pt").rename(ckpt)
    r = run_script(
        "evaluate.py",
        "--checkpoint",
        str(ckpt),
        "--data",
        "data/train",
        "--json",
        "m.json",
        "--view",
        "--sheet",
        "sheet.png",
        "--sheet-count",
        "4",
        "--no-progress",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "m.json").read_text())
    assert summary["n"] == 6 and 0 <= summary["full_string_accuracy"] <= 1
    low, high = summary["full_string_interval_95"]
    assert low <= summary["full_string_accuracy"] <= high and high - low > 0.1  # 6 images say little
    assert "full-string accuracy" in r.stdout and "95% interval" in r.stdout and "truth" in r.stdout
    page = tmp_path / "view-train.html"
    assert page.is_file() and page.read_text().count("<img") == 6
    # Four of the smoke config's 64x32 captchas: one row of four cells, each 16 wider and 64 taller.
    assert Image.open(tmp_path / "sheet.png").size == (4 * 80 + 8, 56 + 32 + 64 + 8)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "captcha_stream",
            "predict",
            "--checkpoint",
            str(ckpt),
            "data/train/000000.png",
            "data/train/000001.png",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert [ln.split("\t")[0] for ln in lines] == ["data/train/000000.png", "data/train/000001.png"]
    assert all(0 <= float(ln.split("\t")[2]) <= 1 for ln in lines)
    # A slimmed copy (no optimizer) still evaluates and predicts.
    r = subprocess.run(
        [sys.executable, "-m", "captcha_stream", "slim", str(ckpt), "slim.pt"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == 0, r.stderr
    assert "optimizer" not in torch.load(tmp_path / "slim.pt", weights_only=True)
    r = run_script("evaluate.py", "--checkpoint", "slim.pt", "--data", "data/train", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0 and "full-string accuracy" in r.stdout
    # Beam search keeps to the config's lengths (smoke: 2-3) unless told not to.
    slim_eval = ["evaluate.py", "--checkpoint", "slim.pt", "--data", "data/train", "--no-progress", "--beam", "4"]
    r = run_script(*slim_eval, cwd=tmp_path)
    assert r.returncode == 0 and "beam 4 (lengths 2-3) decoding" in r.stdout, r.stderr
    r = run_script(*slim_eval, "--no-length-prior", cwd=tmp_path)
    assert r.returncode == 0 and "beam 4 decoding" in r.stdout, r.stderr


def test_default_checkpoint_is_the_shipped_reader_never_a_run(tmp_path, monkeypatch, capsys):
    from captcha_stream import cli
    from captcha_stream.reader.pretrained import pretrained_path

    monkeypatch.chdir(tmp_path)
    # A fresh run in the folder must not take the shipped reader's place unnoticed.
    (tmp_path / "runs" / "new").mkdir(parents=True)
    (tmp_path / "runs" / "new" / "best.pt").write_bytes(b"x")
    assert cli.find_checkpoint(None) == pretrained_path("captcha62")
    assert capsys.readouterr().err.strip() == f"using captcha62 ({pretrained_path('captcha62')})"
    assert cli.find_checkpoint("classic36") == pretrained_path("classic36")
    assert cli.find_checkpoint("runs/new/best.pt") == Path("runs/new/best.pt")
    assert capsys.readouterr().err == ""  # a checkpoint that was named is not announced
    (tmp_path / "classic36").write_bytes(b"x")  # a file of that name wins over the shipped reader
    assert cli.find_checkpoint("classic36") == Path("classic36")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "train.stepz=3"], "unknown config key 'train.stepz'; valid keys: steps"),
        (["--steps", "-1"], "train.steps: must be at least 1, got -1"),
        (["--batch-size", "0"], "train.batch_size: must be at least 1, got 0"),
        (["--set", "optim.lr=0"], "optim.lr: must be > 0"),
        (["--set", "data.min_length=5"], "data.min_length: 5 is greater than max_length 3"),
        (["--set", "nonsense"], "expected section.key=value"),
        (["--resume"], "no last.pt to resume from"),
    ],
)
def test_cli_config_errors(tmp_path, args, message):
    r = run_script("train.py", "--config", str(SMOKE), *args, cwd=tmp_path)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("from_folder", [False, True])
def test_loader_applies_data_augment(tmp_path, from_folder):
    from captcha_stream.model.codec import Codec
    from captcha_stream.train.loop import make_loader

    cfg = smoke(tmp_path, **{"train.batch_size": 8})
    if from_folder:
        export_set(tmp_path / "set", 8, cfg.data, seed=0, workers=1, progress=False, log=lambda s: None)
        cfg.train.train_dir = str(tmp_path / "set")
    codec = Codec(cfg.data.charset)
    plain = next(iter(make_loader(cfg, codec, 0, 0, False)))
    cfg.data.augment = 1.0
    moved = next(iter(make_loader(cfg, codec, 0, 0, False)))
    assert plain.labels == moved.labels
    assert all(not torch.equal(a, b) for a, b in zip(plain.images, moved.images))


def test_loader_draws_focus_symbols_more_often(tmp_path):
    from captcha_stream.model.codec import Codec
    from captcha_stream.train.loop import make_loader

    cfg = smoke(tmp_path, **{"train.batch_size": 64})
    codec = Codec(cfg.data.charset)
    plain = next(iter(make_loader(cfg, codec, 0, 0, False))).labels
    cfg.train.focus_symbols, cfg.train.focus_weight = "07", 9.0
    focused = next(iter(make_loader(cfg, codec, 0, 0, False))).labels
    share = [sum(ch in "07" for ch in "".join(labels)) / len("".join(labels)) for labels in (plain, focused)]
    # smoke.yaml has 10 digits: 2 of them make a fifth of the symbols, or 18/26 at weight 9.
    assert share[0] < 0.35 and share[1] > 0.55, share


def test_hard_pool_loader_draws_pools_that_continue_the_stream(tmp_path):
    from captcha_stream.model.codec import Codec
    from captcha_stream.train.loop import make_loader

    cfg = smoke(tmp_path, **{"train.batch_size": 4, "train.hard_pool": 3})
    codec = Codec(cfg.data.charset)
    first_two = iter(make_loader(cfg, codec, 0, 0, False))
    pool0, pool1 = next(first_two), next(first_two)
    assert len(pool0.labels) == 12 and len(pool1.labels) == 12
    # A resumed run restarts its loader at the step count: step 1's pool, not a third of it.
    assert next(iter(make_loader(cfg, codec, 1, 0, False))).labels == pool1.labels
    assert pool0.labels != pool1.labels


@pytest.mark.parametrize("from_folder", [False, True])
def test_hard_pool_trains_on_the_worst_read_of_each_pool(tmp_path, monkeypatch, from_folder):
    import captcha_stream.train.loop as train_module

    picked = []
    real = train_module.hardest

    def spy(model, pool, keep, device, autocast):
        batch = real(model, pool, keep, device, autocast)
        picked.append((len(pool.labels), len(batch.labels)))
        return batch

    monkeypatch.setattr(train_module, "hardest", spy)
    cfg = smoke(tmp_path, **{"train.steps": 3, "train.batch_size": 4, "train.hard_pool": 2})
    if from_folder:
        # Fewer images than one pool: the folder stream goes round again within it.
        export_set(tmp_path / "set", 6, cfg.data, seed=0, workers=1, progress=False, log=lambda s: None)
        cfg.train.train_dir = str(tmp_path / "set")
    quiet_train(cfg)
    assert picked == [(8, 4)] * 3
