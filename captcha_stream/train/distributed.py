"""torchrun support: the process group from the environment, and the few collectives training needs.

A plain `python train.py` sees no torchrun variables and runs as rank 0 of 1: every helper
here is then a no-op, so single-process training pays nothing for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..errors import CaptchaStreamError


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: str) -> int:
    value = os.environ.get(name, default)
    try:
        return int(value)
    except ValueError:
        raise CaptchaStreamError(f"{name}={value!r}: expected an integer (torchrun sets it)") from None


def setup(device_type: str) -> DistInfo:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK...), if any."""
    world = _env_int("WORLD_SIZE", "1")
    if world <= 1:
        return DistInfo()
    if "RANK" not in os.environ:
        raise CaptchaStreamError(f"WORLD_SIZE={world} but RANK is not set: start several processes with torchrun")
    info = DistInfo(_env_int("RANK", "0"), world, _env_int("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        try:
            dist.init_process_group(backend=backend)
        except (RuntimeError, ValueError) as exc:
            raise CaptchaStreamError(f"cannot join the torchrun process group ({backend}): {exc}") from None
    return info


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def _all_reduce(info: DistInfo, values: list[float], device: torch.device, op: Any) -> list[float]:
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=op)
    return t.tolist()


def reduce_max(info: DistInfo, values: list[float], device: torch.device) -> list[float]:
    """Element-wise max over ranks (used so that all ranks agree to stop or skip a step)."""
    return _all_reduce(info, values, device, dist.ReduceOp.MAX)


def reduce_sum(info: DistInfo, values: list[float], device: torch.device) -> list[float]:
    return _all_reduce(info, values, device, dist.ReduceOp.SUM)


def gather(info: DistInfo, obj: Any) -> list[Any]:
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
