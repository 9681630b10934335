"""Faults: killed runs, damaged checkpoints, signals, failing workers, interrupted exports."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from captcha.image import DEFAULT_FONTS
from PIL import Image

from captcha_stream.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def script(name, *args, cwd, **kw):
    return subprocess.run(
        [sys.executable, str(ROOT / name), *args], cwd=cwd, capture_output=True, text=True, env=ENV, timeout=300, **kw
    )


def start(name, *args, cwd, **kw):
    return subprocess.Popen(
        [sys.executable, str(ROOT / name), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        **kw,
    )


def wait_for(predicate, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def logged_steps(run_dir):
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written right now
        if "loss" in rec:
            out.append(rec["step"])
    return out


TRAIN = [
    "--config",
    str(SMOKE),
    "--no-progress",
    "--steps",
    "2000",
    "--set",
    "train.log_every=1",
    "--set",
    "train.checkpoint_every=3",
    "--set",
    "train.eval_every=100000",
]


def test_kill_9_then_resume_continues_from_last_checkpoint(tmp_path):
    proc = start("train.py", *TRAIN, cwd=tmp_path)
    wait_for(lambda: len(logged_steps(tmp_path / "runs/smoke")) >= 10)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    last = tmp_path / "runs/smoke/last.pt"
    state = load_checkpoint(last)  # complete and loadable, never a partial file
    assert state["step"] % 3 == 0 and state["step"] >= 9
    r = script("train.py", *TRAIN[:-6], "--steps", str(state["step"] + 2), "--resume", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"resuming runs/smoke at step {state['step']}" in r.stderr
    assert load_checkpoint(last)["step"] == state["step"] + 2
    assert not list((tmp_path / "runs/smoke").glob(".*tmp*"))


def test_checkpoint_path_never_goes_missing_while_saving(tmp_path, monkeypatch):
    from captcha_stream import checkpoint
    from captcha_stream.errors import CaptchaStreamError

    path = tmp_path / "last.pt"
    state = {"model": {}, "config": {}, "step": 1}
    checkpoint.save_checkpoint(state, path)
    checkpoint.save_checkpoint({**state, "step": 2}, path)
    assert load_checkpoint(path)["step"] == 2 and load_checkpoint(tmp_path / "last.prev.pt")["step"] == 1
    assert not os.path.samefile(path, tmp_path / "last.prev.pt")  # damaging one leaves the other
    real_replace = os.replace

    def dies_before_the_final_rename(src, dst):
        if Path(dst) == path:
            raise OSError(28, "No space left on device")  # stands in for a kill at this instant
        real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", dies_before_the_final_rename)
    with pytest.raises(CaptchaStreamError, match="last.pt: cannot write checkpoint"):
        checkpoint.save_checkpoint({**state, "step": 3}, path)
    # The last good checkpoint is still at its own name, and kept as the previous one too.
    assert load_checkpoint(path)["step"] == 2 and load_checkpoint(tmp_path / "last.prev.pt")["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.prev.pt", "last.pt"]


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_damaged_last_checkpoint_falls_back_to_previous(tmp_path, damage):
    args = ["--config", str(SMOKE), "--no-progress", "--set", "train.checkpoint_every=2"]
    assert script("train.py", *args, "--steps", "4", cwd=tmp_path).returncode == 0
    last = tmp_path / "runs/smoke/last.pt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x00garbage" * 100)
    r = script("train.py", *args, "--steps", "6", "--resume", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "runs/smoke/last.pt: not a readable checkpoint" in r.stderr
    assert "resuming from the previous checkpoint runs/smoke/last.prev.pt" in r.stderr
    assert "resuming runs/smoke at step 2" in r.stderr
    assert load_checkpoint(last)["step"] == 6


def test_both_checkpoints_damaged_is_a_clear_error(tmp_path):
    args = ["--config", str(SMOKE), "--no-progress", "--set", "train.checkpoint_every=2"]
    assert script("train.py", *args, "--steps", "4", cwd=tmp_path).returncode == 0
    for name in ("last.pt", "last.prev.pt"):
        (tmp_path / "runs/smoke" / name).write_bytes(b"broken")
    r = script("train.py", *args, "--steps", "6", "--resume", cwd=tmp_path)
    assert r.returncode == 2
    assert "last.prev.pt: not a readable checkpoint" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_save_and_exit_nonzero(tmp_path, sig, code):
    proc = start("train.py", *TRAIN, cwd=tmp_path)
    wait_for(lambda: len(logged_steps(tmp_path / "runs/smoke")) >= 4)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code
    name = signal.Signals(sig).name
    assert f"error: stopped by {name} at step" in err and "checkpoint saved to runs/smoke/last.pt" in err
    assert "Traceback" not in err
    step = load_checkpoint(tmp_path / "runs/smoke/last.pt")["step"]
    assert step == max(logged_steps(tmp_path / "runs/smoke"))


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_to_the_whole_process_group_stops_cleanly(tmp_path, sig, code):
    # `timeout`, a terminal's Ctrl-C and batch schedulers signal every process of the job,
    # DataLoader workers included: a worker dying first must not turn the stop into a crash.
    proc = start("train.py", *TRAIN, "--workers", "2", cwd=tmp_path, start_new_session=True)
    wait_for(lambda: len(logged_steps(tmp_path / "runs/smoke")) >= 4)
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert f"error: stopped by {signal.Signals(sig).name} at step" in err
    assert "Traceback" not in err and "DataLoader worker" not in err
    step = load_checkpoint(tmp_path / "runs/smoke/last.pt")["step"]
    assert step == max(logged_steps(tmp_path / "runs/smoke"))


def test_failing_dataloader_worker_is_one_clear_line(tmp_path):
    # A font that passes the start-up check (it exists) but cannot be loaded by the worker.
    font = tmp_path / "broken.ttf"
    font.write_bytes(b"this is not a font")
    # A hand-made validation set, so nothing is rendered (with the broken font) before the workers start.
    val = tmp_path / "val"
    val.mkdir()
    Image.new("RGB", (64, 32), "white").save(val / "a.png")
    (val / "labels.csv").write_text("a.png,12\n")
    r = script(
        "train.py",
        "--config",
        str(SMOKE),
        "--no-progress",
        "--workers",
        "2",
        "--set",
        f"data.fonts=[{font}]",
        "--set",
        f"eval.val_dir={val}",
        cwd=tmp_path,
    )
    assert r.returncode == 2
    # One line, the font named; the reason after it is FreeType's own wording. The trainer loads
    # the fonts itself before its workers start, so this is the same line as with --workers 0.
    assert len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith(f"error: {font}: cannot load font: ")


def test_an_image_a_dataloader_worker_cannot_read_is_one_clear_line(tmp_path):
    # A training folder whose image only a worker opens: the failure crosses the process boundary.
    train_dir = tmp_path / "train"
    train_dir.mkdir()
    (train_dir / "bad.png").write_bytes(b"not a png at all")
    (train_dir / "labels.csv").write_text("bad.png,12\n")
    r = script(
        "train.py",
        "--config",
        str(SMOKE),
        "--no-progress",
        "--workers",
        "2",
        "--steps",
        "2",
        "--train-dir",
        str(train_dir),
        cwd=tmp_path,
    )
    assert r.returncode == 2, r.stderr
    # Before it, the validation set is exported (with its progress bar); then one error line and nothing else.
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert "Traceback" not in r.stderr and r.stderr.strip().splitlines()[-1] == errors[0], r.stderr
    assert len(errors) == 1 and errors[0].startswith(f"error: data loading failed: {train_dir / 'bad.png'}: ")


def test_font_vanishing_mid_run_names_the_font(tmp_path):
    font = tmp_path / "font.ttf"
    shutil.copy(DEFAULT_FONTS[0], font)
    proc = start("train.py", *TRAIN, "--set", f"data.fonts=[{font}]", cwd=tmp_path)
    wait_for(lambda: len(logged_steps(tmp_path / "runs/smoke")) >= 2)
    # Workers load fonts once; a resumed run's new workers then find it gone.
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    font.unlink()
    r = script("train.py", *TRAIN, "--resume", "--workers", "1", cwd=tmp_path)
    assert r.returncode == 2
    assert str(font) in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_interrupted_export_leaves_nothing_then_completes(tmp_path):
    args = ["--n", "3000", "--workers", "1", "--out", "set", "--seed", "3", "--config", str(SMOKE)]
    proc = start("export_fixed_set.py", *args, cwd=tmp_path)
    wait_for(lambda: any(len(list(p.glob("*.png"))) > 20 for p in tmp_path.glob(".set.tmp-*")))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (tmp_path / "set").exists()  # no half-written set under the real name
    r = script("export_fixed_set.py", *args[:1], "40", *args[2:], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]  # the leftover was cleaned up
    ref = script(
        "export_fixed_set.py",
        "--n",
        "40",
        "--workers",
        "2",
        "--out",
        "ref",
        "--seed",
        "3",
        "--config",
        str(SMOKE),
        cwd=tmp_path,
    )
    assert ref.returncode == 0
    for p in (tmp_path / "ref").glob("*.png"):
        assert p.read_bytes() == (tmp_path / "set" / p.name).read_bytes()


def test_checkpoints_cannot_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "model": {}, "config": {}, "x": Evil()}, path)
    r = script("evaluate.py", "--checkpoint", str(path), cwd=tmp_path)
    assert (
        r.returncode == 2
        and r.stderr.strip() == f"error: {path}: refused: holds code or objects that are not plain data"
    )
    assert not (tmp_path / "pwned").exists()


def test_resume_with_changed_training_settings_warns(tmp_path):
    args = ["--config", str(SMOKE), "--no-progress", "--set", "train.checkpoint_every=2"]
    assert script("train.py", *args, "--steps", "4", cwd=tmp_path).returncode == 0
    # Reporting more often changes nothing an uninterrupted run would do: no warning.
    r = script("train.py", *args, "--steps", "4", "--set", "train.log_every=1", "--resume", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr
    r = script("train.py", *args, "--steps", "6", "--set", "optim.lr=0.01", "--resume", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    warning = next(line for line in r.stderr.splitlines() if line.startswith("warning: resuming"))
    assert "optim.lr" in warning and "-> 0.01" in warning and "train.steps 4 -> 6" in warning
    assert load_checkpoint(tmp_path / "runs/smoke/last.pt")["config"]["optim"]["lr"] == 0.01


@pytest.mark.parametrize("sig, code, whole_group", [(signal.SIGINT, 130, True), (signal.SIGTERM, 143, False)])
def test_a_run_split_across_processes_stops_cleanly(tmp_path, sig, code, whole_group):
    # Ctrl-C reaches the command and its ranks alike; `kill PID` reaches the command alone, which passes it on.
    proc = start("train.py", *TRAIN, "--set", "train.processes=2", cwd=tmp_path, start_new_session=True)
    wait_for(lambda: len(logged_steps(tmp_path / "runs/smoke")) >= 4)
    if whole_group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == code, err
    assert f"error: stopped by {signal.Signals(sig).name} at step" in err and "Traceback" not in err
    step = load_checkpoint(tmp_path / "runs/smoke/last.pt")["step"]
    assert step == max(logged_steps(tmp_path / "runs/smoke"))


def test_a_failing_rank_stops_the_others_and_says_why(tmp_path, capsys):
    from captcha_stream.train.processes import report, wait

    log = open(tmp_path / "rank1.log", "w+")
    fail = "import sys; print('error: rank trouble', file=sys.stderr); sys.exit(2)"
    ranks = [
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]),
        subprocess.Popen([sys.executable, "-c", fail], stderr=log),
    ]
    began = time.monotonic()
    codes = wait(ranks, grace=5)
    assert time.monotonic() - began < 30 and codes[1] == 2 and codes[0] == -signal.SIGTERM
    # Rank 0 was stopped because another failed: the failure is what the command reports.
    assert report(codes, [log]) == 2
    said = capsys.readouterr().err
    assert "rank 1 of 2 failed (exit status 2)" in said and "error: rank trouble" in said
    log.close()
