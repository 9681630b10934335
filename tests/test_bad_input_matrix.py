"""Every command x every kind of bad argument, generated: exit status 2, exactly one `error:` line
(warnings aside) that names the argument or the value at fault, no traceback, and nothing already
written changed.

tests/test_bad_input.py holds the hand-written cases with their exact messages; this module is the
sweep that finds the ones nobody thought to write.
"""

import hashlib
import os
import signal
from pathlib import Path

import pytest
import torch
from PIL import Image

from captcha_stream import cli
from captcha_stream.cli import run

ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / "configs" / "smoke.yaml")
CKPT = "runs/smoke/last.pt"
ADDON = str(ROOT / "configs" / "classic36-denoiser.yaml")

# What a bad argument of each kind of parameter looks like: kind -> workspace value.
IN_FILE = {
    "missing": "nothere.bin",
    "directory": "adir",
    "empty": "empty.bin",
    "huge": "huge.bin",
    "non-utf8": "latin1.bin",
    "fifo": "pipe",
    "unreadable": "unreadable.bin",
}
IN_DIR = {"missing": "nothere_dir", "a-file": "afile", "fifo": "pipe", "empty": "emptydir"}
OUT_FILE = {"no-parent": "no/such/dir/out.x", "directory": "adir", "unwritable": "ro/out.x", "fifo": "pipe"}
OUT_DIR = {"a-file": "afile", "unwritable": "ro/out", "fifo": "pipe"}
INT = {"wrong-type": "abc", "negative": "-5", "huge": "99999999999999999999999", "nan": "nan", "float": "2.5"}
COUNT = {**INT, "zero": "0"}
FLOAT = {"wrong-type": "abc", "negative": "-5", "nan": "nan", "inf": "inf"}
DEVICE = {"unknown": "bogus", "empty": "", "bad-index": "cpu:x", "negative-index": "cuda:-1"}

EVAL_BASE = ["--checkpoint", CKPT, "--data", "set", "--no-progress"]
ONNX_OK = "model.onnx"

