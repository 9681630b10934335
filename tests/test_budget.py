"""Training to a wall-time budget, and the CPU speed paths it relies on (bf16 autocast, channels_last,
a strided stem)."""

import json
import os
import time

import pytest
import torch

from captcha_stream.config import load_config
from captcha_stream.device import autocast_for, cpu_has_native_bf16
from captcha_stream.errors import CaptchaStreamError
from captcha_stream.eval.time_to import curve, draw_time_curves, time_to
from captcha_stream.model.codec import Codec
from captcha_stream.model.crnn import CRNN, output_steps
from captcha_stream.train.budget import Budget
from captcha_stream.train.loop import train
from captcha_stream.train.schedule import lr_factor

from .test_train import SMOKE, logged, smoke

CPU = "configs/cpu.yaml"


def quiet(cfg):
    return train(cfg, progress=False, log=lambda s: None)


def test_the_fit_leaves_room_for_evaluations_and_never_ends_before_now():
    b = Budget(seconds=100, limit_steps=10**9, eval_every=50, eval_minutes=0, batch_size=8, val_size=80)
    assert b.fit(0, 0.0) == 10**9  # before the probe: the step limit
    for i in range(1, 30):
        b.add_step(0.1, i)
    assert b.probed and b.step_seconds == pytest.approx(0.1)
    # 100 s, one final validation of 80 images at a third of a step per 8 images: 0.333 s.
    evaluation = 80 * 0.1 / 8 / 3
    expected = int((100 - 10 - evaluation) / (0.1 + evaluation / 50))
    assert abs(b.fit(0, 10.0) - expected) <= 1  # float rounding of the measured mean
    b.add_eval(5.0)  # measured evaluations replace the estimate
    assert abs(b.fit(0, 10.0) - (100 - 10 - 5) / (0.1 + 5 / 50)) <= 1
    assert b.fit(700, 200.0) == 700  # time is up: end at once
    assert Budget(100, 300, 50, 0, 8, 80, _measured_steps=30, step_seconds=0.01).fit(0, 0.0) == 300  # steps first


def test_a_minutes_run_ends_on_time_with_a_checkpoint_and_an_annealed_schedule(tmp_path):
    # Long enough that the probe (25 steps) and a few evaluations happen; the step limit is far away.
    cfg = smoke(tmp_path, **{"train.minutes": 0.25, "train.steps": 10**7, "train.eval_every": 40})
    started = time.perf_counter()
    result = quiet(cfg)
    seconds = time.perf_counter() - started
    records = logged(tmp_path / "run")
    trained = max(r["step"] for r in records if "loss" in r)
    assert 40 < trained < 10**7 and result["step"] == trained
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert last["step"] == trained and last["planned_steps"] == trained
    # The fitted schedule reached its floor on the last step: lr = lr * min_lr_ratio.
    final_lr = [r["lr"] for r in records if "lr" in r][-1]
    assert final_lr == pytest.approx(cfg.optim.lr * cfg.optim.min_lr_ratio, rel=0.05)
    # On time: the last validation record is within the budget (the test-set reading comes after).
    evals = [r for r in records if "eval" in r]
    assert evals[-1]["step"] == trained and evals[-1]["time"] <= 15.0 + 1.0
    assert seconds < 15 + 20  # start-up and the final test reading on top


def test_a_budget_that_runs_out_between_log_records_still_logs_the_last_step(tmp_path, monkeypatch):
    # Time runs out at step 33 (the fit says "end now"), which is no multiple of log_every: the run
    # ends there, and its last window is logged and checkpointed, as at any planned end.
    def fit(self, step, elapsed):
        return step if step >= 33 else self.limit_steps

    monkeypatch.setattr(Budget, "fit", fit)
    cfg = smoke(tmp_path, **{"train.minutes": 5.0, "train.steps": 10**7, "train.log_every": 10})
    result = quiet(cfg)
    records = logged(tmp_path / "run")
    assert result["step"] == 33
    assert [r["step"] for r in records if "loss" in r] == [10, 20, 30, 33]
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["step"] == 33


def test_the_step_limit_wins_when_it_comes_first(tmp_path):
    cfg = smoke(tmp_path, **{"train.minutes": 5.0, "train.steps": 30})
    assert quiet(cfg)["step"] == 30


