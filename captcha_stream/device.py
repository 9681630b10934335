"""Which device a run or a reading uses, and how many cores render for it."""

from __future__ import annotations

import contextlib
import functools
import os
import time

import torch

from .config import check_device_name
from .errors import CaptchaStreamError


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def pick_device(name: str, where: str = "train.device") -> torch.device:
    """The torch device `name` asks for; a name that is not a device, or one this machine lacks, is
    one line naming `where` it came from (a config key or a command's --device)."""
    check_device_name(name, where)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CaptchaStreamError(f"{where}: {name!r} asked for, but no CUDA device is available")
    if name.startswith("mps") and not _mps_available():
        raise CaptchaStreamError(f"{where}: {name!r} asked for, but MPS is not available")
    device = torch.device(name)
    if device.type == "cuda" and device.index is not None:
        count = torch.cuda.device_count()
        if device.index >= count:
            # Otherwise the first tensor moved there fails deep inside torch.
            raise CaptchaStreamError(
                f"{where}: {name!r} asked for, but there is no CUDA device {device.index} ({count} available)"
            )
    return device


def default_workers() -> int:
    # Leave a core for the training process itself.
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def cpu_has_native_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic in hardware (AVX-512-bf16 or AMX).

    oneDNN also runs bf16 on plain AVX-512 by emulation, which is slower than float32, so
    torch's own `_is_mkldnn_bf16_supported` is not the question to ask.
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


# bf16 autocast only where bf16 matrix products measure at least this much faster than float32's:
# a margin, so that the choice does not flip with machine noise.
BF16_MIN_SPEEDUP = 1.2


@functools.lru_cache(maxsize=1)
def cpu_bf16_speedup() -> float:
    """How many times faster this CPU multiplies bf16 matrices than float32 ones (about 0.1 s).

    The flags alone do not say: with AVX-512-bf16 an AMD EPYC multiplied bf16 about 2.6x faster
    than float32, while an Intel Xeon with AVX-512-bf16 but no AMX took longer in bf16 (0.5-0.7x)
    than in its own AVX-512 float32, and trained 1.3-1.5x faster in float32 (docs/ablations.md).
    """
    best: dict[torch.dtype, float] = {}
    # Interleaved rounds, best of each: a busy moment on a shared machine slows one round, not the choice.
    for _ in range(3):
        for dtype in (torch.float32, torch.bfloat16):
            a = torch.ones(384, 384, dtype=dtype)
            a @ a  # the first product sets oneDNN up
            start = time.perf_counter()
            for _ in range(4):
                a @ a
            best[dtype] = min(best.get(dtype, float("inf")), time.perf_counter() - start)
    return best[torch.float32] / max(best[torch.bfloat16], 1e-9)


def precision(device: torch.device, amp: bool) -> tuple[str, str]:
    """The arithmetic `autocast_for` gives this device: ("bf16" or "float32", why), for the run's log."""
    if not amp:
        return "float32", "train.amp is false"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "bf16 autocast on a GPU that supports it"
        return "float32", "this GPU has no bf16"
    if device.type == "cpu":
        if not cpu_has_native_bf16():
            # Emulated bf16 measured ~11x slower than float32 on a 2-core AVX2 machine.
            return "float32", "no native bf16 on this CPU: neither AVX-512-bf16 nor AMX, and emulated bf16 is slower"
        speedup = cpu_bf16_speedup()
        if speedup >= BF16_MIN_SPEEDUP:
            return (
                "bf16",
                f"bf16 autocast: this CPU has native bf16, measured {speedup:.1f}x float32 in matrix products",
            )
        return "float32", (
            f"this CPU has native bf16, but it measured {speedup:.1f}x float32 in matrix products "
            f"(bf16 autocast needs {BF16_MIN_SPEEDUP}x): float32 is faster here"
        )
    return "float32", f"no bf16 autocast on {device.type}"


def threads_hint(device: torch.device, precision: str, world_size: int, threads: int, batch_size: int) -> str | None:
    """A line for the log where one-thread processes would use the CPU better than threads, else None."""
    # In float32 the CPU recipes' operations are too small to split well: on a 2-core AVX2 CPU a
    # second thread sped the training step up by under 10%, a second process doubled it (docs/scaling.md).
    if device.type != "cpu" or precision != "float32" or world_size > 1 or threads < 2:
        return None
    # The suggestion must pass config validation: the most processes, up to one per thread, that
    # split the batch evenly.
    processes = max(n for n in range(1, threads + 1) if batch_size % n == 0)
    if processes < 2:
        return None
    return (
        f"hint: in float32 on a CPU, {processes} one-thread processes train faster than one process of {threads} "
        f"threads: add --set train.processes={processes} (the same recipe, its batch split between them; "
        "docs/scaling.md)"
    )


def autocast_for(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast where the hardware does bf16 natively and faster (a CUDA GPU that supports it,
    a CPU with AVX-512-bf16/AMX whose bf16 measures faster); otherwise a context that changes
    nothing. bf16 keeps float32's range, so no loss scaler is needed."""
    # One decision, in `precision`: what the log says is what the run does.
    if precision(device, amp)[0] == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
