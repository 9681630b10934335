"""The training loop: one step at a time, validated, logged and checkpointed. Read top to bottom.

Exact resume rests on one property of CaptchaStream: batch `b` is a pure function of
(seed, rank, b). A checkpoint records how many batches were consumed, and the resumed
stream starts there; model, optimizer, scheduler and torch RNG state (dropout) come from
the checkpoint, so an interrupted and resumed run logs the same losses as one that ran
straight through.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..checkpoint import inference_weights, load_checkpoint, load_for_resume, save_checkpoint
from ..config import Config
from ..data.folder import FolderDataset
from ..data.frozen import ensure_set
from ..data.render import Renderer
from ..data.seeding import derive_seed
from ..data.stream import CaptchaStream, CtcCollate, FolderStream, IndexedStream
from ..device import autocast_for, default_workers, pick_device, precision, threads_hint
from ..errors import CaptchaStreamError
from ..eval.evaluation import describe_shifts, headline, load_all, run_eval
from ..eval.plot import draw_curve
from ..model.codec import Codec, ctc_loss
from ..model.crnn import CRNN
from . import distributed
from .batchnorm import calibration_images, has_batchnorm, with_fresh_statistics
from .budget import Budget
from .ema import WeightAverage
from .hard_examples import hardest
from .processes import global_batch, rank_batch, splits_step
from .run import (
    RunLock,
    RunLog,
    StopRequest,
    TrainingStopped,
    check_compatible,
    checkpoint_state,
    load_initial_weights,
    prepare_run_dir,
    run_dir_for,
)
from .schedule import lr_scale, make_optimizer, make_scheduler

# derive_seed(train.seed, CALIBRATION_STREAM) seeds the images BatchNorm is re-measured on.
CALIBRATION_STREAM = 7


def build_model(cfg: Config) -> tuple[CRNN, Codec]:
    codec = Codec(cfg.data.charset)
    return CRNN(cfg.data, cfg.model, codec.num_classes), codec


def _worker_init(_: int) -> None:
    # Ctrl-C, `timeout` and `kill -- -PGID` signal the whole process group; the trainer decides
    # how to stop, so a worker dying first must not turn a clean stop into a DataLoader error.
    # A group of its own keeps such signals off the worker; it still ends with the trainer (the
    # loader's shutdown, which needs SIGTERM to work, or its watchdog if the trainer is killed).
    if hasattr(os, "setpgrp"):  # POSIX only
        os.setpgrp()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)


def make_loader(
    cfg: Config, codec: Codec, start_batch: int, workers: int, pin: bool, rank: int = 0, world_size: int = 1
) -> DataLoader:
    # With hard-example mining each step draws a pool of hard_pool batches from the stream.
    block = rank_batch(cfg.train, world_size) * cfg.train.hard_pool
    start = start_batch * block
    stream: IndexedStream
    if cfg.train.train_dir:
        folder = FolderDataset(cfg.train.train_dir, cfg.data, cfg.train.train_labels or None)
        stream = FolderStream(
            folder, seed=cfg.train.seed, start=start, block_size=block, rank=rank, augment=cfg.data.augment
        )
    else:
        # Checked here, in the trainer: a font a worker cannot load (or a generator that breaks its
        # contract) would end as a DataLoader traceback.
        checker = Renderer(cfg.data)
        if cfg.data.generator:
            checker.sample()
        stream = CaptchaStream(
            cfg.data,
            seed=cfg.train.seed,
            start=start,
            block_size=block,
            rank=rank,
            symbol_weights=cfg.symbol_weights(),
            quiet_images=cfg.train.quiet_images,
        )
    return DataLoader(
        stream,
        batch_size=block,
        num_workers=workers,
        collate_fn=CtcCollate(codec),
        pin_memory=pin,
        worker_init_fn=_worker_init if workers > 0 else None,
        prefetch_factor=4 if workers > 0 else None,
        # The DataLoader draws worker base seeds from this generator instead of the global
        # RNG, which must advance only with dropout for a resumed run to match.
        generator=torch.Generator().manual_seed(cfg.train.seed),
    )


def train(
    cfg: Config,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train (or resume) the run described by `cfg`; returns the final counters and metrics.

    Under torchrun every rank runs this; rank 0 alone evaluates, logs and saves.
    """
    log = log or _to_stderr
    cfg.eval.check_sets_apart()
    device = pick_device(cfg.train.device)
    dinfo = distributed.setup(device.type)
    try:
        splits_step(cfg.train, dinfo.world_size)  # a train.processes that is not the world size stops here
        return _train(cfg, resume, progress, log, device, dinfo)
    finally:
        distributed.cleanup(dinfo)


