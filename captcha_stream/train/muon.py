"""Muon for the hidden weight matrices, AdamW for the rest, as one optimizer.

Muon (momentum, then the update's matrix replaced by its nearest semi-orthogonal matrix, found by a
few Newton-Schulz iterations) changes every direction of a layer's weights by the same amount, where
Adam's update is dominated by a few. A convolution's weight is read as a matrix of its output
channels by (input channels x kernel); a recurrent layer's stacked gate matrices are orthogonalised
gate by gate. The stem (the input layer), the head and every vector (biases, norms) stay with AdamW.
Updates are scaled to AdamW's typical size (0.2 x sqrt(larger side)), so one learning rate serves both.
"""

from __future__ import annotations

from typing import Any

import torch

# The quintic iteration's coefficients: they push every singular value into about [0.7, 1.2]
# within five steps rather than converging exactly, which is all the update needs.
_NS = (3.4445, -4.7750, 2.0315)


def orthogonalize(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """The matrix nearest `g` with all singular values about 1 (2-D, any shape)."""
    a, b, c = _NS
    x = g / (g.norm() + 1e-7)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    for _ in range(steps):
        s = x @ x.T
        x = a * x + (b * s + c * s @ s) @ x
    return x.T if tall else x


class MuonAdamW(torch.optim.Optimizer):
    """Groups with `muon: True` take Muon's step (`blocks` gate matrices stacked along dim 0);
    the others AdamW's. Every group has lr and weight_decay (decoupled, as AdamW)."""

    def __init__(
        self,
        groups: list[dict[str, Any]],
        lr: float,
        momentum: float = 0.95,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        defaults = {"lr": lr, "weight_decay": 0.0, "muon": False, "blocks": 1, "momentum": momentum}
        defaults.update({"betas": betas, "eps": eps})
        super().__init__(groups, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # noqa: D102 - torch's signature
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                p.mul_(1 - group["lr"] * group["weight_decay"])
                if group["muon"]:
                    self._muon(p, group)
                else:
                    self._adamw(p, group)

    def _muon(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p)
        buf = state["momentum_buffer"]
        buf.lerp_(p.grad, 1 - group["momentum"])
        update = p.grad.lerp(buf, group["momentum"])  # Nesterov
        blocks = update.reshape(group["blocks"], -1, update[0].numel())
        out = torch.stack([orthogonalize(m) for m in blocks])
        rows, cols = blocks.shape[1:]
        p.add_(out.reshape_as(p), alpha=-group["lr"] * 0.2 * max(rows, cols) ** 0.5)

    def _adamw(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        state = self.state[p]
        if "step" not in state:
            state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
        beta1, beta2 = group["betas"]
        state["step"] += 1
        state["exp_avg"].lerp_(p.grad, 1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
        denom = (state["exp_avg_sq"] / (1 - beta2 ** state["step"])).sqrt_().add_(group["eps"])
        p.addcdiv_(state["exp_avg"], denom, value=-group["lr"] / (1 - beta1 ** state["step"]))
