"""captcha-stream: train CNN + BiLSTM + CTC readers of text captchas on an endless rendered stream."""

from typing import Any

from .errors import CaptchaStreamError

__all__ = ["CaptchaStreamError", "Recognizer"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # `captcha_stream.Recognizer` without importing torch for every `import captcha_stream`.
    if name == "Recognizer":
        from .reader.recognizer import Recognizer

        return Recognizer
    raise AttributeError(f"module 'captcha_stream' has no attribute {name!r}")