# command -> [(argument, kinds, wrong-type value, base arguments the others are valid with)];
# a positional argument is written "#N" (its index in the base list, which it replaces).
TABLE = {
    "train": [
        ("--config", IN_FILE, "image.png", ["--no-progress", "--run-dir", "r"]),
        ("--train-dir", IN_DIR, None, ["--config", SMOKE, "--no-progress", "--run-dir", "r"]),
        ("--labels", IN_FILE, "image.png", ["--config", SMOKE, "--train-dir", "set", "--run-dir", "r"]),
        ("--run-dir", OUT_DIR, None, ["--config", SMOKE, "--no-progress"]),
        ("--steps", COUNT, None, ["--config", SMOKE, "--run-dir", "r"]),
        ("--minutes", FLOAT, None, ["--config", SMOKE, "--run-dir", "r"]),
        ("--batch-size", COUNT, None, ["--config", SMOKE, "--run-dir", "r"]),
        ("--workers", INT, None, ["--config", SMOKE, "--run-dir", "r"]),
        ("--device", DEVICE, None, ["--config", SMOKE, "--run-dir", "r"]),
    ],
    "evaluate": [
        ("--checkpoint", IN_FILE, "config.yaml", ["--data", "set", "--no-progress"]),
        ("--data", IN_DIR, None, ["--checkpoint", CKPT, "--no-progress"]),
        ("--labels", IN_FILE, "image.png", EVAL_BASE),
        ("--json", OUT_FILE, None, EVAL_BASE),
        ("--view-out", OUT_FILE, None, [*EVAL_BASE, "--view"]),
        ("--sheet", OUT_FILE, None, EVAL_BASE),
        ("--sheet-count", COUNT, None, [*EVAL_BASE, "--sheet", "sheet.png"]),
        ("--beam", INT, None, EVAL_BASE),
        ("--samples", INT, None, EVAL_BASE),
        ("--confusions", INT, None, EVAL_BASE),
        ("--batch-size", COUNT, None, EVAL_BASE),
        ("--device", DEVICE, None, EVAL_BASE),
        ("--tta", {"wrong-type": "abc", "negative": "-2", "nan": "nan"}, None, EVAL_BASE),
    ],
    "predict": [
        ("--checkpoint", IN_FILE, "config.yaml", ["set/000000.png"]),
        ("--beam", INT, None, ["--checkpoint", CKPT, "set/000000.png"]),
        ("--batch-size", COUNT, None, ["--checkpoint", CKPT, "set/000000.png"]),
        ("--device", DEVICE, None, ["--checkpoint", CKPT, "set/000000.png"]),
    ],
    "export": [
        ("--config", IN_FILE, "image.png", ["--n", "2", "--out", "e", "--workers", "1"]),
        ("--out", OUT_DIR, None, ["--config", SMOKE, "--n", "2", "--workers", "1"]),
        ("--n", COUNT, None, ["--config", SMOKE, "--out", "e", "--workers", "1"]),
        ("--seed", INT, None, ["--config", SMOKE, "--n", "2", "--out", "e", "--workers", "1"]),
        ("--workers", COUNT, None, ["--config", SMOKE, "--n", "2", "--out", "e"]),
    ],
    "export-onnx": [
        ("--checkpoint", IN_FILE, "config.yaml", ["--out", "m.onnx"]),
        ("--out", OUT_FILE, None, ["--checkpoint", CKPT]),
        ("--opset", INT, None, ["--checkpoint", CKPT, "--out", "m.onnx"]),
    ],
    "plot": [
        ("#0", {**IN_FILE, "empty-dir": "emptydir"}, "image.png", ["X", "--out", "p.png"]),
        ("--out", OUT_FILE, None, ["runs/smoke"]),
    ],
    "slim": [("#0", IN_FILE, "config.yaml", ["X", "s.pt"]), ("#1", OUT_FILE, None, [CKPT, "X"])],
    "average": [
        ("#0", IN_FILE, "config.yaml", ["X", CKPT, "--out", "a.pt"]),
        ("--out", OUT_FILE, None, [CKPT, CKPT]),
    ],
    "widen": [
        ("#0", IN_FILE, "config.yaml", ["X", "w.pt", "--set", "model.rnn_hidden=40"]),
        ("#1", OUT_FILE, None, [CKPT, "X", "--set", "model.rnn_hidden=40"]),
    ],
    "train-addon": [
        ("--config", IN_FILE, "image.png", ["denoiser", "--out", "d.pt", "--steps", "1"]),
        ("--out", OUT_FILE, None, ["denoiser", "--config", ADDON, "--steps", "1"]),
        ("--json", OUT_FILE, None, ["denoiser", "--config", ADDON, "--out", "d.pt", "--steps", "1"]),
        ("--steps", COUNT, None, ["denoiser", "--config", ADDON, "--out", "d.pt"]),
    ],
    "attach": [
        ("#0", IN_FILE, "config.yaml", ["X", "at.pt", "--denoiser", CKPT]),
        ("#1", OUT_FILE, None, [CKPT, "X", "--denoiser", CKPT]),
        ("--denoiser", IN_FILE, "config.yaml", [CKPT, "at.pt"]),
        ("--second-look", IN_FILE, "config.yaml", [CKPT, "at.pt"]),
    ],
    "serve": [
        ("--checkpoint", IN_FILE, "config.yaml", ["--port", "1"]),
        ("--port", COUNT, None, ["--checkpoint", CKPT]),
        ("--max-bytes", COUNT, None, ["--checkpoint", CKPT]),
        ("--max-pixels", COUNT, None, ["--checkpoint", CKPT]),
    ],
    "demo": [
        ("--checkpoint", IN_FILE, "config.yaml", ["--n", "2", "--out", "dm"]),
        ("--n", COUNT, None, ["--out", "dm", "--checkpoint", CKPT]),
        ("--seed", INT, None, ["--n", "2", "--out", "dm", "--checkpoint", CKPT]),
        ("--out", OUT_DIR, None, ["--n", "2", "--checkpoint", CKPT]),
    ],
}
MAINS = {name: getattr(cli, name.replace("-", "_") + "_main") for name in TABLE}
# Values a command accepts, and rightly: -1 workers is "auto"; an export's workers are capped at
# what the machine has; and counts that only bound what is printed, drawn or batched (samples,
# confusions, sheet size, batch size, beam width) do no harm when huge: the set's size bounds the work.
ALLOWED = {
    ("train", "--workers", "negative"),
    ("export", "--workers", "huge"),
    ("evaluate", "--samples", "huge"),
    ("evaluate", "--confusions", "huge"),
    ("evaluate", "--sheet-count", "huge"),
    ("evaluate", "--batch-size", "huge"),
    ("evaluate", "--beam", "huge"),
    ("predict", "--batch-size", "huge"),
    ("predict", "--beam", "huge"),
}