def test_timed_validations_and_the_time_to_report(tmp_path):
    cfg = smoke(tmp_path, **{"train.minutes": 0.2, "train.steps": 10**7, "train.eval_every": 10**6})
    cfg.train.eval_minutes = 0.05  # every 3 s
    quiet(cfg)
    points = curve(tmp_path / "run")
    assert len(points) >= 3 and [p.step for p in points] == sorted(p.step for p in points)
    assert all(0 < p.minutes <= 0.22 and p.images == p.step * 8 for p in points)
    report = time_to(points, levels=(0.0, 1.01))
    assert report["0%"]["step"] == points[0].step and report["101%"] is None
    out = draw_time_curves({"a": points, "b": points[:2]}, tmp_path / "t.png", "title")
    assert out.stat().st_size > 1000
    json.dumps(report)


def test_minutes_on_the_command_line_and_bad_values(tmp_path):
    from captcha_stream.cli import run, train_main

    for bad in ("-1", "nan"):
        with pytest.raises(CaptchaStreamError, match="train.minutes"):
            train_main(["--config", str(SMOKE), "--minutes", bad, "--run-dir", str(tmp_path / "r")])
    with pytest.raises(CaptchaStreamError, match="train.eval_minutes"):
        load_config(SMOKE, {"train.eval_minutes": -2})
    with pytest.raises(SystemExit) as exc:
        run(train_main, ["--config", str(SMOKE), "--minutes", "abc"])
    assert exc.value.code == 2


def test_a_minutes_run_resumes_with_its_clock(tmp_path):
    cfg = smoke(tmp_path, **{"train.minutes": 0.1, "train.steps": 10**7, "train.eval_every": 10**6})
    quiet(cfg)
    first = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert first["elapsed"] <= 6.5
    # Resumed with more time: the clock goes on from where it stopped, and so does the step count.
    cfg2 = smoke(tmp_path, **{"train.minutes": 0.2, "train.steps": 10**7, "train.eval_every": 10**6})
    quiet_resume = train(cfg2, resume=True, progress=False, log=lambda s: None)
    assert quiet_resume["step"] > first["step"] and quiet_resume["elapsed"] <= 12.5


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no native bf16")
def test_bf16_autocast_on_a_cpu_that_has_it(tmp_path, monkeypatch):
    from captcha_stream import device

    # As where bf16 measures faster than float32 (not on every CPU with the flag: the next test).
    monkeypatch.setattr(device, "cpu_bf16_speedup", lambda: 2.0)
    assert isinstance(autocast_for(torch.device("cpu"), True), torch.autocast)
    cfg = smoke(tmp_path, **{"train.steps": 10, "model.stem_stride": 1})
    quiet(cfg)  # the smoke config trains under bf16 here: it runs and keeps float32 weights
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert all(t.dtype == torch.float32 for t in state["model"].values() if t.is_floating_point())


def test_no_autocast_when_amp_is_off_or_the_hardware_lacks_bf16(monkeypatch):
    import contextlib

    from captcha_stream import device

    assert isinstance(autocast_for(torch.device("cpu"), False), contextlib.nullcontext)
    assert device.precision(torch.device("cpu"), False) == ("float32", "train.amp is false")
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: False)
    assert isinstance(device.autocast_for(torch.device("cpu"), True), contextlib.nullcontext)
    assert device.precision(torch.device("cpu"), True)[0] == "float32"


def test_native_bf16_that_measures_slower_than_float32_trains_in_float32(monkeypatch):
    import contextlib

    from captcha_stream import device

    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(device, "cpu_bf16_speedup", lambda: 0.7)
    arithmetic, why = device.precision(torch.device("cpu"), True)
    assert arithmetic == "float32" and "0.7x" in why and "float32 is faster here" in why
    assert isinstance(device.autocast_for(torch.device("cpu"), True), contextlib.nullcontext)
    monkeypatch.setattr(device, "cpu_bf16_speedup", lambda: 2.6)
    assert device.precision(torch.device("cpu"), True)[0] == "bf16"


def test_the_bf16_speedup_is_measured_once_per_process():
    from captcha_stream import device

    device.cpu_bf16_speedup.cache_clear()
    first = device.cpu_bf16_speedup()
    assert 0.01 < first < 100  # a ratio of two timings, whichever way this CPU leans
    assert device.cpu_bf16_speedup() == first and device.cpu_bf16_speedup.cache_info().hits == 1


@pytest.mark.parametrize("native", [True, False])
def test_the_run_says_which_arithmetic_it_trains_in(tmp_path, monkeypatch, native):
    # Forced both ways, so the bf16 path is exercised on any CPU (emulated where there is no native bf16).
    from captcha_stream import device

    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(device, "cpu_bf16_speedup", lambda: 2.0)
    cfg = smoke(tmp_path, **{"train.steps": 4, "train.amp": True, "model.stem_stride": 1})
    lines: list[str] = []
    train(cfg, progress=False, log=lines.append)
    expected = "bf16" if native else "float32"
    said = [line for line in lines if line.startswith("arithmetic: ")]
    assert len(said) == 1 and said[0].startswith(f"arithmetic: {expected} (")
    assert ("no native bf16" in said[0]) is not native
    start = next(rec for rec in logged(tmp_path / "run") if rec.get("event") == "start")
    assert start["precision"] == expected
    hints = [line for line in lines if line.startswith("hint: ")]
    # Only a float32 run on several threads is told that one-thread processes would do more.
    assert len(hints) == (0 if native or torch.get_num_threads() < 2 else 1)
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert all(t.dtype == torch.float32 for t in state["model"].values() if t.is_floating_point())


