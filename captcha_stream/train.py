"""The training loop: config, data, model, optimizer, loop, eval, checkpoint. Read top to bottom.

Exact resume rests on one property of CaptchaStream: batch `b` is a pure function of
(seed, rank, b). A checkpoint records how many batches were consumed, and the resumed
stream starts there; model, optimizer, scheduler and torch RNG state (dropout) come from
the checkpoint, so an interrupted and resumed run logs the same losses as one that ran
straight through.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from . import distributed
from .checkpoint import inference_weights, load_checkpoint, load_for_resume, save_checkpoint
from .codec import Codec
from .config import MODEL_DATA_KEYS, Config
from .ema import WeightAverage
from .errors import CaptchaStreamError
from .evaluation import load_all, run_eval
from .export import ensure_set
from .folder import FolderDataset
from .hard_examples import hardest
from .model import CRNN
from .plot import draw_curve
from .stream import CaptchaStream, CtcCollate, FolderStream, IndexedStream


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CaptchaStreamError(f"train.device: {name!r} asked for, but no CUDA device is available")
    if name == "mps" and not _mps_available():
        raise CaptchaStreamError("train.device: 'mps' asked for, but MPS is not available")
    device = torch.device(name)  # the config check has vetted the spelling
    if device.type == "cuda" and device.index is not None:
        count = torch.cuda.device_count()
        if device.index >= count:
            # Otherwise the first tensor moved there fails deep inside torch.
            raise CaptchaStreamError(
                f"train.device: {name!r} asked for, but there is no CUDA device {device.index} ({count} available)"
            )
    return device


def default_workers() -> int:
    # Leave a core for the training process itself.
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def lr_factor(step: int, cfg: Config) -> float:
    """Linear warm-up, then cosine decay to min_lr_ratio at the last step."""
    warm, total, floor = cfg.optim.warmup_steps, cfg.train.steps, cfg.optim.min_lr_ratio
    if warm and step < warm:
        return (step + 1) / warm
    progress = min(1.0, (step - warm) / max(1, total - warm))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def build_model(cfg: Config) -> tuple[CRNN, Codec]:
    codec = Codec(cfg.data.charset)
    return CRNN(cfg.data, cfg.model, codec.num_classes), codec


def make_optimizer(model: torch.nn.Module, cfg: Config, lr_scale: float = 1.0) -> torch.optim.Optimizer:
    # No weight decay on norms and biases: decaying them only fights BatchNorm.
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.optim.lr * lr_scale)


def _worker_init(_: int) -> None:
    # Ctrl-C, `timeout` and `kill -- -PGID` signal the whole process group; the trainer decides
    # how to stop, so a worker dying first must not turn a clean stop into a DataLoader error.
    # A group of its own keeps such signals off the worker; it still ends with the trainer (the
    # loader's shutdown, which needs SIGTERM to work, or its watchdog if the trainer is killed).
    if hasattr(os, "setpgrp"):  # POSIX only
        os.setpgrp()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)


def make_loader(cfg: Config, codec: Codec, start_batch: int, workers: int, pin: bool, rank: int = 0) -> DataLoader:
    # With hard-example mining each step draws a pool of hard_pool batches from the stream.
    block = cfg.train.batch_size * cfg.train.hard_pool
    start = start_batch * block
    stream: IndexedStream
    if cfg.train.train_dir:
        folder = FolderDataset(cfg.train.train_dir, cfg.data, cfg.train.train_labels or None)
        stream = FolderStream(
            folder, seed=cfg.train.seed, start=start, block_size=block, rank=rank, augment=cfg.data.augment
        )
    else:
        stream = CaptchaStream(
            cfg.data, seed=cfg.train.seed, start=start, block_size=block, rank=rank, symbol_weights=cfg.symbol_weights()
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


class StopRequest:
    """SIGINT/SIGTERM set a flag; the loop stops at the next step boundary and saves.

    Stopping between steps (not wherever the signal lands) keeps the saved optimizer
    state consistent. A second Ctrl-C stops at once.
    """

    def __init__(self) -> None:
        self.signal: str | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name

    def __enter__(self) -> StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class RunLog:
    """metrics.jsonl: one JSON object per line, training records and evaluations."""

    def __init__(self, path: Path, resume_step: int | None) -> None:
        self.path = path
        if resume_step is not None and path.exists():
            # Records past the checkpoint were made by the interrupted run; the resumed
            # run writes them again.
            kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= resume_step]
            path.write_text("".join(line + "\n" for line in kept))
        elif resume_step is None:
            path.write_text("")

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")


def run_dir_for(cfg: Config) -> Path:
    return Path(cfg.train.run_dir or f"runs/{cfg.name}")


def prepare_run_dir(run_dir: Path, resume: bool) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CaptchaStreamError(f"{run_dir}: cannot create run directory: {exc.strerror}") from None
    if not run_dir.is_dir():
        raise CaptchaStreamError(f"{run_dir}: run directory path is not a folder")
    # Try it rather than ask os.access: root passes access checks on read-only filesystems.
    probe = run_dir / f".write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise CaptchaStreamError(f"{run_dir}: run directory is not writable ({exc.strerror})") from None
    if not resume and (run_dir / "last.pt").exists():
        raise CaptchaStreamError(
            f"{run_dir}: holds a run already (last.pt); use --resume to continue it or --run-dir for a new one"
        )
    if resume and not (run_dir / "last.pt").exists() and not (run_dir / "last.prev.pt").exists():
        raise CaptchaStreamError(f"{run_dir}: no last.pt to resume from")
    # A checkpoint write cut off by kill -9 leaves its temporary file; the real ones are intact.
    for tmp in run_dir.glob(".*.pt.tmp-*"):
        tmp.unlink(missing_ok=True)


def checkpoint_state(
    model: CRNN,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    cfg: Config,
    counters: dict[str, Any],
    ema: WeightAverage | None = None,
) -> dict[str, Any]:
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "config": cfg.to_dict(),
        "charset": cfg.data.charset,
        "rng_cpu": torch.get_rng_state(),
        **counters,
    }
    if ema is not None:
        # Readers (evaluate, predict, slim) take these weights over "model" when present.
        state["ema"] = ema.model.state_dict()
        state["ema_updates"] = ema.updates
    if torch.cuda.is_available():
        state["rng_cuda"] = torch.cuda.get_rng_state_all()
    return state


def check_compatible(ckpt: dict[str, Any], cfg: Config, path: Path) -> None:
    """A checkpoint resumes only with the data it was trained on (the model's input and output)."""
    saved = ckpt["config"].get("data", {})
    for key in MODEL_DATA_KEYS:
        if saved.get(key) != getattr(cfg.data, key):
            raise CaptchaStreamError(
                f"{path}: was trained with data.{key}={saved.get(key)!r}, the config says {getattr(cfg.data, key)!r}"
            )


def load_initial_weights(model: CRNN, cfg: Config, log: Callable[[str], None]) -> None:
    """train.init_from: start from a finished run's weights, read as evaluate.py reads them."""
    path = Path(cfg.train.init_from)
    ckpt = load_checkpoint(path)
    check_compatible(ckpt, cfg, path)
    try:
        model.load_state_dict(inference_weights(ckpt, path))
    except RuntimeError:
        raise CaptchaStreamError(
            f"train.init_from: {path} holds a different model than the config describes "
            "(model.* must match the run that made it)"
        ) from None
    log(f"starting from the weights of {path} (step {ckpt.get('step', '?')})")


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
        return _train(cfg, resume, progress, log, device, dinfo)
    finally:
        distributed.cleanup(dinfo)


def _train(
    cfg: Config,
    resume: bool,
    progress: bool,
    log: Callable[[str], None],
    device: torch.device,
    dinfo: distributed.DistInfo,
) -> dict[str, Any]:
    main = dinfo.is_main
    if not main:
        log = _silent
    if dinfo.enabled and device.type == "cuda":
        device = torch.device("cuda", dinfo.local_rank)
    run_dir = run_dir_for(cfg)
    if main:
        prepare_run_dir(run_dir, resume)
    distributed.barrier(dinfo)
    torch.manual_seed(cfg.train.seed)

    ckpt: dict[str, Any] | None = None
    if resume:
        ckpt = load_for_resume(run_dir / "last.pt", log=log)
        check_compatible(ckpt, cfg, run_dir / "last.pt")

    model, codec = build_model(cfg)
    model.to(device)
    # The configured lr is for one process; more ranks make a larger global batch.
    lr_scale = (
        math.sqrt(dinfo.world_size)
        if cfg.optim.lr_scaling == "sqrt"
        else (dinfo.world_size if cfg.optim.lr_scaling == "linear" else 1.0)
    )
    optimizer = make_optimizer(model, cfg, lr_scale)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    counters: dict[str, Any] = {"step": 0, "batches": 0, "bad_steps": 0, "best_accuracy": -1.0, "elapsed": 0.0}
    if ckpt is not None:
        try:
            model.load_state_dict(ckpt["model"])
        except RuntimeError:
            raise CaptchaStreamError(
                f"{run_dir / 'last.pt'}: its model does not match the config (different image size or model?)"
            ) from None
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if lr_scale != ckpt.get("lr_scale", 1.0):
            # A run resumed on a different number of ranks keeps the schedule but rescales it.
            for group in optimizer.param_groups:
                group["initial_lr"] = cfg.optim.lr * lr_scale
            scheduler.base_lrs = [cfg.optim.lr * lr_scale for _ in optimizer.param_groups]
        counters.update({k: ckpt[k] for k in counters})
        log(f"resuming {run_dir} at step {counters['step']}")
    elif cfg.train.init_from:
        load_initial_weights(model, cfg, log)
    ema = WeightAverage(model, cfg.train.ema_decay) if cfg.train.ema_decay > 0 else None
    if ema is not None and ckpt is not None:
        if "ema" in ckpt:
            ema.restore(ckpt["ema"], ckpt.get("ema_updates", 0))
        else:
            log(f"warning: {run_dir / 'last.pt'} has no weight average; starting one from the current weights")
    net: torch.nn.Module = model
    if dinfo.enabled:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    val_images = torch.empty(0)
    val_labels: list[str] = []
    if main:
        # The frozen validation set, decoded once and kept in memory for every evaluation.
        val_dir = ensure_set(
            cfg.eval.val_dir,
            cfg.eval.val_size,
            cfg.data,
            cfg.eval.val_seed,
            log=log,
            kind="validation",
            key="eval.val_dir",
            forbidden_seed=cfg.eval.test_seed,
        )
        val_images, val_labels = load_all(FolderDataset(val_dir, cfg.data), cfg.eval.batch_size)

    workers = cfg.train.num_workers if cfg.train.num_workers >= 0 else default_workers()
    loader = make_loader(cfg, codec, counters["batches"], workers, pin=device.type == "cuda", rank=dinfo.rank)
    ctc = torch.nn.CTCLoss(blank=0, reduction="mean")
    use_amp = cfg.train.amp and device.type == "cuda" and torch.cuda.is_bf16_supported()
    # bf16 keeps fp32's range, so no loss scaler is needed.
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else contextlib.nullcontext()
    runlog = RunLog(run_dir / "metrics.jsonl", counters["step"] if resume else None) if main else None

    def state() -> dict[str, Any]:
        return checkpoint_state(model, optimizer, scheduler, cfg, {**counters, "lr_scale": lr_scale}, ema)

    evals: list[dict[str, float]] = []

    eval_args = {"batch_size": cfg.eval.batch_size, "beam": cfg.eval.beam, "lengths": cfg.beam_lengths()}

    def evaluate() -> None:
        record: dict[str, Any] = {"step": counters["step"]}
        if ema is not None:
            # The raw weights too, so every run with an average measures what it gained.
            raw = run_eval(model, val_images, val_labels, codec, device, **eval_args)
            record["eval_raw"] = raw.summary()
        evaluated = ema.model if ema is not None else model
        res = run_eval(evaluated, val_images, val_labels, codec, device, **eval_args)
        summary = res.summary()
        evals.append(summary)
        record["eval"] = summary
        runlog.write(record)
        raw_note = f"  (raw weights {record['eval_raw']['full_string_accuracy']:.2%})" if ema is not None else ""
        log(f"step {counters['step']}: validation {headline(summary)}{raw_note}")
        # The average is usually ahead, but late in a low-learning-rate phase the raw weights can lead it;
        # best.pt keeps whichever read validation better and says which (ties go to the average).
        read_with, accuracy = "ema" if ema is not None else "model", summary["full_string_accuracy"]
        if ema is not None and record["eval_raw"]["full_string_accuracy"] > accuracy:
            read_with, accuracy = "model", record["eval_raw"]["full_string_accuracy"]
        if accuracy > counters["best_accuracy"]:
            counters["best_accuracy"] = accuracy
            save_checkpoint({**state(), "read_with": read_with}, run_dir / "best.pt", keep_previous=False)
            if read_with == "model" and ema is not None:
                log(f"step {counters['step']}: best.pt keeps the raw weights ({accuracy:.2%}, ahead of the average)")
        draw_curve(run_dir)

    if ckpt is not None:
        # Restored last, just before the loop: anything above may draw from the global RNG.
        torch.set_rng_state(ckpt["rng_cpu"])
        if "rng_cuda" in ckpt and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["rng_cuda"])
    model.train()
    bar = tqdm(
        total=cfg.train.steps,
        initial=counters["step"],
        desc=f"training {run_dir.name}",
        unit="step",
        disable=not (progress and main),
        dynamic_ncols=True,
    )
    last: dict[str, float] = {}
    window_loss, window_n, window_imgs, window_t = 0.0, 0, 0, time.perf_counter()
    # Seconds the trainer waited for the DataLoader in this window: near 0 when the workers keep up.
    window_wait = 0.0
    bad_in_row = 0
    started = time.perf_counter() - counters["elapsed"]
    batches: Iterator[Any] = iter(loader)
    first_batch = True
    with StopRequest() as stop:
        try:
            while counters["step"] < cfg.train.steps:
                # Every rank stops together (a rank leaving alone would hang DDP's all-reduce),
                # and before drawing the batch, so the saved RNG state and stream position
                # are exactly those of the next step.
                if distributed.reduce_max(dinfo, [float(stop.signal is not None)], device)[0]:
                    stop.signal = stop.signal or "SIGTERM"
                    break
                waited = time.perf_counter()
                batch = next_batch(batches)
                window_wait += time.perf_counter() - waited
                counters["batches"] += 1
                if first_batch:
                    first_batch = False
                    # A record of who saw what: each rank must stream its own captchas.
                    labels = distributed.gather(dinfo, batch.labels[:4])
                    if main:
                        runlog.write(
                            {
                                "step": counters["step"],
                                "event": "start",
                                "world_size": dinfo.world_size,
                                "global_batch": cfg.train.batch_size * dinfo.world_size,
                                "lr": cfg.optim.lr * lr_scale,
                                "init_from": cfg.train.init_from or None,
                                "first_labels": labels,
                            }
                        )
                if cfg.train.hard_pool > 1:
                    batch = hardest(model, batch, cfg.train.batch_size, device, autocast)
                images = batch.images.to(device, non_blocking=True)
                with autocast:
                    log_probs = net(images)
                # All CTC inputs on the model's device: the native CUDA kernel wants them there.
                input_lengths = torch.full((images.shape[0],), log_probs.shape[0], dtype=torch.long, device=device)
                loss = ctc(log_probs, batch.targets.to(device), input_lengths, batch.target_lengths.to(device))
                # Skipped together too: one rank skipping backward alone would hang the rest.
                bad = distributed.reduce_max(dinfo, [float(not torch.isfinite(loss))], device)[0]
                if bad:
                    counters["bad_steps"] += 1
                    bad_in_row += 1
                    if bad_in_row >= cfg.train.max_bad_steps:
                        raise CaptchaStreamError(
                            f"{bad_in_row} non-finite losses in a row at step {counters['step']}; "
                            "lower optim.lr or check the data"
                        )
                    continue
                bad_in_row = 0
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.optim.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
                optimizer.step()
                scheduler.step()
                if ema is not None:
                    ema.update(model)
                counters["step"] += 1
                step = counters["step"]
                window_loss += loss.item()
                window_n += 1
                window_imgs += images.shape[0]
                bar.update(1)
                if step % cfg.train.log_every == 0 or step == cfg.train.steps:
                    now = time.perf_counter()
                    total_loss, total_n, total_imgs = distributed.reduce_sum(
                        dinfo, [window_loss, window_n, window_imgs], device
                    )
                    rate = total_imgs / max(now - window_t, 1e-9)
                    last = {"loss": total_loss / total_n, "lr": scheduler.get_last_lr()[0], "img_per_s": rate}
                    if main:
                        wait = window_wait / max(now - window_t, 1e-9)
                        runlog.write(
                            {
                                "step": step,
                                **last,
                                "data_wait": round(wait, 4),
                                "bad_steps": counters["bad_steps"],
                                "time": now - started,
                            }
                        )
                    bar.set_postfix(loss=f"{last['loss']:.4f}", lr=f"{last['lr']:.2e}", img_s=f"{rate:.0f}")
                    window_loss, window_n, window_imgs, window_t, window_wait = 0.0, 0, 0, now, 0.0
                counters["elapsed"] = time.perf_counter() - started
                if main and (step % cfg.train.eval_every == 0 or step == cfg.train.steps):
                    evaluate()
                if main and (step % cfg.train.checkpoint_every == 0 or step == cfg.train.steps):
                    save_checkpoint(state(), run_dir / "last.pt")
        except KeyboardInterrupt:
            stop.signal = "SIGINT"
        finally:
            bar.close()
            del batches
        if stop.signal:
            counters["elapsed"] = time.perf_counter() - started
            if main:
                save_checkpoint(state(), run_dir / "last.pt")
            raise TrainingStopped(
                stop.signal,
                f"stopped by {stop.signal} at step {counters['step']}; checkpoint saved to {run_dir / 'last.pt'} "
                f"(continue with --resume)",
            )
    test = test_best(cfg, run_dir, device, eval_args, runlog, counters["step"], log) if main else None
    distributed.barrier(dinfo)
    return {
        **counters,
        "run_dir": str(run_dir),
        "last": last,
        "final_eval": evals[-1] if evals else None,
        "test": test,
    }