@dataclass
class Trainer:
    """What a run holds while it trains: built once by `start`, changed by every step."""

    cfg: Config
    log: Callable[[str], None]
    device: torch.device
    dinfo: distributed.DistInfo
    run_dir: Path
    model: CRNN
    codec: Codec
    optimizer: torch.optim.Optimizer
    scheduler: Any
    lr_scale: float
    counters: dict[str, Any]
    ema: WeightAverage | None = None
    net: torch.nn.Module | None = None  # the model, or its DistributedDataParallel wrapper
    runlog: RunLog | None = None
    val_images: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    val_labels: list[str] = field(default_factory=list)
    # Training-stream images BatchNorm's statistics are measured on before each validation (batchnorm.py).
    calibration: torch.Tensor | None = None
    evals: list[dict[str, float]] = field(default_factory=list)
    autocast: Any = field(default_factory=contextlib.nullcontext)
    precision: str = "float32"
    lock: RunLock | None = None
    # The logging window in progress; saved in checkpoints, so a run stopped between two log records
    # (SIGTERM, Ctrl-C) logs, once resumed, the same mean loss as a run that never stopped.
    window: Any = None
    # The run's clock: perf_counter() at its start, earlier segments of a resumed run included.
    clock: float = 0.0
    budget: Budget | None = None

    @property
    def main(self) -> bool:
        return self.dinfo.is_main

    def last_step(self) -> int:
        """Where the run ends: the fitted step count under a time budget, else train.steps."""
        return self.counters["planned_steps"] if self.budget is not None else self.cfg.train.steps

    @property
    def eval_args(self) -> dict[str, Any]:
        return {"batch_size": self.cfg.eval.batch_size, "beam": self.cfg.eval.beam, "lengths": self.cfg.beam_lengths()}

    def state(self) -> dict[str, Any]:
        counters = {**self.counters, "lr_scale": self.lr_scale}
        state = checkpoint_state(self.model, self.optimizer, self.scheduler, self.cfg, counters, self.ema)
        if self.window is not None:
            state["log_window"] = {"loss": self.window.loss, "steps": self.window.steps}
        return state


def _train(
    cfg: Config,
    resume: bool,
    progress: bool,
    log: Callable[[str], None],
    device: torch.device,
    dinfo: distributed.DistInfo,
) -> dict[str, Any]:
    t, ckpt = start(cfg, resume, log if dinfo.is_main else _silent, device, dinfo)
    try:
        return _run(t, ckpt, resume, progress)
    finally:
        if t.lock is not None:
            t.lock.__exit__()


def _run(t: Trainer, ckpt: dict[str, Any] | None, resume: bool, progress: bool) -> dict[str, Any]:
    cfg, dinfo = t.cfg, t.dinfo
    if t.main:
        t.val_images, t.val_labels = load_validation(cfg, t.log, progress)
    workers = cfg.train.num_workers
    if workers < 0:
        # Ranks that split a step render their own captchas between steps: no core to spare for a
        # worker, which measured no faster (docs/scaling.md).
        workers = 0 if splits_step(cfg.train, dinfo.world_size) else default_workers()
    pin = t.device.type == "cuda"
    loader = make_loader(cfg, t.codec, t.counters["batches"], workers, pin, dinfo.rank, dinfo.world_size)
    t.autocast = autocast_for(t.device, cfg.train.amp)
    t.precision, why = precision(t.device, cfg.train.amp)
    if t.main:
        # The same config trains ~3x slower on a CPU without native bf16: a log read later must say which it was.
        t.log(f"arithmetic: {t.precision} ({why})")
        hint = threads_hint(t.device, t.precision, dinfo.world_size, torch.get_num_threads(), cfg.train.batch_size)
        if hint is not None:
            t.log(hint)
    t.runlog = RunLog(t.run_dir / "metrics.jsonl", t.counters["step"] if resume else None, t.log) if t.main else None
    if ckpt is not None:
        # Restored last, just before the loop: anything above may draw from the global RNG.
        torch.set_rng_state(ckpt["rng_cpu"])
        if "rng_cuda" in ckpt and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["rng_cuda"])
    last = run_loop(t, loader, progress)
    test = (
        test_best(cfg, t.run_dir, t.device, t.eval_args, t.runlog, t.counters["step"], t.log, progress)
        if t.main
        else None
    )
    distributed.barrier(dinfo)
    return {
        **t.counters,
        "run_dir": str(t.run_dir),
        "main": t.main,
        "last": last,
        "final_eval": t.evals[-1] if t.evals else None,
        "test": test,
    }