def test_channels_last_trains_and_reads_like_the_default_layout(tmp_path):
    cfg = smoke(tmp_path, **{"train.steps": 6, "train.channels_last": True, "train.amp": False})
    quiet(cfg)
    cfg2 = smoke(tmp_path / "b", **{"train.steps": 6, "train.amp": False})
    quiet(cfg2)
    a = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "run" / "last.pt", weights_only=True)["model"]
    # The same arithmetic in another memory order: the same weights, up to float rounding.
    for name in a:
        assert torch.allclose(a[name].float(), b[name].float(), atol=1e-4), name


def test_a_strided_stem_reads_at_half_resolution():
    cfg = load_config(SMOKE, {"data.width": 128, "data.height": 32, "model.stem_stride": 2})
    assert output_steps(cfg.data, cfg.model) == 32
    model = CRNN(cfg.data, cfg.model, Codec(cfg.data.charset).num_classes)
    out = model(torch.zeros(2, 1, 32, 128, dtype=torch.uint8))
    assert out.shape[:2] == (32, 2)
    with pytest.raises(CaptchaStreamError, match="model.stem_stride"):
        load_config(SMOKE, {"model.stem_stride": 5})
    narrow = load_config(SMOKE, {"model.stem_stride": 4, "data.max_length": 5})
    with pytest.raises(CaptchaStreamError, match="stem_stride"):
        CRNN(narrow.data, narrow.model, 11)


def test_an_unpooled_stem_reads_every_pixel_and_keeps_the_geometry(tmp_path):
    pooled = load_config(CPU, {"model.stem_stride": 2, "model.width_pools": 2})
    unpooled = load_config(CPU, {"model.stem_stride": 4, "model.stem_pool": False, "model.width_pools": 1})
    a = CRNN(pooled.data, pooled.model, 63)
    b = CRNN(unpooled.data, unpooled.model, 63)
    # The same time steps and feature rows as the pooled stride-2 stem: only the stem differs.
    assert output_steps(unpooled.data, unpooled.model) == output_steps(pooled.data, pooled.model) == 35
    assert b.feature_height == a.feature_height
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in b.features[0])
    stem = b.features[0][0]
    assert (stem.kernel_size, stem.stride) == ((7, 7), (4, 4))  # a 3x3 kernel at stride 4 would skip pixels
    images = torch.zeros(2, 1, pooled.data.height, pooled.data.width, dtype=torch.uint8)
    assert b(images).shape == a(images).shape
    # Every input pixel reaches the stem's output: a gradient for each one.
    x = torch.rand(1, 1, pooled.data.height, pooled.data.width, requires_grad=True)
    stem(x).sum().backward()
    assert bool((x.grad != 0).all())
    three = load_config(CPU, {"model.stem_stride": 3, "model.stem_pool": False, "model.width_pools": 1})
    stem3 = CRNN(three.data, three.model, 63).features[0][0]
    x.grad = None
    stem3(x).sum().backward()
    assert stem3.kernel_size == (5, 5) and bool((x.grad != 0).all())
    with pytest.raises(CaptchaStreamError, match="model.width_pools: .* pooling stages .* got 4"):
        load_config(CPU, {"model.stem_pool": False, "model.width_pools": 4})
    # It trains end to end like any other model (bf16 and channels_last as cpu.yaml uses them).
    cfg = smoke(
        tmp_path, **{"train.steps": 3, "model.stem_stride": 4, "model.stem_pool": False, "model.width_pools": 0}
    )
    quiet(cfg)
    assert (tmp_path / "run" / "last.pt").exists()