def cases():
    for command, rows in TABLE.items():
        for arg, kinds, wrong_type, base in rows:
            values = dict(kinds)
            if wrong_type is not None:
                values["wrong-type"] = wrong_type
            for kind, value in values.items():
                if (command, arg, kind) in ALLOWED:
                    continue
                if arg.startswith("#"):
                    args = list(base)
                    args[int(arg[1:])] = value
                else:
                    args = [*base, arg, value]
                yield pytest.param(command, arg, value, args, id=f"{command}:{arg}:{kind}")


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    w = tmp_path_factory.mktemp("matrix")
    cwd = os.getcwd()
    os.chdir(w)
    try:
        for main, args in [
            (cli.train_main, ["--config", SMOKE, "--no-progress", "--steps", "2"]),
            (cli.export_main, ["--n", "3", "--config", SMOKE, "--out", "set", "--workers", "1"]),
        ]:
            with pytest.raises(SystemExit) as exc:
                run(main, args)
            assert exc.value.code == 0
    finally:
        os.chdir(cwd)
    (w / "adir").mkdir()
    (w / "emptydir").mkdir()
    (w / "afile").write_text("x")
    (w / "empty.bin").write_bytes(b"")
    with open(w / "huge.bin", "wb") as f:
        f.truncate(3 << 30)  # sparse: 3 GiB that take no disk
    (w / "latin1.bin").write_bytes("train:\n  steps: 5 # größer\n".encode("latin-1") + b"\xff\xfe\x00")
    os.mkfifo(w / "pipe")
    (w / "config.yaml").write_text("train:\n  steps: 3\n")
    Image.new("L", (64, 32), 200).save(w / "image.png")
    if os.geteuid() == 0:
        # Root reads any file; this one opens but every read fails (EIO).
        (w / "unreadable.bin").symlink_to("/proc/self/mem")
    else:  # pragma: no cover - CI runs as root
        (w / "unreadable.bin").write_text("x")
        (w / "unreadable.bin").chmod(0)
    ro = Path("/sys/kernel")  # read-only for root too
    (w / "ro").symlink_to(ro) if ro.is_dir() else (w / "ro").mkdir(mode=0o500)
    return w


def snapshot(folder):
    """Every entry under `folder` (links not followed): a hash of a regular file's bytes, the kind of
    anything else (a FIFO replaced by a file is a change too)."""
    seen = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        if path.is_symlink() or path.is_dir():
            continue
        if not path.is_file():
            seen[name] = "not a regular file"
        elif path.stat().st_size <= 1 << 26:
            seen[name] = hashlib.sha1(path.read_bytes()).hexdigest()
        else:
            seen[name] = f"{path.stat().st_size} bytes"
    return seen


class Hung(Exception):
    pass


def _alarm(signum, frame):
    raise Hung


@pytest.mark.parametrize("command, arg, value, args", list(cases()))
def test_bad_argument(ws, capsys, monkeypatch, command, arg, value, args):
    monkeypatch.chdir(ws)
    before = snapshot(ws)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(60)  # a FIFO opened for reading or writing waits forever for the other end
    try:
        with pytest.raises(SystemExit) as exc:
            run(MAINS[command], args)
    except Hung:
        pytest.fail(f"{command} {' '.join(args)}: still running after 60 s")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    err = capsys.readouterr().err
    lines = [ln for ln in err.strip().splitlines() if ln.strip() and not ln.startswith("warning:")]
    assert exc.value.code == 2, err
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    names = {arg, arg.lstrip("-").replace("-", "_"), arg.lstrip("-"), Path(value).name or value, value}
    if arg.startswith("#"):
        names = {Path(value).name or value, value}
    assert any(name and name in lines[0] for name in names), f"{lines[0]!r} names none of {sorted(names)}"
    assert snapshot(ws) == before, "a file already written changed"
    torch.set_num_threads(1)  # a case that set threads must not slow the next