def start(
    cfg: Config, resume: bool, log: Callable[[str], None], device: torch.device, dinfo: distributed.DistInfo
) -> tuple[Trainer, dict[str, Any] | None]:
    """The run's model, optimizer and schedule: fresh, from `train.init_from`, or resumed from last.pt."""
    if dinfo.enabled and device.type == "cuda":
        device = torch.device("cuda", dinfo.local_rank)
    run_dir = run_dir_for(cfg)
    lock = prepare_run_dir(run_dir, resume) if dinfo.is_main else None
    try:
        return _start(cfg, resume, log, device, dinfo, run_dir, lock)
    except BaseException:
        if lock is not None:
            lock.__exit__()
        raise


def _start(
    cfg: Config,
    resume: bool,
    log: Callable[[str], None],
    device: torch.device,
    dinfo: distributed.DistInfo,
    run_dir: Path,
    lock: RunLock | None,
) -> tuple[Trainer, dict[str, Any] | None]:
    distributed.barrier(dinfo)
    torch.manual_seed(cfg.train.seed)
    ckpt: dict[str, Any] | None = None
    if resume:
        ckpt = load_for_resume(run_dir / "last.pt", log=log, set_aside=True)
        check_compatible(ckpt, cfg, run_dir / "last.pt")
    model, codec = build_model(cfg)
    model.to(device)
    if cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)
    scale = lr_scale(cfg, dinfo.world_size)
    optimizer = make_optimizer(model, cfg, scale)
    counters: dict[str, Any] = {
        "step": 0,
        "batches": 0,
        "bad_steps": 0,
        "best_accuracy": -1.0,
        "elapsed": 0.0,
        "planned_steps": cfg.train.steps,
        "timed_evals": 0,
        # A time budget's measured rates, so a resumed run refits from its first step.
        "step_seconds": 0.0,
        "eval_seconds": 0.0,
    }
    t = Trainer(cfg, log, device, dinfo, run_dir, model, codec, optimizer, None, scale, counters)
    t.scheduler = make_scheduler(optimizer, cfg, total=t.last_step)
    t.lock = lock
    if cfg.train.minutes > 0:
        t.budget = Budget(
            cfg.train.minutes * 60,
            cfg.train.steps,
            cfg.train.eval_every,
            cfg.train.eval_minutes,
            rank_batch(cfg.train, dinfo.world_size),
            cfg.eval.val_size,
        )
    if ckpt is not None:
        restore(t, ckpt)
    elif cfg.train.init_from:
        load_initial_weights(model, cfg, log)
    # Set-up (a validation set exported on first use) counts against a time budget too.
    t.clock = time.perf_counter() - t.counters["elapsed"]
    if t.budget is not None and ckpt is not None:
        t.budget.carry_over(t.counters["step_seconds"], t.counters["eval_seconds"])
        t.counters["planned_steps"] = t.budget.fit(t.counters["step"], t.counters["elapsed"])
    t.ema = WeightAverage(model, cfg.train.ema_decay) if cfg.train.ema_decay > 0 else None
    if t.ema is not None and ckpt is not None:
        if "ema" in ckpt:
            t.ema.restore(ckpt["ema"], ckpt.get("ema_updates", 0))
        else:
            log(f"warning: {run_dir / 'last.pt'} has no weight average; starting one from the current weights")
    t.net = model
    if dinfo.enabled:
        ids = [device.index] if device.type == "cuda" else None
        t.net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    return t, ckpt


