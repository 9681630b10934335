"""Reading image files, and the one image preprocessing step, shared by training, evaluation, prediction and export.

Images become uint8 tensors of shape (channels, height, width) at the config's size;
scaling to floats happens inside the model (`CRNN.normalize`), so whatever feeds the
model (a DataLoader worker, `Recognizer`, an ONNX runtime) sends the same bytes and
cannot disagree about normalisation. uint8 also keeps worker-to-trainer traffic small.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..config import DataConfig
from ..errors import CaptchaStreamError


def load_image(path: Path) -> Image.Image:
    """Open and fully decode an image; every failure becomes one line naming the file."""
    if path.exists() and not path.is_file() and not path.is_dir():
        # A FIFO or a device would block or never end.
        raise CaptchaStreamError(f"{path}: not a regular file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                return img
    except FileNotFoundError:
        raise CaptchaStreamError(f"{path}: image file not found") from None
    except IsADirectoryError:
        raise CaptchaStreamError(f"{path}: is a directory, expected an image file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise CaptchaStreamError(
            f"{path}: image too large (over Pillow's decompression-bomb limit of {Image.MAX_IMAGE_PIXELS} pixels)"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        reason = "empty file" if path.is_file() and path.stat().st_size == 0 else "not a readable image"
        raise CaptchaStreamError(f"{path}: {reason} ({exc.__class__.__name__})") from None


def to_model_mode(image: Image.Image, channels: int) -> Image.Image:
    """Convert any Pillow mode (RGBA, P, I;16, ...) to L or RGB without surprises."""
    mode = "L" if channels == 1 else "RGB"
    if image.mode == mode:
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels become white, like the captcha background, not black.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    elif image.mode.startswith("I;16") or image.mode in ("I", "F"):
        # 16-bit and float images: rescale to 8 bits instead of clipping at 255.
        arr = np.asarray(image, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        image = Image.fromarray(scaled.round().astype(np.uint8), mode="L")
    return image.convert(mode)


def preprocess(image: Image.Image, data: DataConfig) -> torch.Tensor:
    """A PIL image of any mode and size -> uint8 tensor (C, H, W) at the config's size."""
    return torch.from_numpy(preprocess_array(image, data))


def preprocess_array(image: Image.Image, data: DataConfig) -> np.ndarray:
    """The same as `preprocess`, as a numpy array (for ONNX Runtime, which needs no torch)."""
    image = to_model_mode(image, data.channels)
    if image.size != (data.width, data.height):
        # Plain resize to the training size: captchas of a known style come at a known
        # aspect ratio, and letterboxing would put padding the model never saw in training.
        image = image.resize((data.width, data.height), Image.Resampling.BILINEAR)
    arr = np.array(image, dtype=np.uint8)  # a copy: torch wants writable memory
    if arr.ndim == 2:
        return arr[None, :, :]
    return np.ascontiguousarray(arr.transpose(2, 0, 1))
