"""Inputs and faults that used to end in a traceback, a hang or a silent accept (each failed before its fix)."""

import json
import pickle

import pytest
import torch

from captcha_stream.checkpoint import load_checkpoint, save_checkpoint
from captcha_stream.errors import CaptchaStreamError
from captcha_stream.train.loop import train
from tests.test_train import SMOKE, logged, quiet_train, run_script, smoke


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.weight_decay=.nan", "optim.weight_decay: must be a finite number, got nan"),
        ("optim.grad_clip=.nan", "optim.grad_clip: must be a finite number, got nan"),
        ("optim.lr=.inf", "optim.lr: must be a finite number, got inf"),
        ("train.seed=18446744073709551616", "train.seed: 18446744073709551616 is out of range (64-bit integers only)"),
        ("model.rnn_hidden=100000000", "model: rnn_hidden at most 16384 and cnn_channels at most 4096 each"),
        ("data.width=100000", "data: width and height at most 4096, got 100000x32"),
    ],
)
def test_config_values_that_cannot_work_are_one_line(tmp_path, override, message):
    r = run_script("train.py", "--config", str(SMOKE), "--set", override, cwd=tmp_path)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_a_config_that_is_not_a_small_file_is_refused(tmp_path):
    r = run_script("train.py", "--config", "/dev/zero", cwd=tmp_path, timeout=60)
    assert r.returncode == 2 and "/dev/zero: is not a regular file" in r.stderr
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * 1_100_000 + "\n")
    r = run_script("train.py", "--config", str(big), cwd=tmp_path, timeout=60)
    assert r.returncode == 2 and "big.yaml: over 1000 kB, not a config file" in r.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--batch-size", "-1"], "--batch-size: must be at least 1, got -1"),
        (["--samples", "-5"], "--samples: must be >= 0"),
    ],
)
def test_evaluate_counts_are_checked(tmp_path, args, message):
    r = run_script("evaluate.py", "--checkpoint", "captcha62", "--data", "nowhere", *args, cwd=tmp_path)
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_export_with_absurd_workers_is_capped(tmp_path):
    r = run_script(
        "export_fixed_set.py", "--config", str(SMOKE), "--n", "4", "--out", "s", "--workers", "100000", cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "s").glob("*.png"))) == 4


def test_a_torn_last_log_line_is_dropped_on_resume(tmp_path):
    cfg = smoke(tmp_path, **{"train.steps": 10, "train.checkpoint_every": 10})
    quiet_train(cfg)
    log = tmp_path / "run" / "metrics.jsonl"
    log.write_text(log.read_text() + '{"step": 11, "loss": 0.')  # power loss mid-write
    warnings = []
    cfg.train.steps = 12
    train(cfg, resume=True, progress=False, log=warnings.append)
    assert any("its last line is cut short; left out" in w for w in warnings)
    steps = [r["step"] for r in logged(tmp_path / "run")]
    assert steps == sorted(steps) and max(steps) == 12
    from captcha_stream.eval.plot import draw_curve

    log.write_text(log.read_text() + '{"ste')
    assert draw_curve(tmp_path / "run") is not None  # the plot reads past a torn tail too


def test_a_second_run_in_the_same_folder_is_refused_naming_the_holder(tmp_path):
    import os

    from captcha_stream.train.run import RunLock

    (tmp_path / "run").mkdir()
    with RunLock(tmp_path / "run"):
        with pytest.raises(
            CaptchaStreamError, match=f"another training run \\(PID {os.getpid()}\\) is using this folder"
        ):
            quiet_train(smoke(tmp_path, **{"train.steps": 2}))
    quiet_train(smoke(tmp_path, **{"train.steps": 2}))  # released: the folder is free again


def test_resuming_from_the_previous_checkpoint_never_copies_the_damaged_one_over_it(tmp_path):
    cfg = smoke(tmp_path, **{"train.steps": 4, "train.checkpoint_every": 2})
    quiet_train(cfg)
    run = tmp_path / "run"
    last = run / "last.pt"
    last.write_bytes(last.read_bytes()[:100])  # truncated: a full disk
    cfg.train.steps = 8
    warnings = []
    __import__("captcha_stream.train.loop", fromlist=["train"]).train(
        cfg, resume=True, progress=False, log=warnings.append
    )
    assert any("the damaged file is now last.pt.damaged" in w for w in warnings)
    assert (run / "last.pt.damaged").exists()
    assert load_checkpoint(run / "last.prev.pt")["step"] >= 2  # a good checkpoint, not the damaged bytes
    assert load_checkpoint(last)["step"] == 8


class Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > pwned.txt",))


@pytest.mark.parametrize("how", ["pickle", "torch.save"])
def test_a_checkpoint_with_code_in_it_is_refused_in_one_plain_line(tmp_path, capsys, monkeypatch, how):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    if how == "pickle":
        with open(path, "wb") as fh:
            pickle.dump({"model": Exploit(), "config": {}}, fh)
    else:
        torch.save({"model": Exploit(), "config": {}}, path)
    with pytest.raises(CaptchaStreamError) as exc:
        load_checkpoint(path)
    assert str(exc.value) == f"{path}: refused: holds code or objects that are not plain data"
    assert not (tmp_path / "pwned.txt").exists()
    assert capsys.readouterr().err == ""
    (tmp_path / "garbage.pt").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CaptchaStreamError, match="garbage.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "garbage.pt")
    save_checkpoint({"model": {"w": torch.zeros(1)}, "config": {}}, tmp_path / "ok.pt")
    assert json.dumps(load_checkpoint(tmp_path / "ok.pt")["config"]) == "{}"


@pytest.mark.parametrize("name", ["bogus", "cpu:x", "cuda:-1", "mps:0", "cuda", "gpu"])
@pytest.mark.parametrize("command", ["evaluate", "predict", "train"])
def test_device_names_are_one_line_in_every_command(tmp_path, command, name):
    if torch.cuda.is_available() and name == "cuda":
        pytest.skip("this machine has a GPU")
    script, args = {
        "evaluate": ("evaluate.py", ["--checkpoint", "captcha62", "--data", "nowhere"]),
        "predict": ("-m captcha_stream predict", ["--checkpoint", "captcha62", "x.png"]),
        "train": ("train.py", ["--config", str(SMOKE)]),
    }[command]
    if command == "predict":
        import subprocess
        import sys

        r = subprocess.run(
            [sys.executable, "-m", "captcha_stream", "predict", *args, "--device", name],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
    else:
        r = run_script(script, *args, "--device", name, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and repr(name) in err, err


def test_broken_pipe_ends_quietly(tmp_path):
    import subprocess
    import sys

    from captcha_stream.config import DataConfig
    from captcha_stream.data.render import Renderer

    for i in range(3):
        Renderer(DataConfig(), seed=i).sample()[0].save(tmp_path / f"{i}.png")
    cmd = f"{sys.executable} -m captcha_stream predict --checkpoint captcha62 0.png 1.png 2.png | head -c 1"
    r = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, cwd=tmp_path)
    assert "BrokenPipeError" not in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_a_fifo_is_not_read_as_an_image(tmp_path):
    import os

    from captcha_stream.data.images import load_image

    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(CaptchaStreamError, match="pipe.png: not a regular file"):
        load_image(tmp_path / "pipe.png")


def test_torchrun_variables_that_make_no_sense_are_one_line(tmp_path, monkeypatch):
    from captcha_stream.train import distributed

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(CaptchaStreamError, match="WORLD_SIZE=2 but RANK is not set"):
        distributed.setup("cpu")
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(CaptchaStreamError, match="WORLD_SIZE='two': expected an integer"):
        distributed.setup("cpu")


def test_export_never_replaces_the_folder_it_stands_in(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    r = run_script("export_fixed_set.py", "--config", str(SMOKE), "--n", "2", "--out", ".", "--force", cwd=tmp_path)
    assert r.returncode == 2 and "is the current folder or holds it" in r.stderr
    assert (tmp_path / "keep.txt").read_text() == "mine"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    from captcha_stream.reader.onnx import export_onnx
    from captcha_stream.reader.pretrained import pretrained_path

    out = tmp_path_factory.mktemp("onnx") / "m.onnx"
    return export_onnx(pretrained_path("captcha62-160x60"), out)


def _copy_without_metadata(src, dst, **change):
    import onnx

    proto = onnx.load(str(src))
    del proto.metadata_props[:]
    for old, new in change.items():
        for node in proto.graph.node:
            node.output[:] = [new if o == old else o for o in node.output]
        for out in proto.graph.output:
            if out.name == old:
                out.name = new
    onnx.save(proto, str(dst))
    return dst


@pytest.mark.parametrize(
    "sidecar, message",
    [
        ("{not json", "m2.onnx.json: not valid JSON"),
        ('{"input": "images"}', "m2.onnx.json: holds no captcha_stream config"),
        ('{"config": {"data": {"charset": 5}}}', "m2.onnx.json: data.charset: expected a string"),
    ],
)
def test_broken_onnx_sidecars_are_one_line(exported, tmp_path, sidecar, message):
    from captcha_stream.reader.onnx import OnnxModel

    bare = _copy_without_metadata(exported, tmp_path / "m2.onnx")
    (tmp_path / "m2.onnx.json").write_text(sidecar)
    with pytest.raises(CaptchaStreamError, match=message):
        OnnxModel(bare)


def test_onnx_outputs_and_classes_must_be_what_the_reader_expects(exported, tmp_path):
    import json as _json

    from captcha_stream.reader.onnx import OnnxModel

    sidecar = _json.loads((exported.parent / "m.onnx.json").read_text())
    renamed = _copy_without_metadata(exported, tmp_path / "r.onnx", log_probs="scores")
    (tmp_path / "r.onnx.json").write_text(_json.dumps(sidecar))
    with pytest.raises(CaptchaStreamError, match="expects input 'images' and output 'log_probs'"):
        OnnxModel(renamed)
    other = _copy_without_metadata(exported, tmp_path / "c.onnx")
    sidecar["config"]["data"]["charset"] = "0123456789"
    sidecar["config"]["train"]["focus_symbols"] = ""
    (tmp_path / "c.onnx.json").write_text(_json.dumps(sidecar))
    with pytest.raises(CaptchaStreamError, match="the graph has 63 classes, its config's charset makes 11"):
        OnnxModel(other)


def test_an_opset_torch_cannot_export_is_one_line(tmp_path):
    pytest.importorskip("onnx")
    from captcha_stream.reader.onnx import export_onnx

    with pytest.raises(CaptchaStreamError, match="--opset: must be 7..[0-9]+, got 999"):
        export_onnx("captcha62", tmp_path / "x.onnx", opset=999)


def _folder_with(tmp_path, csv_bytes):
    from PIL import Image

    folder = tmp_path / "set"
    folder.mkdir()
    for name in ("000000.png", "000001.png"):
        Image.new("L", (64, 32), 255).save(folder / name)
    (folder / "labels.csv").write_bytes(csv_bytes)
    return folder


@pytest.mark.parametrize(
    "content, message",
    [
        (b"filename,label\n../secret.png,12\n", "labels.csv:2: ../secret.png is outside the image folder"),
        (b"filename,label\n/etc/passwd,12\n", "labels.csv:2: /etc/passwd is outside the image folder"),
        (b"filename,label\n000000.png,12\n./000000.png,34\n", "labels.csv:3: duplicate filename 000000.png"),
        (b"filename,label\n000000.png," + b"1" * 200_000 + b"\n", "labels.csv: not a labels CSV"),
    ],
)
def test_labels_csv_faults_are_one_line(tmp_path, content, message):
    from captcha_stream.config import load_config
    from captcha_stream.data.folder import FolderDataset

    folder = _folder_with(tmp_path, content)
    with pytest.raises(CaptchaStreamError, match=message):
        FolderDataset(folder, load_config(SMOKE).data)


def test_a_labels_csv_from_excel_reads(tmp_path):
    from captcha_stream.config import load_config
    from captcha_stream.data.folder import FolderDataset

    folder = _folder_with(tmp_path, "\ufefffilename,label\n000000.png,12\n000001.png,345\n".encode())
    assert [label for _, label in FolderDataset(folder, load_config(SMOKE).data).rows] == ["12", "345"]


@pytest.mark.parametrize(
    "command, args, message",
    [
        ("evaluate", ["--json", "adir"], "--json: adir is a directory, expected a file name"),
        ("evaluate", ["--view", "--view-out", "missing/v.html"], "--view-out: folder missing does not exist"),
        ("evaluate", ["--sheet", "adir"], "--sheet: adir is a directory"),
        ("export-onnx", ["--out", "adir"], "--out: adir is a directory"),
        ("export-onnx", ["--out", "missing/m.onnx"], "--out: folder missing does not exist"),
        ("plot", ["run", "--out", "missing/c.png"], "--out: folder missing does not exist"),
    ],
)
def test_output_paths_are_checked_before_the_work(tmp_path, command, args, message):
    import subprocess
    import sys

    (tmp_path / "adir").mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n')
    extra = ["--checkpoint", "captcha62", "--data", "nowhere"] if command == "evaluate" else []
    extra = ["--checkpoint", "captcha62"] if command == "export-onnx" else extra
    r = subprocess.run(
        [sys.executable, "-m", "captcha_stream", command, *extra, *args], capture_output=True, text=True, cwd=tmp_path
    )
    assert r.returncode == 2 and r.stderr.strip() == f"error: {message}" or message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_a_full_disk_ends_the_run_in_one_line_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    import errno

    import captcha_stream.checkpoint as checkpoint
    import captcha_stream.train.loop as loop

    cfg = smoke(tmp_path, **{"train.steps": 4, "train.checkpoint_every": 2, "train.eval_every": 2})
    real_save = torch.save
    saves = []

    def filling(obj, fh, *a, **kw):
        saves.append(1)
        if len(saves) > 2:  # best.pt and last.pt at step 2 fit; the disk is full after that
            raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0")
        return real_save(obj, fh, *a, **kw)

    def no_curve(run_dir):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", filling)
    monkeypatch.setattr(loop, "draw_curve", no_curve)
    warnings = []
    with pytest.raises(CaptchaStreamError, match="cannot write checkpoint \\(disk full\\?\\): .*unexpected pos"):
        train(cfg, progress=False, log=warnings.append)
    assert any("curve.png: not drawn (No space left on device)" in w for w in warnings)
    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 2  # the last good one


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_font_that_cannot_load_is_one_line_whatever_the_workers(tmp_path, workers):
    (tmp_path / "bad.ttf").write_text("not a font")
    (tmp_path / "c.yaml").write_text(f"data:\n  fonts: [{tmp_path / 'bad.ttf'}]\n")
    r = run_script(
        "export_fixed_set.py", "--config", "c.yaml", "--n", "64", "--out", "s", "--workers", workers, cwd=tmp_path
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == f"error: {tmp_path / 'bad.ttf'}: cannot load font: unknown file format"
    assert not (tmp_path / "s").exists()


def test_killing_an_export_leaves_no_rendering_processes_behind(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve().parents[1] / "export_fixed_set.py"), "--n", "20000",
         "--out", "big", "--workers", "2"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def children():
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == proc.pid:
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                pass
        return found

    for _ in range(200):  # wait for the pool
        workers = children()
        if len(workers) >= 2:
            break
        time.sleep(0.1)
    assert workers, "the export started no worker processes"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    alive = workers
    while alive and time.time() < deadline:
        time.sleep(0.2)
        alive = [pid for pid in workers if Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)]
    assert not alive, f"workers {alive} outlived the killed export"


def _state(pid):
    from pathlib import Path

    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_logged_losses_after_a_sigterm_resume_match_the_uninterrupted_run(tmp_path, monkeypatch):
    import os
    import signal

    import captcha_stream.train.loop as loop
    from captcha_stream.train.run import TrainingStopped
    from tests.test_train import losses

    # Log windows of 7 steps, and a SIGTERM at step 10: inside a window, whose losses the resumed
    # run must carry on for its record at step 14 to be the uninterrupted run's.
    overrides = {"train.steps": 30, "train.log_every": 7, "train.eval_every": 1000, "train.checkpoint_every": 1000}
    real_step = loop.take_step

    def stop_at_ten(t, batch):
        taken = real_step(t, batch)
        if t.counters["step"] == 10:
            os.kill(os.getpid(), signal.SIGTERM)
        return taken

    monkeypatch.setattr(loop, "take_step", stop_at_ten)
    a = smoke(tmp_path, **{**overrides, "train.run_dir": str(tmp_path / "a")})
    with pytest.raises(TrainingStopped, match="stopped by SIGTERM at step 10"):
        train(a, progress=False, log=lambda s: None)
    monkeypatch.setattr(loop, "take_step", real_step)
    train(a, resume=True, progress=False, log=lambda s: None)
    b = smoke(tmp_path, **{**overrides, "train.run_dir": str(tmp_path / "b")})
    train(b, progress=False, log=lambda s: None)
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    assert sorted(losses(tmp_path / "a")) == [7, 14, 21, 28, 30]


def test_an_ascii_terminal_does_not_end_a_command_on_a_non_ascii_name(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONIOENCODING": "ascii", "LC_ALL": "C"}
    r = subprocess.run(
        [sys.executable, "-m", "captcha_stream", "predict", "--checkpoint", "captcha62", "caf\u00e9.png"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert r.returncode == 1 and "UnicodeEncodeError" not in r.stderr, r.stderr
    assert r.stdout.startswith("caf\\xe9.png\terror: ")
