"""Bad input: every case gets exit status 2 and one line that names the culprit, never a traceback.

Each case runs a command-line entry point in-process (the same `run` wrapper the scripts use)
against a small workspace of files made once for the module.
"""

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from captcha_stream.cli import average_main, evaluate_main, export_main, predict_main, run, train_main, widen_main

ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / "configs" / "smoke.yaml")
MAINS = {
    "train": train_main,
    "evaluate": evaluate_main,
    "predict": predict_main,
    "export": export_main,
    "average": average_main,
    "widen": widen_main,
}


def png_header_only(width, height):
    """A PNG that declares a huge size: Pillow refuses it at open(), before decoding."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """Workspace: a trained smoke checkpoint, a labelled set, and assorted broken files."""
    w = tmp_path_factory.mktemp("ws")
    cwd = os.getcwd()
    os.chdir(w)
    try:
        with pytest.raises(SystemExit) as exc:
            run(train_main, ["--config", SMOKE, "--no-progress", "--steps", "2"])
        assert exc.value.code == 0
        with pytest.raises(SystemExit):
            run(export_main, ["--n", "3", "--config", SMOKE, "--out", "set", "--workers", "1"])
        with pytest.raises(SystemExit):
            run(export_main, ["--n", "3", "--config", SMOKE, "--out", "set_test_seed", "-T", "--workers", "1"])
    finally:
        os.chdir(cwd)
    # The smoke checkpoint as if made by another model: what `average` must refuse to mix.
    other = torch.load(w / "runs" / "smoke" / "last.pt", weights_only=True)
    other["config"]["model"]["rnn_hidden"] += 1
    torch.save(other, w / "other_model.pt")
    # A hand-edited checkpoint that names weights it does not hold.
    lost = torch.load(w / "runs" / "smoke" / "last.pt", weights_only=True)
    lost["read_with"] = "ema"
    lost.pop("ema", None)
    torch.save(lost, w / "lost_weights.pt")
    (w / "yaml_syntax.yaml").write_text("train:\n  steps: [1, 2\n")
    (w / "top_list.yaml").write_text("- data\n- model\n")
    (w / "not_utf8.csv").write_bytes(b"a.png,\xff\xfe\n")
    (w / "text.png").write_text("hello, I am not an image")
    (w / "empty.png").write_bytes(b"")
    (w / "huge.png").write_bytes(png_header_only(30000, 30000))
    (w / "adir").mkdir()
    (w / "not_ckpt.pt").write_text("just text")
    (w / "afile").write_text("x")
    # An existing folder nobody can write to: a read-only filesystem stops root too.
    ro = Path("/sys/kernel")
    if ro.is_dir():
        (w / "ro").symlink_to(ro)
    else:  # pragma: no cover - no sysfs: an ordinary read-only folder (works when not root)
        (w / "ro").mkdir(mode=0o500)
    Image.new("RGBA", (120, 40), (0, 0, 0, 0)).save(w / "rgba.png")
    Image.new("P", (120, 40)).save(w / "palette.png")
    Image.fromarray(np.full((40, 120), 40000, dtype=np.uint16)).save(w / "sixteen.png")
    for name, rows in {
        "outside": "000000.png,12x\n",
        "emptylabel": "000000.png,\n",
        "malformed": "000000.png,12,3\n",
        "dup": "000000.png,12\n000000.png,34\n",
        "missingimg": "nope.png,12\n",
    }.items():
        (w / f"{name}.csv").write_text(rows)
    return w


CKPT = "runs/smoke/last.pt"
CASES = [
    # (id, command, args, text the one-line message must contain)
    ("yaml-syntax", "train", ["--config", "yaml_syntax.yaml"], "yaml_syntax.yaml: YAML syntax error at line"),
    ("yaml-top-list", "train", ["--config", "top_list.yaml"], "top_list.yaml: expected a mapping"),
    ("config-missing", "train", ["--config", "nope.yaml"], "nope.yaml: config file not found"),
    ("config-is-dir", "train", ["--config", "adir"], "adir: is a directory"),
    ("unknown-key", "train", ["--config", SMOKE, "--set", "optim.momentum=0.9"], "unknown config key 'optim.momentum'"),
    ("unknown-section", "train", ["--config", SMOKE, "--set", "trian.steps=3"], "unknown config key 'trian'"),
    (
        "wrong-type",
        "train",
        ["--config", SMOKE, "--set", "train.batch_size=big"],
        "train.batch_size: expected an integer",
    ),
    ("wrong-type-bool", "train", ["--config", SMOKE, "--set", "train.amp=maybe"], "train.amp: expected true or false"),
    ("negative-steps", "train", ["--config", SMOKE, "--steps", "-5"], "train.steps: must be at least 1, got -5"),
    ("zero-batch", "train", ["--config", SMOKE, "--batch-size", "0"], "train.batch_size: must be at least 1, got 0"),
    (
        "decay-unknown",
        "train",
        ["--config", SMOKE, "--set", "optim.decay=step"],
        "optim.decay: must be cosine or linear",
    ),
    ("lr-zero", "train", ["--config", SMOKE, "--set", "optim.lr=0"], "optim.lr: must be > 0"),
    (
        "tta-negative",
        "train",
        ["--config", SMOKE, "--set", "eval.tta=[2,-3]"],
        "eval.tta: offsets must be >= 1 pixel, got -3",
    ),
    ("lr-negative", "train", ["--config", SMOKE, "--set", "optim.lr=-1e-3"], "optim.lr: must be > 0"),
    ("min-gt-max", "train", ["--config", SMOKE, "--set", "data.min_length=4"], "data.min_length: 4 is greater than"),
    (
        "too-narrow",
        "train",
        ["--config", SMOKE, "--set", "data.max_length=20", "--run-dir", "r1"],
        "fewer than 2 x data.max_length=40",
    ),
    ("width-too-small", "train", ["--config", SMOKE, "--set", "data.width=10"], "data.width: 10 is too small"),
    ("charset-dup", "train", ["--config", SMOKE, "--set", "data.charset=aab"], "data.charset: symbol 'a' appears"),
    ("charset-empty", "train", ["--config", SMOKE, "--set", "data.charset="], "data.charset: is empty"),
    ("channels", "train", ["--config", SMOKE, "--set", "data.channels=2"], "data.channels: must be 1"),
    ("rnn-type", "train", ["--config", SMOKE, "--set", "model.rnn=transformer"], "model.rnn: must be 'lstm' or 'gru'"),
    (
        "font-missing",
        "train",
        ["--config", SMOKE, "--set", "data.fonts=[/no/such.ttf]"],
        "font file not found: /no/such.ttf",
    ),
    ("no-cuda", "train", ["--config", SMOKE, "--device", "cuda:3", "--run-dir", "r2"], "no CUDA device"),
    (
        "not-a-device",
        "train",
        ["--config", SMOKE, "--device", "gpu0", "--run-dir", "r2"],
        "train.device: must be auto, cpu, cuda, cuda:N or mps, got 'gpu0'",
    ),
    (
        "run-dir-under-file",
        "train",
        ["--config", SMOKE, "--run-dir", "afile/run"],
        "afile/run: cannot create run directory",
    ),
    ("run-dir-unwritable", "train", ["--config", SMOKE, "--run-dir", "ro"], "ro: run directory is not writable"),
    ("run-exists", "train", ["--config", SMOKE], "runs/smoke: holds a run already"),
    (
        "resume-other-charset",
        "train",
        ["--config", SMOKE, "--resume", "--set", "data.charset=abcdefghij"],
        "last.pt: was trained with data.charset='0123456789'",
    ),
    (
        "resume-other-size",
        "train",
        ["--config", SMOKE, "--resume", "--set", "data.height=40"],
        "last.pt: was trained with data.height=32",
    ),
    (
        "train-dir-missing",
        "train",
        ["--config", SMOKE, "--train-dir", "nodir", "--run-dir", "r3"],
        "nodir: image folder not found",
    ),
    (
        "labels-outside-charset",
        "evaluate",
        ["--checkpoint", CKPT, "--data", "set", "--labels", "outside.csv"],
        "outside.csv:1: label '12x': symbol 'x' is not in the charset",
    ),
    (
        "empty-label",
        "evaluate",
        ["--checkpoint", CKPT, "--data", "set", "--labels", "emptylabel.csv"],
        "emptylabel.csv:1: empty label for 000000.png",
    ),
    ("bn-refresh-negative", "evaluate", ["--checkpoint", CKPT, "--bn-refresh", "-1"], "--bn-refresh: must be >= 0"),
    (
        "malformed-row",
        "evaluate",
        ["--checkpoint", CKPT, "--data", "set", "--labels", "malformed.csv"],
        "malformed.csv:1: malformed row",
    ),
    (
        "duplicate-row",
        "evaluate",
        ["--checkpoint", CKPT, "--data", "set", "--labels", "dup.csv"],
        "dup.csv:2: duplicate filename 000000.png",
    ),
    (
        "image-missing",
        "evaluate",
        ["--checkpoint", CKPT, "--data", "set", "--labels", "missingimg.csv"],
        "nope.png: image file not found",
    ),
    (
        "labels-missing",
        "evaluate",
        ["--checkpoint", CKPT, "--data", "set", "--labels", "none.csv"],
        "none.csv: labels CSV not found",
    ),
    (
        "csv-not-utf8",
        "evaluate",
        ["--checkpoint", CKPT, "--data", "set", "--labels", "not_utf8.csv"],
        "not_utf8.csv: not a UTF-8 text CSV",
    ),
    ("no-csv-in-folder", "evaluate", ["--checkpoint", CKPT, "--data", "adir"], "adir: no labels CSV found"),
    ("ckpt-not-ckpt", "evaluate", ["--checkpoint", "not_ckpt.pt"], "not_ckpt.pt: not a readable checkpoint"),
    ("ckpt-is-dir", "evaluate", ["--checkpoint", "adir"], "adir: is a directory, expected a checkpoint"),
    ("ckpt-missing", "evaluate", ["--checkpoint", "gone.pt"], "gone.pt: checkpoint not found"),
    ("beam-negative", "evaluate", ["--checkpoint", CKPT, "--beam", "-2"], "--beam: must be >= 0"),
    ("tta-too-large", "evaluate", ["--checkpoint", CKPT, "--tta", "999"], "--tta: 999 pixels is more than 1/8 of"),
    ("confusions-negative", "evaluate", ["--checkpoint", CKPT, "--confusions", "-1"], "--confusions: must be >= 0"),
    ("sheet-count-zero", "evaluate", ["--checkpoint", CKPT, "--sheet-count", "0"], "--sheet-count: must be >= 1"),
    (
        "sheet-folder-missing",
        "evaluate",
        ["--checkpoint", CKPT, "--sheet", "nowhere/s.png"],
        "--sheet: folder nowhere does not exist",
    ),
    (
        "json-folder-missing",
        "evaluate",
        ["--checkpoint", CKPT, "--json", "nowhere/r.json"],
        "--json: folder nowhere does not exist",
    ),
    (
        "val-seed-is-test-seed",
        "train",
        ["--config", SMOKE, "--set", "eval.val_seed=1000003"],
        "eval.val_seed: must differ from eval.test_seed (1000003)",
    ),
    (
        "val-dir-is-test-dir",
        "train",
        ["--config", SMOKE, "--set", "eval.val_dir=data/test-smoke/"],
        "eval.val_dir: must differ from eval.test_dir (data/test-smoke)",
    ),
    (
        "val-set-is-test-set",
        "train",
        ["--config", SMOKE, "--run-dir", "r4", "--set", "eval.val_dir=set_test_seed"],
        "set_test_seed: validation set was exported with seed 1000003, the test set's; set eval.val_dir",
    ),
    (
        "val-dir-is-file",
        "train",
        ["--config", SMOKE, "--run-dir", "r6", "--set", "eval.val_dir=afile"],
        "afile: validation set is a file, expected a folder; set eval.val_dir to another folder",
    ),
    ("predict-tta-negative", "predict", ["--checkpoint", CKPT, "text.png", "--tta=-1"], "--tta: offsets must be >= 1"),
    ("predict-tta-word", "predict", ["--checkpoint", CKPT, "text.png", "--tta", "two"], "--tta: expected pixel"),
    ("export-n-zero", "export", ["--n", "0"], "--n: must be at least 1, got 0"),
    ("export-extend-none", "export", ["--n", "2", "--extend", "--out", "fresh"], "fresh: no set to extend"),
    ("export-different", "export", ["--n", "5", "--out", "set", "--config", SMOKE], "set: holds a different set"),
    ("export-out-is-file", "export", ["--n", "2", "--out", "afile"], "afile: exists and is not a folder"),
    ("set-syntax", "train", ["--config", SMOKE, "--set", "steps=3"], "expected section.key=value"),
    (
        "init-missing",
        "train",
        ["--config", SMOKE, "--set", "train.init_from=gone.pt", "--run-dir", "r4"],
        "gone.pt: checkpoint not found",
    ),
    (
        "init-other-size",
        "train",
        ["--config", SMOKE, "--set", f"train.init_from={CKPT}", "--set", "data.height=40", "--run-dir", "r5"],
        "last.pt: was trained with data.height=32",
    ),
    (
        "init-other-model",
        "train",
        ["--config", SMOKE, "--set", f"train.init_from={CKPT}", "--set", "model.rnn_hidden=16", "--run-dir", "r6"],
        "last.pt holds a different model than the config describes",
    ),
    ("ema-decay-one", "train", ["--config", SMOKE, "--set", "train.ema_decay=1"], "train.ema_decay: must be in [0, 1)"),
    (
        "focus-outside-charset",
        "train",
        ["--config", SMOKE, "--set", "train.focus_symbols=0O", "--run-dir", "r7"],
        "train.focus_symbols: symbol 'O' is not in data.charset",
    ),
    (
        "focus-weight-zero",
        "train",
        ["--config", SMOKE, "--set", "train.focus_weight=0", "--run-dir", "r8"],
        "train.focus_weight: must be > 0",
    ),
    (
        "hard-pool-zero",
        "train",
        ["--config", SMOKE, "--set", "train.hard_pool=0", "--run-dir", "r9"],
        "train.hard_pool: must be at least 1 (1 = off), got 0",
    ),
    (
        "quiet-negative",
        "train",
        ["--config", SMOKE, "--set", "train.quiet_images=-1", "--run-dir", "r10"],
        "train.quiet_images: must be >= 0 (0 = off), got -1",
    ),
    (
        "processes-zero",
        "train",
        ["--config", SMOKE, "--set", "train.processes=0", "--run-dir", "r-p0"],
        "train.processes: must be at least 1, got 0",
    ),
    (
        "processes-uneven",
        "train",
        ["--config", SMOKE, "--set", "train.processes=3", "--run-dir", "r-p3"],
        "train.batch_size: 8 does not split evenly across train.processes=3",
    ),
    (
        "bn-refresh-negative",
        "train",
        ["--config", SMOKE, "--set", "eval.bn_refresh=-1", "--run-dir", "r-bn"],
        "eval.bn_refresh: must be >= 0 (0 = off), got -1",
    ),
    (
        "quiet-with-train-dir",
        "train",
        ["--config", SMOKE, "--set", "train.quiet_images=100", "--train-dir", "set"],
        "train.quiet_images: draws the package's scheme without its noise; train.train_dir makes its own images",
    ),
    (
        "focus-with-train-dir",
        "train",
        ["--config", SMOKE, "--set", "train.focus_symbols='0'", "--set", "train.focus_weight=3", "--train-dir", "set"],
        "train.focus_symbols: shapes the rendered stream's labels",
    ),
    (
        "read-with-missing",
        "evaluate",
        ["--checkpoint", "lost_weights.pt", "--data", "set", "--no-progress"],
        "lost_weights.pt: says read_with='ema' but holds no such weights",
    ),
    ("average-one", "average", [CKPT, "--out", "avg.pt"], "average: name at least two checkpoints"),
    ("average-missing", "average", [CKPT, "gone.pt", "--out", "avg.pt"], "gone.pt: checkpoint not found"),
    (
        "average-other-model",
        "average",
        [CKPT, "other_model.pt", "--out", "avg.pt"],
        "other_model.pt: model.rnn_hidden=",
    ),
    ("widen-nothing", "widen", [CKPT, "wide.pt"], "widen: say how wide with --set"),
    ("widen-other-key", "widen", [CKPT, "wide.pt", "--set", "model.rnn=lstm"], "--set model.rnn: widen changes only"),
    ("widen-shrink", "widen", [CKPT, "wide.pt", "--set", "model.rnn_hidden=8"], "model.rnn_hidden: cannot shrink 32"),
    (
        "widen-stages",
        "widen",
        [CKPT, "wide.pt", "--set", "model.cnn_channels=[8,16,32]"],
        "model.cnn_channels: widening keeps the number of stages (2)",
    ),
    ("widen-missing", "widen", ["gone.pt", "wide.pt", "--set", "model.rnn_hidden=64"], "gone.pt: checkpoint not found"),
]


@pytest.mark.parametrize("command, args, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(ws, capsys, monkeypatch, command, args, message):
    monkeypatch.chdir(ws)
    with pytest.raises(SystemExit) as exc:
        run(MAINS[command], args)
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert err.startswith("error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_case_count():
    assert len(CASES) >= 30


@pytest.mark.parametrize(
    "name, message",
    [
        ("text.png", "text.png: not a readable image"),
        ("empty.png", "empty.png: empty file"),
        ("nothere.png", "nothere.png: image file not found"),
        ("adir", "adir: is a directory"),
        ("huge.png", "huge.png: image too large"),
    ],
)
def test_a_bad_image_gets_its_own_error_line_and_the_others_are_read(ws, capsys, monkeypatch, name, message):
    monkeypatch.chdir(ws)
    with pytest.raises(SystemExit) as exc:
        run(predict_main, ["--checkpoint", CKPT, "rgba.png", name, "palette.png"])
    out, err = capsys.readouterr()
    assert exc.value.code == 1, err
    lines = out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["rgba.png", name, "palette.png"]
    assert lines[1] == f"{name}\terror: {message}" or lines[1].startswith(f"{name}\terror: {message}")
    assert len(lines[0].split("\t")) == len(lines[2].split("\t")) == 3
    assert "Traceback" not in err


@pytest.mark.parametrize("name", ["rgba.png", "palette.png", "sixteen.png"])
def test_awkward_but_valid_images_are_read(ws, capsys, monkeypatch, name):
    monkeypatch.chdir(ws)
    with pytest.raises(SystemExit) as exc:
        run(predict_main, ["--checkpoint", CKPT, name])
    assert exc.value.code == 0
    path, _text, conf = capsys.readouterr().out.strip().split("\t")
    assert path == name and 0.0 <= float(conf) <= 1.0


def test_debug_shows_the_traceback(ws, monkeypatch):
    from captcha_stream.errors import CaptchaStreamError

    monkeypatch.chdir(ws)
    with pytest.raises(CaptchaStreamError):
        run(evaluate_main, ["--checkpoint", "gone.pt", "--debug"])


def test_cuda_index_beyond_the_devices_present(monkeypatch):
    # A machine with one GPU, asked for the fourth: a config error, not a failure inside torch.
    from captcha_stream.device import pick_device
    from captcha_stream.errors import CaptchaStreamError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(CaptchaStreamError, match=r"'cuda:3' asked for, but there is no CUDA device 3 \(1 available\)"):
        pick_device("cuda:3")
    assert pick_device("cuda:0") == torch.device("cuda", 0)
    assert pick_device("cuda") == torch.device("cuda")
