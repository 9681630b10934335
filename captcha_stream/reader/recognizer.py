"""Recognizer: read captchas with a trained model, from a checkpoint alone."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, Union

import numpy as np
import torch
from PIL import Image

from ..config import Config, check_tta
from ..data.images import load_image, preprocess_array
from ..errors import CaptchaStreamError
from ..model.codec import Codec
from .build import model_from_checkpoint
from .tta import read

ImageLike = Union[Image.Image, str, os.PathLike, np.ndarray, bytes, BinaryIO]
# An image whose width/height differs from the model's by more than this share is warned about.
ASPECT_TOLERANCE = 0.25


class Prediction(NamedTuple):
    text: str
    confidence: float
    # Why this item could not be read (then text is "" and confidence 0.0); None when it was.
    error: str | None = None


def to_image(item: ImageLike) -> Image.Image:
    """An image from a path, PIL image, numpy array, encoded bytes or a binary file object."""
    if isinstance(item, Image.Image):
        return item
    if isinstance(item, (str, os.PathLike)):
        return load_image(Path(item))
    if isinstance(item, (bytes, bytearray, memoryview)):
        return _decode(io.BytesIO(item), "image bytes")
    if hasattr(item, "read"):
        return _decode(item, getattr(item, "name", "image file object"))
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


def _decode(stream: BinaryIO, name: str) -> Image.Image:
    data = stream.read()
    if not data:
        raise CaptchaStreamError(f"{name}: empty")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise CaptchaStreamError(f"{name}: not a readable image ({exc.__class__.__name__})") from None


def item_name(item: ImageLike, index: int) -> str:
    return str(item) if isinstance(item, (str, os.PathLike)) else f"image {index}"


class Recognizer:
    """Reads captchas: `Recognizer.from_checkpoint(path).predict([img, ...])`.

    backend="torch" runs the PyTorch model of a checkpoint (.pt); backend="onnx" runs an
    exported model (.onnx) on ONNX Runtime. Both share the preprocessing and decoding.
    """

    def __init__(self, model: Any, cfg: Config, device: str | torch.device = "cpu", backend: str = "torch") -> None:
        from ..device import pick_device

        self.backend = backend
        self.device = device if isinstance(device, torch.device) else pick_device(str(device), "device")
        self.model = model.to(self.device).eval() if backend == "torch" else model
        self.cfg = cfg
        self.codec = Codec(cfg.data.charset)
        self._warned: set[tuple[int, int]] = set()

    @classmethod
    def from_pretrained(cls, name: str = "captcha62", device: str | torch.device = "cpu") -> Recognizer:
        """A reader that ships with the package: captcha62, captcha62-160x60 or classic36."""
        from .pretrained import pretrained_path

        return cls.from_checkpoint(pretrained_path(name), device)

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
        errors: str = "keep",
    ) -> list[Prediction]:
        """Text and confidence for each image (path, PIL image, array, encoded bytes or a binary file
        object; any mode or size), or one such image alone.

        `tta` offsets (pixels, e.g. [2, 4]) also read each image moved that far left and right
        (`captcha_stream.reader.tta`); None takes the checkpoint config's `eval.tta`. An image that
        cannot be read gets `Prediction("", 0.0, error)` and the rest are read (`errors="keep"`), or
        raises CaptchaStreamError (`errors="raise"`).
        """
        if errors not in ("keep", "raise"):
            raise CaptchaStreamError(f"errors: must be 'keep' or 'raise', got {errors!r}")
        tta = self.cfg.eval.tta if tta is None else tta
        check_tta(tta, self.cfg.data, "tta")
        lengths = self.cfg.beam_lengths()
        single = isinstance(images, (Image.Image, np.ndarray, str, os.PathLike, bytes, bytearray)) or hasattr(
            images, "read"
        )
        items: Sequence[ImageLike] = [images] if single else list(images)  # type: ignore[list-item]
        out: list[Prediction] = []
        for start in range(0, len(items), batch_size):
            arrays: list[np.ndarray] = []
            failed: dict[int, str] = {}
            for k, item in enumerate(items[start : start + batch_size], start):
                try:
                    image = to_image(item)
                    self._check_shape(image, item_name(item, k))
                    arrays.append(preprocess_array(image, self.cfg.data))
                except CaptchaStreamError as exc:
                    if errors == "raise":
                        raise
                    failed[k] = str(exc)
            readings = iter(
                read(self._read, torch.from_numpy(np.stack(arrays)), self.codec, beam, lengths, tta) if arrays else []
            )
            for k in range(start, min(start + batch_size, len(items))):
                out.append(Prediction("", 0.0, failed[k]) if k in failed else Prediction(*next(readings)))
        return out

    def _check_shape(self, image: Image.Image, name: str) -> None:
        """Warn (once per size) about an image this reader will read badly: its aspect ratio is far from
        the trained one, or it has the size another shipped reader was made for (which that warning names)."""
        from .pretrained import fitting

        size = (self.cfg.data.width, self.cfg.data.height)
        if image.size == size or image.size in self._warned:
            return
        hint = fitting(image.width, image.height)
        off = abs(image.width / image.height / (size[0] / size[1]) - 1) > ASPECT_TOLERANCE
        if not off and hint in (None, fitting(*size)):
            return
        self._warned.add(image.size)
        print(
            f"warning: {name} is {image.width}x{image.height}, the reader was trained on {size[0]}x{size[1]}; "
            "it reads such images badly" + (f" (the shipped reader {hint} fits them)" if hint else ""),
            file=sys.stderr,
        )

    def predict_one(self, image: ImageLike, beam: int = 0) -> Prediction:
        """One image's reading; an image that cannot be read raises CaptchaStreamError."""
        return self.predict([image], beam=beam, errors="raise")[0]
