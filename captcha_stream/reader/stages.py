"""The stages of a reader, declared once: a checkpoint holds a CRNN, then the stages that wrap it.

Every stage maps uint8 images (N, C, H, W) to CTC log-probabilities (T, N, classes), as the CRNN
does, by wrapping the reader inside it, so decoding, evaluation, `Recognizer` and ONNX export never
need to know which stages a reader has. A checkpoint keeps each stage's saved form under the
stage's name, beside the CRNN's weights ("model"); which stages it has is which of these names it
holds, and they wrap in the order of `STAGES`, so no checkpoint can list one thing and hold another.

Adding a stage: a module in this package with `build(reader, saved, cfg, path) -> nn.Module`, and
one line in `STAGES`. Order in `STAGES` is the order of wrapping (the denoiser wraps everything
else, so a second look crops from the denoised image).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import CaptchaStreamError

if TYPE_CHECKING:  # the registry itself needs no torch: the CLI reads it before importing torch
    from torch import nn

    from ..config import Config


@dataclass(frozen=True)
class Stage:
    name: str
    # "module:function": a module of this package, or any importable dotted module path; imported
    # only when a reader first needs it.
    builder: str
    onnx: bool  # whether ONNX export can carry it
    about: str


STAGES = (
    Stage("second_look", "second_look:build", False, "a glyph classifier's second look at two confused symbols"),
    Stage("denoiser", "denoised:build", True, "a CNN that takes the noise dots and curve out before reading"),
)
BY_NAME = {stage.name: stage for stage in STAGES}


def stage(name: str, where: str = "stage") -> Stage:
    """The stage called `name`; an unknown name is one line listing the known ones."""
    if name not in BY_NAME:
        raise CaptchaStreamError(f"{where}: no stage {name!r} (stages: {', '.join(BY_NAME)})")
    return BY_NAME[name]


def names_in(state: dict[str, Any]) -> list[str]:
    """The stages a checkpoint's reader has around its CRNN, inside first."""
    return [s.name for s in STAGES if s.name in state]


def add(state: dict[str, Any], name: str, saved: dict[str, Any]) -> dict[str, Any]:
    """`state` (a checkpoint's contents) with stage `name` in it (replacing one it had)."""
    stage(name)
    return {**state, name: saved}


def without(state: dict[str, Any], names: Iterable[str], path: str = "checkpoint") -> dict[str, Any]:
    """`state` with the named stages left out (names it does not have are an error)."""
    names = list(names)
    present = names_in(state)
    for name in names:
        stage(name, "--without")
        if name not in present:
            has = ", ".join(present) or "none"
            raise CaptchaStreamError(f"{path}: has no {name} stage to leave out (it has: {has})")
    return {k: v for k, v in state.items() if k not in names}


def build(reader: nn.Module, state: dict[str, Any], cfg: Config, path: str) -> nn.Module:
    """`reader` (the checkpoint's CRNN) wrapped in each stage the checkpoint holds."""
    for name in names_in(state):
        module, function = BY_NAME[name].builder.split(":")
        where = module if "." in module else f"{__package__}.{module}"
        builder = getattr(importlib.import_module(where), function)
        reader = builder(reader, state[name], cfg, path).eval()
    return reader


def not_for_onnx(state: dict[str, Any]) -> list[str]:
    """The stages of a checkpoint that ONNX export cannot carry."""
    return [name for name in names_in(state) if not BY_NAME[name].onnx]