def test_pooling_first_is_the_same_function_on_a_quarter_of_the_elements(tmp_path):
    plain_cfg = load_config(CPU)
    first_cfg = load_config(CPU, {"model.pool_first": True})
    torch.manual_seed(0)
    plain = CRNN(plain_cfg.data, plain_cfg.model, 63)
    first = CRNN(first_cfg.data, first_cfg.model, 63)
    # Same parameters, in another order: each pooling stage's max pool sits before its BatchNorm and ReLU.
    assert [p.shape for p in plain.parameters()] == [p.shape for p in first.parameters()]
    assert [type(m).__name__ for m in first.features[0]] == ["Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU"]
    with torch.no_grad():
        for a, b in zip(plain.parameters(), first.parameters()):
            b.copy_(a)
        for m in plain.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 2.0)  # positive scales: a max commutes with the normalisation
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2.0)
        first.load_state_dict(dict(zip(first.state_dict(), plain.state_dict().values())))
    images = torch.randint(0, 256, (2, 1, plain_cfg.data.height, plain_cfg.data.width), dtype=torch.uint8)
    plain.eval(), first.eval()
    assert torch.allclose(plain(images), first(images), atol=1e-5)
    # It trains, saves and resumes like any other model.
    cfg = smoke(tmp_path, **{"train.steps": 3, "model.pool_first": True})
    quiet(cfg)
    assert (tmp_path / "run" / "last.pt").exists()


def test_lr_factor_follows_a_fitted_total():
    cfg = load_config(SMOKE, {"optim.warmup_steps": 0, "optim.min_lr_ratio": 0.0})
    assert lr_factor(50, cfg, total=100) == pytest.approx(0.5)
    assert lr_factor(100, cfg, total=100) == pytest.approx(0.0)


def test_linear_decay_is_a_straight_line_to_the_floor():
    cfg = load_config(SMOKE, {"optim.warmup_steps": 10, "optim.min_lr_ratio": 0.1, "optim.decay": "linear"})
    assert lr_factor(4, cfg, total=110) == pytest.approx(0.5)  # warm-up unchanged
    assert [lr_factor(s, cfg, total=110) for s in (10, 35, 60, 85, 110, 200)] == pytest.approx(
        [1.0, 0.775, 0.55, 0.325, 0.1, 0.1]
    )
    cosine = load_config(SMOKE, {"optim.warmup_steps": 10, "optim.min_lr_ratio": 0.1})
    # A quarter of the way, the cosine is still higher; three quarters of the way, lower.
    assert lr_factor(35, cosine, total=110) > lr_factor(35, cfg, total=110)
    assert lr_factor(85, cosine, total=110) < lr_factor(85, cfg, total=110)


def test_training_commands_let_idle_threads_sleep_unless_told_otherwise(monkeypatch):
    # Set before torch loads in a fresh process: spinning OpenMP threads would take the cores
    # the render workers need. A policy the user chose stays.
    from captcha_stream.cli import audit_main, train_main

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    with pytest.raises(CaptchaStreamError, match="missing.yaml"):
        train_main(["--config", "missing.yaml"])
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    with pytest.raises(CaptchaStreamError, match="missing.yaml"):
        audit_main(["--config", "missing.yaml", "--minutes", "1", "--out", "unused"])
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_the_threads_hint_names_the_launch_only_where_it_helps():
    from captcha_stream.device import threads_hint

    cpu = torch.device("cpu")
    hint = threads_hint(cpu, "float32", 1, 4, 64)
    assert hint is not None and "--set train.processes=4" in hint
    # The suggestion splits the batch evenly, or there is none: config validation would refuse it.
    hint = threads_hint(cpu, "float32", 1, 3, 64)
    assert hint is not None and "--set train.processes=2" in hint and "2 one-thread processes" in hint
    assert "train.processes=3" not in hint
    assert threads_hint(cpu, "float32", 1, 2, 63) is None
    assert threads_hint(cpu, "bf16", 1, 4, 64) is None  # bf16 splits well between threads
    assert threads_hint(cpu, "float32", 2, 4, 64) is None  # already one of several processes
    assert threads_hint(cpu, "float32", 1, 1, 64) is None  # one thread: nothing to trade
    assert threads_hint(torch.device("meta"), "float32", 1, 4, 64) is None


def test_a_blank_bias_starts_the_blank_where_ctc_drives_it():
    cfg = load_config(CPU)
    images = torch.randint(0, 256, (4, 1, cfg.data.height, cfg.data.width), dtype=torch.uint8)

    def blank_share(blank_bias: float) -> float:
        torch.manual_seed(0)
        c = load_config(CPU, {"model.blank_bias": blank_bias})
        model = CRNN(c.data, c.model, Codec(c.data.charset).num_classes).eval()
        with torch.no_grad():
            return float(model(images).exp()[..., 0].mean())

    # PyTorch's initialisation spreads each frame over the 63 classes; the bias gives the blank most of it.
    assert blank_share(0.0) < 0.05
    assert 0.7 < blank_share(5.5) < 0.9
    with pytest.raises(CaptchaStreamError, match="model.blank_bias: .* got 50"):
        load_config(CPU, {"model.blank_bias": 50})
