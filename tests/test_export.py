import subprocess
import sys
from pathlib import Path

import pytest

from captcha_stream.config import DataConfig
from captcha_stream.data.folder import FolderDataset
from captcha_stream.data.frozen import export_set
from captcha_stream.errors import CaptchaStreamError

ROOT = Path(__file__).resolve().parents[1]
DATA = DataConfig(width=160, height=60)


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def quiet(**kw):
    return dict(progress=False, log=lambda s: None, **kw)


def test_one_and_two_processes_write_identical_bytes(tmp_path):
    a = export_set(tmp_path / "a", 40, DATA, seed=5, workers=1, **quiet())
    b = export_set(tmp_path / "b", 40, DATA, seed=5, workers=2, **quiet())
    assert snapshot(a) == snapshot(b)
    assert len(FolderDataset(a, DATA)) == 40


def test_different_seed_differs(tmp_path):
    a = export_set(tmp_path / "a", 3, DATA, seed=1, workers=1, **quiet())
    b = export_set(tmp_path / "b", 3, DATA, seed=2, workers=1, **quiet())
    assert snapshot(a)["000000.png"] != snapshot(b)["000000.png"]


def test_extend_appends_and_keeps_earlier_files(tmp_path):
    out = export_set(tmp_path / "s", 5, DATA, seed=4, workers=1, **quiet())
    before = snapshot(out)
    inodes = {p.name: p.stat().st_ino for p in out.glob("*.png")}
    export_set(out, 3, DATA, extend=True, workers=1, **quiet())
    after = snapshot(out)
    for name in inodes:
        assert after[name] == before[name]
    assert sorted(n for n in after if n.endswith(".png")) == [f"{i:06d}.png" for i in range(8)]
    # Extending continues the seeded sequence: same as exporting 8 at once.
    whole = export_set(tmp_path / "whole", 8, DATA, seed=4, workers=2, **quiet())
    assert snapshot(whole) == after


def test_refuses_different_set_without_force(tmp_path):
    out = export_set(tmp_path / "s", 3, DATA, seed=1, workers=1, **quiet())
    with pytest.raises(CaptchaStreamError, match="holds a different set"):
        export_set(out, 3, DATA, seed=2, workers=1, **quiet())
    export_set(out, 3, DATA, seed=1, workers=1, **quiet())  # the same set: nothing to do
    export_set(out, 2, DATA, seed=2, force=True, workers=1, **quiet())
    assert len(FolderDataset(out, DATA)) == 2


def test_extend_needs_existing_set(tmp_path):
    with pytest.raises(CaptchaStreamError, match="no set to extend"):
        export_set(tmp_path / "none", 3, DATA, extend=True, workers=1, **quiet())


def test_stale_temporary_folder_is_cleaned(tmp_path):
    stale = tmp_path / ".s.tmp-999999999"
    stale.mkdir()
    (stale / "000000.png").write_bytes(b"half")
    export_set(tmp_path / "s", 2, DATA, seed=0, workers=1, **quiet())
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def run_cli(*args, cwd):
    return subprocess.run(
        [sys.executable, str(ROOT / "export_fixed_set.py"), *args], cwd=cwd, capture_output=True, text=True
    )


def test_cli_writes_default_location_and_reports_errors(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  width: 160\n  height: 60\neval:\n  test_dir: data/t160\n")
    r = run_cli("--n", "4", "--config", str(cfg), "--workers", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "data/train/labels.csv").is_file()
    r = run_cli("--n", "4", "-T", "--config", str(cfg), "--workers", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "data/t160/set.json").is_file()
    r = run_cli("--n", "0", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip() == "error: --n: must be at least 1, got 0"
    r = run_cli("--n", "4", "--seed", "9", "--config", str(cfg), cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "data/train: holds a different set" in r.stderr
