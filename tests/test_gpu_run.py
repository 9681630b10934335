"""scripts/gpu_run.sh: a run given the budget left as train.py --minutes, with a guard."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from captcha_stream.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / "configs" / "smoke.yaml")

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash")


def test_budgeted_run_trains_for_the_minutes_left_and_brings_back_its_checkpoints(tmp_path):
    env = {
        **os.environ,
        # The script calls python3: make that this interpreter.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "OUT": str(tmp_path / "out"),
        "RUN_DIR": str(tmp_path / "run"),
        "RESERVE": "4",
        "WORKERS": "0",
    }
    sets = ["--set", f"eval.val_dir={tmp_path / 'val'}", "--set", f"eval.test_dir={tmp_path / 'test'}"]
    r = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_run.sh"), SMOKE, "30", *sets],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    minutes = re.search(r"training \S+ for ([0-9.]+) minutes", r.stdout)
    assert minutes, r.stdout
    # The budget less set-up and the reserve.
    assert 0.2 < float(minutes.group(1)) <= 26 / 60
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["best-slim.pt", "last-slim.pt", "metrics.jsonl", "train.log"]
    last = load_checkpoint(out / "last-slim.pt")
    assert "optimizer" not in last
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert logged[0]["event"] == "start"
    # The run ended on its own, on time, at the end of the schedule it fitted (lr at its floor).
    lrs = [rec["lr"] for rec in logged if "lr" in rec and "event" not in rec]
    assert "exit status 0" in r.stdout and last["step"] > 10 and lrs[-1] == pytest.approx(0.003 * 0.01, rel=0.05)
    assert last["config"]["train"]["minutes"] == float(minutes.group(1))
    evals = [rec for rec in logged if "eval" in rec]
    assert evals[-1]["step"] == last["step"] and evals[-1]["time"] <= float(minutes.group(1)) * 60 + 2
