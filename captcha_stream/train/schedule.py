"""The optimizer and its learning-rate schedule."""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..config import Config
from .muon import MuonAdamW
from .processes import global_batch


def lr_factor(step: int, cfg: Config, total: int | None = None) -> float:
    """Linear warm-up, then a cosine (or linear) decay to min_lr_ratio at the last step (`total`, else train.steps)."""
    warm, floor = cfg.optim.warmup_steps, cfg.optim.min_lr_ratio
    total = cfg.train.steps if total is None else total
    if warm and step < warm:
        return (step + 1) / warm
    progress = min(1.0, (step - warm) / max(1, total - warm))
    if cfg.optim.decay == "linear":
        return floor + (1 - floor) * (1 - progress)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def lr_scale(cfg: Config, world_size: int) -> float:
    """The configured lr is for train.batch_size; torchrun's ranks each bring a batch, a larger
    global batch. Ranks that split one batch (train.processes) keep it, and the lr with it."""
    grown = global_batch(cfg.train, world_size) / cfg.train.batch_size
    if cfg.optim.lr_scaling == "sqrt":
        return math.sqrt(grown)
    return grown if cfg.optim.lr_scaling == "linear" else 1.0


def make_optimizer(model: torch.nn.Module, cfg: Config, scale: float = 1.0) -> torch.optim.Optimizer:
    # No weight decay on norms and biases: decaying them only fights BatchNorm.
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    wd = cfg.optim.weight_decay
    if cfg.optim.name == "muon":
        groups = _muon_groups(model, wd) + [{"params": no_decay, "weight_decay": 0.0}]
        return MuonAdamW(groups, lr=cfg.optim.lr * scale)
    decay = [p for p in model.parameters() if p.ndim > 1]
    groups = [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.optim.lr * scale)


def _muon_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """The weight matrices by how Muon takes them: the first (the input layer) and the last (the
    head) with AdamW, recurrent layers' gate matrices one gate at a time, the rest whole."""
    matrices = [p for p in model.parameters() if p.ndim > 1]
    gates = {}
    for module in model.modules():
        if isinstance(module, (torch.nn.GRU, torch.nn.LSTM)):
            for name, p in module.named_parameters():
                if name.startswith("weight_"):
                    gates[id(p)] = 3 if isinstance(module, torch.nn.GRU) else 4
    ends = matrices[:1] + matrices[-1:] if len(matrices) > 1 else matrices
    hidden = [p for p in matrices if all(p is not e for e in ends)]
    groups: list[dict] = [{"params": ends, "weight_decay": weight_decay}]
    for blocks in sorted({gates.get(id(p), 1) for p in hidden}):
        params = [p for p in hidden if gates.get(id(p), 1) == blocks]
        groups.append({"params": params, "weight_decay": weight_decay, "muon": True, "blocks": blocks})
    return groups


def make_scheduler(
    optimizer: torch.optim.Optimizer, cfg: Config, total: Callable[[], int] | None = None
) -> torch.optim.lr_scheduler.LambdaLR:
    """The run's schedule; `total` gives the last step when it is fitted as the run goes (a time budget)."""
    if total is None:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg, total()))


def warmup_cosine(step: int, lr: float, steps: int, warmup: int) -> float:
    """The learning rate at `step` (from 0) of an add-on's run: linear warm-up, then a cosine to zero at `steps`."""
    if step < warmup:
        return lr * (step + 1) / warmup
    return 0.5 * lr * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))
