"""An exponential moving average of a model's weights: the copy that is evaluated and shipped.

Late in a run the raw weights jitter around a minimum with every noisy batch; their
running average sits nearer its centre. Float parameters and buffers (BatchNorm's
running statistics included) are averaged; integer buffers (BatchNorm's batch counter)
are copied.
"""

from __future__ import annotations

import copy
from typing import Any

import torch


class WeightAverage:
    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        # Short memory at first: an average that still remembers the random start is useless
        # for the first thousands of steps of a run with decay 0.999.
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        d = self.current_decay()
        self.updates += 1
        live = model.state_dict()
        for name, avg in self.model.state_dict().items():
            value = live[name].detach()
            if avg.is_floating_point():
                avg.lerp_(value.to(avg.dtype), 1.0 - d)
            else:
                avg.copy_(value)

    def restore(self, weights: dict[str, Any], updates: int) -> None:
        """Continue an average saved as its weights and its number of updates."""
        self.model.load_state_dict(weights)
        self.updates = int(updates)
