"""Bring your own generator: `data.generator: "module:function"` or `"path/to/file.py:function"`.

The contract (docs/schemes.md):

    def render(text: str, rng: random.Random, data: DataConfig) -> PIL.Image.Image

draws every random number from `rng` (nothing from `random`, `secrets`, numpy's global state or
the clock) and returns an image of data.width x data.height in mode L, RGB or RGBA. The renderer
seeds `rng` per captcha, exactly as for the captcha package, so streams are seeded per worker and
rank, and exported sets are byte-identical for a seed. Everything a generator gets wrong is one
line naming `data.generator`.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from ..config import DataConfig
from ..errors import CaptchaStreamError

Generator = Callable[[str, random.Random, DataConfig], Image.Image]
KEY = "data.generator"


@functools.lru_cache(maxsize=8)
def load(spec: str) -> Generator:
    """The callable `spec` names; imported once per process (DataLoader workers import their own)."""
    where, _, name = spec.rpartition(":")
    if not where or not name:
        raise CaptchaStreamError(f"{KEY}: expected 'module:function' or 'path/to/file.py:function', got {spec!r}")
    try:
        module = _import_file(Path(where)) if where.endswith(".py") else importlib.import_module(where)
    except CaptchaStreamError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of user code is reported as one line
        raise CaptchaStreamError(f"{KEY}: cannot import {where!r}: {type(exc).__name__}: {exc}") from None
    func = getattr(module, name, None)
    if not callable(func):
        raise CaptchaStreamError(f"{KEY}: {where!r} has no function {name!r}")
    return func


def _import_file(path: Path) -> Any:
    if not path.is_file():
        raise CaptchaStreamError(f"{KEY}: {path}: file not found")
    module_name = f"captcha_stream_generator_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise CaptchaStreamError(f"{KEY}: {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def render(spec: str, text: str, rng: random.Random, data: DataConfig) -> Image.Image:
    """`text` drawn by the generator, checked against the contract; RGB out, like the package's."""
    func = load(spec)
    try:
        image = func(text, rng, data)
    except CaptchaStreamError:
        raise
    except Exception as exc:  # noqa: BLE001 - user code
        raise CaptchaStreamError(f"{KEY}: {spec} raised {type(exc).__name__} on {text!r}: {exc}") from None
    if not isinstance(image, Image.Image):
        raise CaptchaStreamError(f"{KEY}: {spec} returned {type(image).__name__}, expected a PIL image")
    if image.size != (data.width, data.height):
        raise CaptchaStreamError(
            f"{KEY}: {spec} returned a {image.size[0]}x{image.size[1]} image, expected {data.width}x{data.height} "
            "(data.width x data.height)"
        )
    if image.mode not in ("L", "RGB", "RGBA"):
        raise CaptchaStreamError(f"{KEY}: {spec} returned mode {image.mode!r}, expected L, RGB or RGBA")
    return image if image.mode == "RGB" else image.convert("RGB")


def check_deterministic(spec: str, data: DataConfig, seed: int) -> None:
    """Two renderings from one seed must be the same bytes, or a frozen set would not be reproducible."""
    from .render import Renderer

    first, label = Renderer(data).sample_at(seed, 0)
    second, again = Renderer(data).sample_at(seed, 0)
    if label != again or first.tobytes() != second.tobytes():
        raise CaptchaStreamError(
            f"{KEY}: {spec} drew two different images from one seed: draw every random number from the rng "
            "it is given (not random, secrets, numpy or the clock)"
        )