def restore(t: Trainer, ckpt: dict[str, Any]) -> None:
    """Model, optimizer, schedule and counters as last.pt saved them."""
    try:
        t.model.load_state_dict(ckpt["model"])
    except RuntimeError:
        raise CaptchaStreamError(
            f"{t.run_dir / 'last.pt'}: its model does not match the config (different image size or model?)"
        ) from None
    t.optimizer.load_state_dict(ckpt["optimizer"])
    t.scheduler.load_state_dict(ckpt["scheduler"])
    if t.lr_scale != ckpt.get("lr_scale", 1.0):
        # A run resumed on a different number of ranks keeps the schedule but rescales it.
        for group in t.optimizer.param_groups:
            group["initial_lr"] = t.cfg.optim.lr * t.lr_scale
        t.scheduler.base_lrs = [t.cfg.optim.lr * t.lr_scale for _ in t.optimizer.param_groups]
    # A checkpoint from before a counter existed keeps that counter's fresh value.
    t.counters.update({k: ckpt[k] for k in t.counters if k in ckpt})
    if "log_window" in ckpt:
        # The losses carry over; images and time count from here, so images/s stays a true rate.
        t.window = Window(loss=float(ckpt["log_window"]["loss"]), steps=int(ckpt["log_window"]["steps"]))
    t.log(f"resuming {t.run_dir} at step {t.counters['step']}")


def load_validation(cfg: Config, log: Callable[[str], None], progress: bool = True) -> tuple[torch.Tensor, list[str]]:
    """The frozen validation set (exported first if missing), decoded once for every evaluation."""
    val_dir = ensure_set(
        cfg.eval.val_dir,
        cfg.eval.val_size,
        cfg.data,
        cfg.eval.val_seed,
        log=log,
        kind="validation",
        key="eval.val_dir",
        forbidden_seed=cfg.eval.test_seed,
        progress=progress,
    )
    return load_all(FolderDataset(val_dir, cfg.data), cfg.eval.batch_size)


def stream_calibration(cfg: Config, codec: Codec, n: int) -> torch.Tensor:
    """`n` images of the config's training data under a seed of their own."""
    # Its own seed: images the run does not train on, all of the scheme (no quiet curriculum);
    # a forked RNG: making them draws nothing a resumed run would draw differently.
    train = dataclasses.replace(
        cfg.train, seed=derive_seed(cfg.train.seed, CALIBRATION_STREAM), hard_pool=1, quiet_images=0, processes=1
    )
    with torch.random.fork_rng(devices=[]):
        loader = make_loader(dataclasses.replace(cfg, train=train), codec, 0, workers=0, pin=False)
        return calibration_images(loader, n)


def calibration_set(t: Trainer) -> torch.Tensor:
    """`eval.bn_refresh` images of the training stream, made once per run."""
    if t.calibration is None:
        t.calibration = stream_calibration(t.cfg, t.codec, t.cfg.eval.bn_refresh)
    return t.calibration


def with_measured_statistics(model: torch.nn.Module, cfg: Config, device: torch.device, n: int) -> torch.nn.Module:
    """A checkpoint's CRNN read as validation reads it: BatchNorm statistics measured for its
    weights on `n` images of its training data (for a checkpoint saved mid-run, whose running
    averages lag its weights)."""
    if n < 1:
        raise CaptchaStreamError(f"--bn-refresh: must be at least 1 image, got {n}")
    if not isinstance(model, CRNN):
        raise CaptchaStreamError(
            "--bn-refresh: measures a plain reader's statistics; this checkpoint holds more stages"
        )
    images = stream_calibration(cfg, Codec(cfg.data.charset), n)
    autocast = autocast_for(device, cfg.train.amp)
    return with_fresh_statistics(model, images, cfg.train.batch_size, device, autocast, cfg.train.channels_last)


def as_read(t: Trainer, model: torch.nn.Module) -> torch.nn.Module:
    """`model` with BatchNorm statistics measured for its present weights (batchnorm.py), unless
    `eval.bn_refresh` is 0 or it has no BatchNorm."""
    if t.cfg.eval.bn_refresh == 0 or not has_batchnorm(model):
        return model
    cfg = t.cfg
    images = calibration_set(t)
    return with_fresh_statistics(
        model, images, cfg.train.batch_size, t.device, t.autocast, channels_last=cfg.train.channels_last
    )


