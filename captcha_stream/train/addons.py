"""Training of the reader stages that are networks of their own: the denoiser and the second look.

Each learns from an endless seeded stream rendered in one DataLoader worker (data/pairs.py: the
same captcha with and without its noise; data/glyphs.py: one glyph cut out of whole captchas),
with a warm-up + cosine schedule, and is measured on a held-out set drawn from another seed every
`addon.eval_every` steps. The weights and that point of the curve are saved (atomically) at each
measurement, so an interrupted run leaves its last good file. `captcha_stream attach` puts the
result into a reader's checkpoint.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

from ..atomic import replacing
from ..config import Config
from ..data.glyphs import GlyphStream, glyph_set
from ..data.pairs import PairStream, held_out_pairs
from ..data.seeding import derive_seed
from ..errors import CaptchaStreamError
from ..model.denoiser import Denoiser
from ..model.glyph_classifier import glyph_classifier, normalize
from .schedule import warmup_cosine

KINDS = ("denoiser", "second_look")
HELD_OUT = 10**6  # the held-out set's seed is derive_seed(addon.seed, HELD_OUT): never a training stream's


@dataclass
class Job:
    """What differs between the add-ons: the network, its data, its loss, its measure and its file."""

    model: nn.Module
    stream: IterableDataset
    held_out: tuple[torch.Tensor, torch.Tensor]
    loss: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
    measure: Callable[[nn.Module, torch.Tensor, torch.Tensor], dict[str, Any]]
    saved: Callable[[nn.Module], dict[str, Any]]


@torch.no_grad()
def denoise(model: Denoiser, images: torch.Tensor, batch: int = 200) -> torch.Tensor:
    """uint8 (N, 1, H, W) -> denoised uint8, in evaluation mode; leaves the mode as it was."""
    was_training = model.training
    model.eval()
    out = torch.cat([model.clean(images[i : i + batch]) for i in range(0, len(images), batch)])
    model.train(was_training)
    return out


def denoiser_errors(model: nn.Module, noisy: torch.Tensor, clean: torch.Tensor) -> dict[str, float]:
    """Root-mean-square error (0-255) against the clean images, before and after denoising."""
    out = denoise(model, noisy).float()
    return {
        "rms_noisy": float((noisy.float() - clean.float()).pow(2).mean().sqrt()),
        "rms_denoised": float((out - clean.float()).pow(2).mean().sqrt()),
    }


@torch.no_grad()
def classify(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Class indices for uint8 glyph crops, in evaluation mode; leaves the mode as it was."""
    was_training = model.training
    model.eval()
    preds = torch.cat([model(normalize(images[i : i + 1000])).argmax(1) for i in range(0, len(images), 1000)])
    model.train(was_training)
    return preds


def glyph_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, symbols: str) -> dict[str, Any]:
    preds = classify(model, images)
    wrong = {f"{symbols[a]}->{symbols[1 - a]}": int(((labels == a) & (preds != a)).sum()) for a in (0, 1)}
    return {"accuracy": float((preds == labels).float().mean()), "wrong": wrong}


def denoiser_job(cfg: Config) -> Job:
    if cfg.data.channels != 1:
        raise CaptchaStreamError(f"denoiser: works on grey images (data.channels=1), got {cfg.data.channels}")
    a = cfg.addon
    model = Denoiser(a.width)
    if a.init_from:
        from ..reader.denoised import load_denoiser

        model = load_denoiser(a.init_from)
        if model.width != a.width:
            raise CaptchaStreamError(f"addon.init_from: {a.init_from} holds width {model.width}, addon.width={a.width}")
    return Job(
        model=model,
        stream=PairStream(cfg.data, a.seed, a.batch_size, a.crop),
        held_out=held_out_pairs(cfg.data, derive_seed(a.seed, HELD_OUT), a.val_size),
        loss=lambda m, noisy, clean: nn.functional.mse_loss(m(noisy), clean.float() / 255),
        measure=denoiser_errors,
        saved=lambda m: {"model": m.state_dict(), "width": a.width},
    )


def second_look_job(cfg: Config) -> Job:
    a = cfg.addon
    for symbol in a.symbols:
        if symbol not in cfg.data.charset:
            raise CaptchaStreamError(f"addon.symbols: {symbol!r} is not in data.charset")
    model = glyph_classifier()
    if a.init_from:
        from ..reader.second_look import load_classifier

        model, _ = load_classifier(a.init_from)
    return Job(
        model=model,
        stream=GlyphStream(cfg.data, a.symbols, a.seed, a.batch_size, a.jitter),
        held_out=glyph_set(cfg.data, a.symbols, derive_seed(a.seed, HELD_OUT), a.val_size, a.jitter),
        loss=lambda m, images, labels: nn.functional.cross_entropy(m(normalize(images)), labels),
        measure=lambda m, images, labels: glyph_accuracy(m, images, labels, a.symbols),
        saved=lambda m: {"model": m.state_dict(), "symbols": a.symbols},
    )


def train_addon(kind: str, cfg: Config, out: str | Path, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Train add-on `kind` as `cfg.addon` says; write it to `out` at every measurement; return the curve."""
    if kind not in KINDS:
        raise CaptchaStreamError(f"train-addon: no add-on {kind!r} (add-ons: {', '.join(KINDS)})")
    out = Path(out)
    if not out.resolve().parent.is_dir():
        raise CaptchaStreamError(f"--out: folder {out.parent} does not exist")
    a = cfg.addon
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    job = denoiser_job(cfg) if kind == "denoiser" else second_look_job(cfg)
    model = job.model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.weight_decay)
    curve: list[dict[str, Any]] = []
    if a.init_from:
        # Where a continued run starts, on this run's held-out set.
        curve.append({"step": 0, **job.measure(model, *job.held_out), "init_from": a.init_from})
        log(json.dumps(curve[-1]))
    loader = DataLoader(job.stream, batch_size=None, num_workers=1, prefetch_factor=8)
    started = time.perf_counter()
    for step, (inputs, targets) in enumerate(loader, start=1):
        for group in optimizer.param_groups:
            group["lr"] = warmup_cosine(step - 1, a.lr, a.steps, a.warmup_steps)
        loss = job.loss(model, inputs, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % a.eval_every == 0 or step == a.steps:
            point = {"step": step, "train_loss": float(loss.detach()), **job.measure(model, *job.held_out)}
            point["minutes"] = round((time.perf_counter() - started) / 60, 2)
            curve.append(point)
            log(json.dumps(point))
            with replacing(out) as tmp:
                torch.save({"kind": kind, **job.saved(model), "point": point, "config": cfg.to_dict()}, tmp)
        if step >= a.steps:
            break
    return curve
