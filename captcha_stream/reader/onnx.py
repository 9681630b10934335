"""ONNX export of a trained reader, and a runner for it on ONNX Runtime.

The exported graph takes the same uint8 images (N, C, H, W) as the PyTorch model (the
scaling to floats is inside the graph) and returns log-probabilities (T, N, classes).
The charset and the preprocessing settings travel with the model twice: as ONNX metadata
(`captcha_stream.config`, the full config as JSON) and as a JSON sidecar `MODEL.onnx.json`,
so the file alone is enough to read captchas.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import replacing
from ..config import Config, config_from_dict
from ..errors import CaptchaStreamError

META_KEY = "captcha_stream.config"


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise CaptchaStreamError(
            f'{module} is not installed; install the ONNX extra: pip install -e ".[onnx]"'
        ) from None


def export_onnx(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str], opset: int = 17) -> Path:
    """Export `checkpoint` to `out` with a dynamic batch axis; returns the path written."""
    import torch

    from . import stages
    from .build import model_from_checkpoint

    onnx = _require("onnx")
    # torch's exporter knows opsets 7 to its own newest; out of range it fails deep inside.
    newest = getattr(getattr(torch.onnx, "_constants", None), "ONNX_MAX_OPSET", 20)
    if not 7 <= opset <= newest:
        raise CaptchaStreamError(f"--opset: must be 7..{newest}, got {opset}")
    model, cfg, state = model_from_checkpoint(checkpoint)
    refused = stages.not_for_onnx(state)
    if refused:
        raise CaptchaStreamError(
            f"{checkpoint}: has a {refused[0]} stage, which ONNX cannot carry; "
            f"export without it: python -m captcha_stream slim CK READER.pt --without {refused[0]}"
        )
    out = Path(out)
    dummy = torch.zeros(1, cfg.data.channels, cfg.data.height, cfg.data.width, dtype=torch.uint8)
    with replacing(out) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notes about RNN batch sizes
            torch.onnx.export(
                model,
                (dummy,),
                str(tmp),
                input_names=["images"],
                output_names=["log_probs"],
                dynamic_axes={"images": {0: "batch"}, "log_probs": {1: "batch"}},
                opset_version=opset,
                dynamo=False,
            )
        proto = onnx.load(str(tmp))
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_KEY, json.dumps(cfg.to_dict())
        onnx.save(proto, str(tmp))
    with replacing(out.with_name(out.name + ".json")) as tmp:
        tmp.write_text(json.dumps({"config": cfg.to_dict(), "input": "images", "output": "log_probs"}, indent=2))
    return out


class OnnxModel:
    """An exported reader on ONNX Runtime: uint8 (N, C, H, W) -> log-probabilities (T, N, classes)."""

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None) -> None:
        ort = _require("onnxruntime")
        path = Path(path)
        if not path.is_file():
            raise CaptchaStreamError(f"{path}: ONNX model not found")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise CaptchaStreamError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0][:100]})") from None
        self.cfg: Config = self._config(path)
        outputs = [o.name for o in self.session.get_outputs()]
        inputs = [i.name for i in self.session.get_inputs()]
        if outputs[:1] != ["log_probs"] or inputs[:1] != ["images"]:
            raise CaptchaStreamError(
                f"{path}: expects input 'images' and output 'log_probs' (captcha-stream export-onnx), "
                f"has {inputs} and {outputs}"
            )
        classes = self.session.get_outputs()[0].shape[-1]
        want = len(self.cfg.data.charset) + 1  # the charset and the CTC blank
        if isinstance(classes, int) and classes != want:
            # Otherwise every reading is decoded with the wrong symbols, silently.
            raise CaptchaStreamError(
                f"{path}: the graph has {classes} classes, its config's charset makes {want} (with the blank)"
            )

    def _config(self, path: Path) -> Config:
        """The config inside the model's metadata, else in its JSON sidecar; any fault is one line."""
        meta = self.session.get_modelmeta().custom_metadata_map
        where, text, sidecar_form = f"{path} metadata {META_KEY}", meta.get(META_KEY), False
        if text is None:
            sidecar = path.with_name(path.name + ".json")
            if not sidecar.is_file():
                raise CaptchaStreamError(f"{path}: no captcha_stream config in the model and no {sidecar.name}")
            where, text, sidecar_form = str(sidecar), sidecar.read_text(encoding="utf-8", errors="replace"), True
        try:
            data = json.loads(text)
        except ValueError:
            raise CaptchaStreamError(f"{where}: not valid JSON") from None
        if not isinstance(data, dict):
            raise CaptchaStreamError(f"{where}: expected a JSON object")
        config = data.get("config") if sidecar_form else data  # the sidecar wraps it: {"config": ..., "input": ...}
        if not isinstance(config, dict) or "data" not in config:
            raise CaptchaStreamError(f"{where}: holds no captcha_stream config (no 'config' with a 'data' section)")
        try:
            return config_from_dict(config)
        except CaptchaStreamError as exc:
            raise CaptchaStreamError(f"{where}: {exc}") from None

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(["log_probs"], {"images": np.ascontiguousarray(images, dtype=np.uint8)})[0]