def validate(t: Trainer) -> None:
    """Read the validation set, log it, and keep best.pt if this is the best reading so far."""
    step, ema = t.counters["step"], t.ema
    # Time and images beside accuracy: time to a given accuracy is read straight from the log.
    images = step * global_batch(t.cfg.train, t.dinfo.world_size)
    record: dict[str, Any] = {"step": step, "time": round(t.counters["elapsed"], 2), "images": images}
    model = as_read(t, t.model)
    if ema is not None:
        # The raw weights too, so every run with an average measures what it gained.
        raw = run_eval(model, t.val_images, t.val_labels, t.codec, t.device, **t.eval_args)
        record["eval_raw"] = raw.summary()
    evaluated = as_read(t, ema.model) if ema is not None else model
    summary = run_eval(evaluated, t.val_images, t.val_labels, t.codec, t.device, **t.eval_args).summary()
    t.evals.append(summary)
    record["eval"] = summary
    t.runlog.write(record)
    raw_note = f"  (raw weights {record['eval_raw']['full_string_accuracy']:.2%})" if ema is not None else ""
    t.log(f"step {step}: validation {headline(summary)}{raw_note}")
    # The average is usually ahead, but late in a low-learning-rate phase the raw weights can lead it;
    # best.pt keeps whichever read validation better and says which (ties go to the average).
    read_with, accuracy = "ema" if ema is not None else "model", summary["full_string_accuracy"]
    if ema is not None and record["eval_raw"]["full_string_accuracy"] > accuracy:
        read_with, accuracy = "model", record["eval_raw"]["full_string_accuracy"]
    if accuracy > t.counters["best_accuracy"]:
        t.counters["best_accuracy"] = accuracy
        # best.pt holds the statistics its weights were read with.
        read = {"model": model.state_dict(), **({"ema": evaluated.state_dict()} if ema is not None else {})}
        save_checkpoint({**t.state(), **read, "read_with": read_with}, t.run_dir / "best.pt", keep_previous=False)
        if read_with == "model" and ema is not None:
            t.log(f"step {step}: best.pt keeps the raw weights ({accuracy:.2%}, ahead of the average)")
    try:
        draw_curve(t.run_dir)
    except OSError as exc:
        # The curve is a convenience: a failed picture never stops a run (a full disk stops it
        # at the next checkpoint, with the last good one kept).
        t.log(f"warning: {t.run_dir / 'curve.png'}: not drawn ({exc.strerror or exc})")


def log_first_batch(t: Trainer, labels: list[str]) -> None:
    """A record of who saw what: each rank must stream its own captchas."""
    gathered = distributed.gather(t.dinfo, labels[:4])
    if t.main:
        t.runlog.write(
            {
                "step": t.counters["step"],
                "event": "start",
                "world_size": t.dinfo.world_size,
                "global_batch": global_batch(t.cfg.train, t.dinfo.world_size),
                "lr": t.cfg.optim.lr * t.lr_scale,
                "init_from": t.cfg.train.init_from or None,
                "precision": t.precision,
                "first_labels": gathered,
            }
        )


def take_step(t: Trainer, batch: Any) -> tuple[float, int] | None:
    """One optimizer step on `batch`: its loss and images, or None when the loss was not finite and the
    step skipped (with hard-example mining, the images are the hardest of the drawn pool)."""
    cfg, device = t.cfg, t.device
    if cfg.train.hard_pool > 1:
        batch = hardest(t.model, batch, rank_batch(cfg.train, t.dinfo.world_size), device, t.autocast)
    images = batch.images.to(device, non_blocking=True)
    if cfg.train.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with t.autocast:
        log_probs = t.net(images)
    loss = ctc_loss(log_probs, batch.targets.to(device), batch.target_lengths.to(device))
    # Skipped together too: one rank skipping backward alone would hang the rest.
    if distributed.reduce_max(t.dinfo, [float(not torch.isfinite(loss))], device)[0]:
        return None
    t.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.optim.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(t.model.parameters(), cfg.optim.grad_clip)
    t.optimizer.step()
    t.scheduler.step()
    if t.ema is not None:
        t.ema.update(t.model)
    t.counters["step"] += 1
    return loss.item(), images.shape[0]


