"""captcha-stream: train CNN + BiLSTM + CTC readers of text captchas on an endless rendered stream.

The names below are the public API and stay importable from here whatever module holds them:
`from captcha_stream import Recognizer, Renderer, load_config`. They load on first use, so
`import captcha_stream` (and every command's --help) does not import torch.
"""

from importlib import import_module
from typing import Any

from .errors import CaptchaStreamError

__version__ = "0.1.0"

_PUBLIC = {
    "Recognizer": "reader.recognizer",
    "Prediction": "reader.recognizer",
    "model_from_checkpoint": "reader.build",
    "export_onnx": "reader.onnx",
    "Renderer": "data.render",
    "CaptchaStream": "data.stream",
    "FolderDataset": "data.folder",
    "export_set": "data.frozen",
    "Config": "config",
    "DataConfig": "config",
    "load_config": "config",
    "train_addon": "train.addons",
    "CRNN": "model.crnn",
    "Codec": "model.codec",
}
__all__ = ["CaptchaStreamError", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(import_module(f".{_PUBLIC[name]}", __name__), name)
    raise AttributeError(f"module 'captcha_stream' has no attribute {name!r}")
