"""Recognizer: read captchas with a trained model, from a checkpoint alone."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Union

import numpy as np
import torch
from PIL import Image

from ..config import Config, check_tta
from ..data.images import load_image, preprocess_array
from ..errors import CaptchaStreamError
from ..model.codec import Codec
from .build import model_from_checkpoint
from .tta import read

ImageLike = Union[Image.Image, str, os.PathLike, np.ndarray]


class Prediction(NamedTuple):
    text: str
    confidence: float


def to_image(item: ImageLike) -> Image.Image:
    if isinstance(item, Image.Image):
        return item
    if isinstance(item, (str, os.PathLike)):
        return load_image(Path(item))
    if isinstance(item, np.ndarray):
        arr = item
        if arr.dtype != np.uint8:
            # Floats in [0, 1] are the other common convention.
            arr = (arr * 255.0 if arr.max() <= 1.0 else arr).clip(0, 255).astype(np.uint8)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.ndim not in (2, 3):
            raise CaptchaStreamError(f"image array of shape {item.shape}: expected (H, W) or (H, W, C)")
        return Image.fromarray(arr)
    raise CaptchaStreamError(f"cannot read an image from a {type(item).__name__}")


class Recognizer:
    """Reads captchas: `Recognizer.from_checkpoint(path).predict([img, ...])`.

    backend="torch" runs the PyTorch model of a checkpoint (.pt); backend="onnx" runs an
    exported model (.onnx) on ONNX Runtime. Both share the preprocessing and decoding.
    """

    def __init__(self, model: Any, cfg: Config, device: str | torch.device = "cpu", backend: str = "torch") -> None:
        self.backend = backend
        self.device = torch.device(device)
        self.model = model.to(self.device).eval() if backend == "torch" else model
        self.cfg = cfg
        self.codec = Codec(cfg.data.charset)

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike[str], device: str | torch.device = "cpu", backend: str | None = None
    ) -> Recognizer:
        """Load a checkpoint (.pt) or an exported model (.onnx); the backend follows the file by default."""
        backend = backend or ("onnx" if str(path).endswith(".onnx") else "torch")
        if backend == "onnx":
            from .onnx import OnnxModel

            onnx_model = OnnxModel(path)
            return cls(onnx_model, onnx_model.cfg, "cpu", backend="onnx")
        if backend != "torch":
            raise CaptchaStreamError(f"backend {backend!r}: must be 'torch' or 'onnx'")
        model, cfg, _ = model_from_checkpoint(path)
        return cls(model, cfg, device)

    def log_probs(self, images: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Raw model output (T, N, classes) for preprocessed uint8 images (N, C, H, W)."""
        if self.backend == "onnx":
            return self.model(np.asarray(images))
        with torch.no_grad():
            return self.model(torch.as_tensor(images).to(self.device)).cpu()

    def _read(self, images: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(self.log_probs(images))

    def predict(
        self,
        images: Iterable[ImageLike],
        beam: int = 0,
        batch_size: int = 64,
        tta: Sequence[int] | None = None,
    ) -> list[Prediction]:
        """Text and confidence for each image (PIL image, path or array; any mode or size).

        `tta` offsets (pixels, e.g. [2, 4]) also read each image moved that far left and right
        (`captcha_stream.tta`); None takes the checkpoint config's `eval.tta`.
        """
        tta = self.cfg.eval.tta if tta is None else tta
        check_tta(tta, self.cfg.data, "tta")
        lengths = self.cfg.beam_lengths()
        items: Sequence[ImageLike] = (
            list(images) if not isinstance(images, (Image.Image, np.ndarray, str)) else [images]
        )
        out: list[Prediction] = []
        for start in range(0, len(items), batch_size):
            batch = np.stack([preprocess_array(to_image(x), self.cfg.data) for x in items[start : start + batch_size]])
            read_batch = read(self._read, torch.from_numpy(batch), self.codec, beam, lengths, tta)
            out.extend(Prediction(t, c) for t, c in read_batch)
        return out

    def predict_one(self, image: ImageLike, beam: int = 0) -> Prediction:
        return self.predict([image], beam=beam)[0]