@dataclass
class Window:
    """Loss, images and time since the last log record."""

    loss: float = 0.0
    steps: int = 0
    images: int = 0
    # Seconds the trainer waited for the DataLoader: near 0 when the workers keep up.
    wait: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def add(self, loss: float, images: int) -> None:
        self.loss += loss
        self.steps += 1
        self.images += images

    def record(self, t: Trainer, elapsed: float) -> dict[str, float]:
        """Every rank's window summed; rank 0 logs it. Returns the window's loss, lr and images/s."""
        now = time.perf_counter()
        loss, steps, images = distributed.reduce_sum(t.dinfo, [self.loss, self.steps, self.images], t.device)
        seconds = max(now - self.started, 1e-9)
        last = {"loss": loss / steps, "lr": t.scheduler.get_last_lr()[0], "img_per_s": images / seconds}
        if t.main:
            extra = {"data_wait": round(self.wait / seconds, 4), "bad_steps": t.counters["bad_steps"], "time": elapsed}
            t.runlog.write({"step": t.counters["step"], **last, **extra})
        return last


def run_loop(t: Trainer, loader: DataLoader, progress: bool) -> dict[str, float]:
    """Steps until the last step (train.steps, or what fits a time budget) or a stop signal;
    returns the last logged window."""
    counters = t.counters
    t.model.train()
    bar = tqdm(
        total=t.last_step(),
        initial=counters["step"],
        desc=f"training {t.run_dir.name}",
        unit="step",
        disable=not (progress and t.main),
        dynamic_ncols=True,
    )
    last: dict[str, float] = {}
    bad_in_row, first, first_step = 0, True, counters["step"]
    if t.window is None:
        t.window = Window()
    batches: Iterator[Any] = iter(loader)
    with StopRequest() as stop:
        try:
            while counters["step"] < t.last_step():
                # Every rank stops together (a rank leaving alone would hang DDP's all-reduce),
                # and before drawing the batch, so the saved RNG state and stream position
                # are exactly those of the next step.
                if distributed.reduce_max(t.dinfo, [float(stop.signal is not None)], t.device)[0]:
                    stop.signal = stop.signal or "SIGTERM"
                    break
                began = time.perf_counter()
                batch = next_batch(batches)
                t.window.wait += time.perf_counter() - began
                counters["batches"] += 1
                if first:
                    first = False
                    log_first_batch(t, batch.labels)
                taken = take_step(t, batch)
                if taken is None:
                    counters["bad_steps"] += 1
                    bad_in_row += 1
                    if bad_in_row >= t.cfg.train.max_bad_steps:
                        raise CaptchaStreamError(
                            f"{bad_in_row} non-finite losses in a row at step {counters['step']}; "
                            "lower optim.lr or check the data"
                        )
                    continue
                bad_in_row = 0
                t.window.add(*taken)
                last = after_step(t, bar, began, counters["step"] - first_step) or last
        except KeyboardInterrupt:
            stop.signal = "SIGINT"
        finally:
            bar.close()
            del batches
    if stop.signal:
        counters["elapsed"] = time.perf_counter() - t.clock
        if t.main:
            save_checkpoint(t.state(), t.run_dir / "last.pt")
        raise TrainingStopped(
            stop.signal,
            f"stopped by {stop.signal} at step {counters['step']}; checkpoint saved to {t.run_dir / 'last.pt'} "
            f"(continue with --resume)",
        )
    return last