def test_best(
    cfg: Config,
    run_dir: Path,
    device: torch.device,
    eval_args: dict[str, Any],
    runlog: RunLog,
    step: int,
    log: Callable[[str], None],
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
    test_dir = ensure_set(cfg.eval.test_dir, cfg.eval.test_size, cfg.data, cfg.eval.test_seed, log=log)
    images, labels = load_all(FolderDataset(test_dir, cfg.data), cfg.eval.batch_size)
    summary = run_eval(model, images, labels, codec, device, **eval_args).summary()
    best_step = state["step"]
    runlog.write({"step": step, "event": "test", "best_step": best_step, "test_dir": str(test_dir), "test": summary})
    log(f"best.pt (step {best_step}) on the test set {test_dir}: {headline(summary)}")
    return {"best_step": best_step, **summary}


def headline(summary: dict[str, float]) -> str:
    return (
        f"full-string {summary['full_string_accuracy']:.2%}  char {summary['char_accuracy']:.2%}  "
        f"CER {summary['cer']:.2%}  case-insensitive {summary['case_insensitive_accuracy']:.2%}"
    )


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


class TrainingStopped(CaptchaStreamError):
    """Training was stopped by a signal after saving a checkpoint."""

    def __init__(self, signal_name: str, message: str) -> None:
        super().__init__(message)
        # The shell's convention: 128 + signal number.
        self.exit_code = 128 + int(getattr(signal, signal_name))
