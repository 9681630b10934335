"""torchrun with 2 gloo processes on the CPU: the same train.py, each rank its own data."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"
COMMON = ["--config", str(SMOKE), "--no-progress", "--workers", "0", "--set", "train.log_every=1"]


def torchrun(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(ROOT / "train.py"),
        *COMMON,
        *args,
    ]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


def single(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *COMMON, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_two_rank_gloo_run_and_checkpoint_round_trip(tmp_path):
    r = torchrun("--steps", "4", "--run-dir", "ddp", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    run = tmp_path / "ddp"
    # Rank 0 alone validated, so it alone reports (the other rank has no reading to print).
    assert r.stdout.count("done:") == 1 and "nan%" not in r.stdout
    # Rank 0 alone writes: one checkpoint (at the last step), one best.pt, one log; no temporary files left.
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "curve.png", "last.pt", "metrics.jsonl"]
    recs = records(run)
    start = recs[0]
    assert start["event"] == "start" and start["world_size"] == 2 and start["global_batch"] == 16
    rank0, rank1 = start["first_labels"]
    assert rank0 != rank1
    assert [rec["step"] for rec in recs if "loss" in rec] == [1, 2, 3, 4]
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["step"] == 4 and not any(k.startswith("module.") for k in state["model"])

    # DDP checkpoint -> single process.
    r = single("--steps", "6", "--run-dir", "ddp", "--resume", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 6

    # Single-process checkpoint -> DDP.
    r = single("--steps", "2", "--run-dir", "one", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    r = torchrun("--steps", "4", "--run-dir", "one", "--resume", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert torch.load(tmp_path / "one" / "last.pt", weights_only=True)["step"] == 4


def test_processes_split_one_step_and_a_resumed_run_continues_exactly(tmp_path):
    # train.processes: the command starts its own one-thread ranks; they share the step's batch.
    split = ["--steps", "8", "--set", "train.processes=2", "--set", "train.checkpoint_every=4"]
    r = single(*split, "--run-dir", "split", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("done:") == 1 and "Traceback" not in r.stderr
    start = records(tmp_path / "split")[0]
    # The global batch and the learning rate stay the config's (smoke.yaml: 8 at 0.003).
    assert start["world_size"] == 2 and start["global_batch"] == 8 and start["lr"] == 0.003
    rank0, rank1 = start["first_labels"]
    assert rank0 != rank1
    state = torch.load(tmp_path / "split" / "last.pt", weights_only=True)
    assert state["step"] == 8 and state["config"]["train"]["processes"] == 2
    assert state["config"]["train"]["batch_size"] == 8

    # From the step-4 checkpoint, the same command with --resume: the same losses and weights.
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    (resumed / "last.pt").write_bytes((tmp_path / "split" / "last.prev.pt").read_bytes())
    r = single(*split, "--run-dir", "resumed", "--resume", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    straight = {rec["step"]: rec["loss"] for rec in records(tmp_path / "split") if "loss" in rec}
    again = {rec["step"]: rec["loss"] for rec in records(resumed) if "loss" in rec}
    assert sorted(again) == [5, 6, 7, 8] and all(again[s] == straight[s] for s in again)
    after = torch.load(resumed / "last.pt", weights_only=True)
    for name, value in state["model"].items():
        assert torch.equal(after["model"][name], value), name


def test_processes_that_do_not_match_torchrun_are_one_clear_line(tmp_path):
    r = torchrun("--steps", "2", "--set", "train.processes=4", "--run-dir", "x", cwd=tmp_path)
    assert r.returncode != 0
    assert "error: train.processes=4, but 2 processes were started" in r.stderr


def test_only_a_cpu_step_is_split_across_processes(monkeypatch, capsys):
    # train and audit share this decision: on a GPU the recipe's ranks become one process, said once.
    from captcha_stream import device as device_module
    from captcha_stream.config import load_config, resolve_config
    from captcha_stream.train import processes

    monkeypatch.delenv(processes.LAUNCHED, raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    cfg = load_config(resolve_config("configs/cpu.yaml"), {"train.processes": 2})
    assert processes.plan_processes(cfg) == (cfg, True)

    monkeypatch.setattr(device_module, "pick_device", lambda name, where="train.device": torch.device("cuda"))
    planned, launches = processes.plan_processes(cfg)
    assert not launches and planned.train.processes == 1 and cfg.train.processes == 2
    assert "train.processes=2: one process on cuda" in capsys.readouterr().err

    monkeypatch.setenv(processes.LAUNCHED, "1")  # a launched rank trains; it never launches again
    assert processes.plan_processes(cfg) == (cfg, False)
