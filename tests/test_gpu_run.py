"""scripts/gpu_run.sh: a run sized to a wall-time budget from a probe of the training rate."""

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


def test_budgeted_run_gets_the_steps_the_probe_says_fit(tmp_path):
    env = {
        **os.environ,
        # The script calls python3: make that this interpreter.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "OUT": str(tmp_path / "out"),
        "RUN_DIR": str(tmp_path / "run"),
        "PROBE_DIR": str(tmp_path / "probe"),
        "PROBE_STEPS": "40",
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
    probe = re.search(r"probe: (\d+) images/s at batch 8; (\d+) steps fit (-?\d+) s", r.stderr)
    assert probe, r.stderr
    rate, steps, seconds = (int(g) for g in probe.groups())
    # The steps are the probe's rate times the seconds left, in batches of 8 (rounded down).
    assert max(1, rate * seconds // 8) - 1 <= steps <= max(1, (rate + 1) * seconds // 8)
    assert f"training {SMOKE} for {steps} steps" in r.stdout
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "best-slim.pt",
        "last-slim.pt",
        "metrics.jsonl",
        "probe.log",
        "train.log",
    ]
    last = load_checkpoint(out / "last-slim.pt")
    assert "optimizer" not in last
    # The run either finished its schedule or was stopped by the guard with a saved step.
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert logged[0]["event"] == "start"
    assert last["step"] == steps or "exit status 124" in r.stdout
    assert last["config"]["train"]["steps"] == steps