def timed_eval_due(t: Trainer) -> bool:
    """Whether the clock has passed the next train.eval_minutes moment since the last validation."""
    period = t.cfg.train.eval_minutes * 60
    if period <= 0:
        return False
    done = t.counters.get("timed_evals", 0)
    if t.counters["elapsed"] < (done + 1) * period:
        return False
    t.counters["timed_evals"] = int(t.counters["elapsed"] // period)
    return True


def after_step(t: Trainer, bar: tqdm, began: float, steps_in_run: int) -> dict[str, float] | None:
    """Log, refit a time budget, validate and checkpoint as the step just taken calls for;
    returns the window logged, if one was."""
    cfg, counters, step = t.cfg, t.counters, t.counters["step"]
    bar.update(1)
    counters["elapsed"] = time.perf_counter() - t.clock
    # Refit first: a budget that runs out ends the run at this step, which must then be logged.
    if t.budget is not None:
        t.budget.add_step(time.perf_counter() - began, steps_in_run)
        counters["step_seconds"], counters["eval_seconds"] = t.budget.step_seconds, t.budget.eval_seconds
        if t.budget.probed:
            fitted = t.budget.fit(step, counters["elapsed"])
            # Every rank ends at the same step: the earliest any of them fits.
            counters["planned_steps"] = int(-distributed.reduce_max(t.dinfo, [-float(fitted)], t.device)[0])
            bar.total = counters["planned_steps"]
    end_of_run = step == t.last_step()
    last = None
    if step % cfg.train.log_every == 0 or end_of_run:
        last = t.window.record(t, time.perf_counter() - t.clock)
        bar.set_postfix(loss=f"{last['loss']:.4f}", lr=f"{last['lr']:.2e}", img_s=f"{last['img_per_s']:.0f}")
        t.window = Window()
    if t.main and (step % cfg.train.eval_every == 0 or end_of_run or timed_eval_due(t)):
        evaluated = time.perf_counter()
        validate(t)
        if end_of_run or step % cfg.train.checkpoint_every == 0:
            save_checkpoint(t.state(), t.run_dir / "last.pt")
        if t.budget is not None:
            t.budget.add_eval(time.perf_counter() - evaluated)
    elif t.main and step % cfg.train.checkpoint_every == 0:
        save_checkpoint(t.state(), t.run_dir / "last.pt")
    counters["elapsed"] = time.perf_counter() - t.clock
    return last


def test_best(
    cfg: Config,
    run_dir: Path,
    device: torch.device,
    eval_args: dict[str, Any],
    runlog: RunLog,
    step: int,
    log: Callable[[str], None],
    progress: bool = True,
) -> dict[str, Any] | None:
    """best.pt measured once on the test set, the number to report: it chose nothing."""
    best_path = run_dir / "best.pt"
    if not best_path.exists():
        return None
    if not cfg.eval.final_test:
        log(f"test set not read (eval.final_test: false); once chosen: python evaluate.py --checkpoint {best_path}")
        return None
    state = load_checkpoint(best_path)
    model, codec = build_model(cfg)
    model.to(device)
    model.load_state_dict(inference_weights(state, best_path))
    test_dir = ensure_set(
        cfg.eval.test_dir, cfg.eval.test_size, cfg.data, cfg.eval.test_seed, log=log, progress=progress
    )
    images, labels = load_all(FolderDataset(test_dir, cfg.data), cfg.eval.batch_size)
    summary = run_eval(model, images, labels, codec, device, **eval_args).summary()
    best_step = state["step"]
    record = {"step": step, "event": "test", "best_step": best_step, "test_dir": str(test_dir), "test": summary}
    log(f"best.pt (step {best_step}) on the test set {test_dir}: {headline(summary)}")
    if cfg.eval.tta:
        # The reader built from this checkpoint reads with the recipe's shifts: report what it reads,
        # and the plain reading beside it, which validation chose best.pt by.
        shifted = run_eval(model, images, labels, codec, device, **eval_args, tta=cfg.eval.tta).summary()
        record["test_tta"] = {"tta": list(cfg.eval.tta), **shifted}
        log(f"  read as its reader reads it, with {describe_shifts(cfg.eval.tta)}: {headline(shifted)}")
    runlog.write(record)
    return {"best_step": best_step, **summary, "tta": record.get("test_tta")}


def _silent(_: str) -> None:
    pass


def _to_stderr(message: str) -> None:
    # Through tqdm so a message does not tear the progress bar.
    tqdm.write(message, file=sys.stderr)


def next_batch(batches: Iterator[Any]) -> Any:
    """The next batch; a failure inside a DataLoader worker becomes one line naming its cause.

    The DataLoader re-raises a worker's exception with the worker's whole traceback in the
    message; its last line is the original exception, which is what a user needs.
    """
    try:
        return next(batches)
    except StopIteration:
        raise CaptchaStreamError("the training stream ended early (a bounded stream or an empty folder?)") from None
    except (CaptchaStreamError, OSError, RuntimeError, ValueError) as exc:
        lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
        cause = lines[-1].strip() if lines else exc.__class__.__name__
        cause = cause.replace("captcha_stream.errors.CaptchaStreamError: ", "")
        raise CaptchaStreamError(f"data loading failed: {cause}") from exc
