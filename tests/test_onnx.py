"""ONNX export: same outputs (1e-4) and the same strings as PyTorch, charset and config inside."""

import json

import numpy as np
import pytest
import torch

from captcha_stream.config import load_config
from captcha_stream.data.folder import FolderDataset
from captcha_stream.data.frozen import export_set
from captcha_stream.errors import CaptchaStreamError
from captcha_stream.reader.recognizer import Recognizer
from captcha_stream.train.loop import train

ort = pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed: pip install -e '.[onnx]'")
onnx = pytest.importorskip("onnx", reason="the [onnx] extra is not installed: pip install -e '.[onnx]'")

from captcha_stream.reader.onnx import META_KEY, OnnxModel, export_onnx  # noqa: E402
from tests.test_train import SMOKE  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("onnx")
    cfg = load_config(
        SMOKE,
        {
            "train.run_dir": str(tmp / "run"),
            "eval.test_dir": str(tmp / "test"),
            "eval.val_dir": str(tmp / "val"),
            "train.steps": 60,
            "model.rnn": "lstm",
            "model.bidirectional": True,
        },
    )
    train(cfg, progress=False, log=lambda s: None)
    export_set(tmp / "frozen", 40, cfg.data, seed=11, workers=1, progress=False, log=lambda s: None)
    return tmp, tmp / "run" / "last.pt", cfg


def test_onnx_matches_pytorch(trained):
    tmp, ckpt, cfg = trained
    out = export_onnx(ckpt, tmp / "model.onnx")
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta[META_KEY])["data"]["charset"] == cfg.data.charset
    assert json.loads((tmp / "model.onnx.json").read_text())["config"]["data"]["width"] == cfg.data.width

    torch_reader = Recognizer.from_checkpoint(ckpt)
    onnx_reader = Recognizer.from_checkpoint(out)
    assert onnx_reader.backend == "onnx"
    data = FolderDataset(tmp / "frozen", cfg.data)
    images = np.stack([data[i][0].numpy() for i in range(len(data))])
    a = torch_reader.log_probs(torch.from_numpy(images)).numpy()
    b = onnx_reader.log_probs(images)
    assert a.shape == b.shape and np.abs(a - b).max() < 1e-4
    # Dynamic batch: one image and forty give the same per-image results.
    assert np.abs(onnx_reader.log_probs(images[:1]) - b[:, :1]).max() < 1e-5
    paths = [data.path(i) for i in range(len(data))]
    pt = torch_reader.predict(paths)
    ox = onnx_reader.predict(paths)
    assert [p.text for p in pt] == [p.text for p in ox]
    assert np.allclose([p.confidence for p in pt], [p.confidence for p in ox], atol=1e-4)
    assert [p.text for p in onnx_reader.predict(paths, beam=4)] == [p.text for p in torch_reader.predict(paths, beam=4)]
    # Test-time shifts feed the ONNX model shifted numpy batches: the same readings as torch.
    pt, ox = torch_reader.predict(paths, tta=[2]), onnx_reader.predict(paths, tta=[2])
    assert [p.text for p in pt] == [p.text for p in ox]
    assert np.allclose([p.confidence for p in pt], [p.confidence for p in ox], atol=1e-4)


def test_onnx_without_metadata_uses_sidecar(trained):
    tmp, ckpt, _ = trained
    out = export_onnx(ckpt, tmp / "m2.onnx")
    proto = onnx.load(str(out))
    del proto.metadata_props[:]
    onnx.save(proto, str(out))
    assert OnnxModel(out).cfg.data.charset == "0123456789"
    (tmp / "m2.onnx.json").unlink()
    with pytest.raises(CaptchaStreamError, match="no captcha_stream config"):
        OnnxModel(out)


def test_bad_onnx_files(tmp_path):
    with pytest.raises(CaptchaStreamError, match="ONNX model not found"):
        OnnxModel(tmp_path / "none.onnx")
    (tmp_path / "junk.onnx").write_text("junk")
    with pytest.raises(CaptchaStreamError, match="junk.onnx: not a loadable ONNX model"):
        OnnxModel(tmp_path / "junk.onnx")
