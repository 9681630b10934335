"""`train.processes`: one training step split across several CPU processes, the cores shared out.

In float32 a CPU recipe's operations are too small to share well between threads (on a 2-core AVX2
CPU a second thread added under 10% to the training step, a second process doubled it), so the
command launches N ranks of itself, each rendering and training on train.batch_size / N captchas,
and DistributedDataParallel averages their gradients. The step is the same step: the global batch
stays train.batch_size and the learning rate is not rescaled, so a recipe reads the same with any
number of processes, and its checkpoints resume with any other. Under a torchrun of one's own,
train.batch_size is each process's batch as before; train.processes is then 1 (or the world size).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import Config, TrainConfig
from ..errors import CaptchaStreamError

# Set on the ranks this module launches, so they do not launch again.
LAUNCHED = "CAPTCHA_STREAM_PROCESS"


def splits_step(train: TrainConfig, world_size: int) -> bool:
    """True where the ranks share one step's batch (train.processes), false where each rank brings
    a batch of its own (torchrun's processes, or one process)."""
    if train.processes <= 1:
        return False
    if world_size != train.processes:
        raise CaptchaStreamError(
            f"train.processes={train.processes}, but {world_size} processes were started; set "
            "train.processes=1 to have each torchrun process take train.batch_size, or leave the launching to it"
        )
    return True


def rank_batch(train: TrainConfig, world_size: int) -> int:
    """The captchas each rank renders and trains on per step."""
    return train.batch_size // world_size if splits_step(train, world_size) else train.batch_size


def global_batch(train: TrainConfig, world_size: int) -> int:
    """The captchas one optimizer step learns from, over every rank."""
    return rank_batch(train, world_size) * world_size


def launch_here(cfg: Config) -> bool:
    """Whether this command must start train.processes ranks rather than train itself."""
    return cfg.train.processes > 1 and LAUNCHED not in os.environ and "WORLD_SIZE" not in os.environ


def plan_processes(cfg: Config) -> tuple[Config, bool]:
    """Whether this command launches train.processes ranks, and the config it trains with if not.

    Only a CPU step is split: on a GPU the ranks would split what one device takes whole, so the
    same recipe runs in one process (said on stderr). The config is a copy; the caller's is kept.
    """
    from ..device import pick_device

    if not launch_here(cfg):
        return cfg, False
    device = pick_device(cfg.train.device)
    if device.type == "cpu":
        return cfg, True
    print(
        f"train.processes={cfg.train.processes}: one process on {device.type} (it splits CPU steps)",
        file=sys.stderr,
    )
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, processes=1)), False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_environment(rank: int, processes: int, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            LAUNCHED: "1",
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(processes),
            "LOCAL_WORLD_SIZE": str(processes),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    # The cores shared out (one thread each on 2 cores and 2 processes) unless the caller chose.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    env.setdefault("OMP_NUM_THREADS", str(max(1, cores // processes)))
    # `python -m captcha_stream` must find this package from wherever the command was started.
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    return env


def launch(cfg: Config, argv: Sequence[str]) -> int:
    """Run `python -m captcha_stream train ARGV` as train.processes ranks and wait for them; returns
    the exit status the command should end with (rank 0's, or the first failing rank's)."""
    processes = cfg.train.processes
    port = _free_port()
    command = [sys.executable, "-m", "captcha_stream", "train", *argv]
    with contextlib.ExitStack() as files:
        logs = [files.enter_context(tempfile.TemporaryFile(mode="w+")) for _ in range(1, processes)]
        ranks: list[subprocess.Popen[Any]] = []
        # The ranks share this process group: a terminal's Ctrl-C reaches each of them once, and each
        # stops at its next step as a single process does. A SIGTERM sent to this process alone
        # (`kill PID`) is passed on. Ranks other than 0 only speak when they fail.
        for rank in range(processes):
            err = logs[rank - 1] if rank else None
            env = rank_environment(rank, processes, port)
            ranks.append(subprocess.Popen(command, env=env, stdout=err, stderr=err))
        # Set after the ranks start, which would otherwise inherit an ignored SIGINT.
        forwarded = signal.signal(signal.SIGTERM, lambda *_: _signal_all(ranks, signal.SIGTERM))
        interrupted = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            codes = wait(ranks)
        finally:
            signal.signal(signal.SIGTERM, forwarded)
            signal.signal(signal.SIGINT, interrupted)
        return report(codes, logs)


def _signal_all(ranks: list[subprocess.Popen[Any]], sig: int) -> None:
    for r in ranks:
        if r.poll() is None:
            r.send_signal(sig)


def wait(ranks: list[subprocess.Popen[Any]], grace: float = 60.0) -> list[int]:
    """Every rank's exit status. A rank that fails leaves the others waiting in a collective:
    they are stopped (SIGTERM, then SIGKILL after `grace` seconds) instead of hanging."""
    failed_at: float | None = None
    while True:
        polled = [r.poll() for r in ranks]  # every rank polled: a failure behind a running rank counts
        codes = [code for code in polled if code is not None]
        if len(codes) == len(ranks):
            return codes
        if failed_at is None and any(codes):
            failed_at = time.monotonic()
            _signal_all(ranks, signal.SIGTERM)
        if failed_at is not None and time.monotonic() - failed_at > grace:
            _signal_all(ranks, signal.SIGKILL)
        time.sleep(0.1)


def report(codes: list[int], logs: list[Any]) -> int:
    """The command's exit status; a failure of a rank other than 0 is printed, its log's tail."""
    if codes[0] > 0:
        return codes[0]  # rank 0 said why itself
    for rank, (code, log) in enumerate(zip(codes[1:], logs), start=1):
        if code > 0:
            log.seek(0)
            lines = log.read().strip().splitlines()
            print(f"rank {rank} of {len(codes)} failed (exit status {code}):", file=sys.stderr)
            print("\n".join(lines[-20:]), file=sys.stderr)
            return code
    # Killed by a signal (a negative status): the shell's 128 + signal number.
    return next((128 - code for code in codes if code < 0), 0)
