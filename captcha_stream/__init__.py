"""captcha-stream: train CNN + BiLSTM + CTC readers of text captchas on an endless rendered stream."""

from .errors import CaptchaStreamError

__all__ = ["CaptchaStreamError"]
__version__ = "0.1.0"
