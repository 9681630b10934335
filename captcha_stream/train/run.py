"""A run's folder and state: the run directory, its metrics log, checkpoint contents, resume policy, stops.

Everything here is about one run on disk, not about how a step is taken (loop.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..atomic import cannot_write_in, replacing
from ..checkpoint import inference_weights, load_checkpoint, load_for_resume
from ..config import MODEL_DATA_KEYS, Config, changed_on_resume, from_dict, merge
from ..errors import CaptchaStreamError
from ..eval.plot import read_records
from ..model.crnn import CRNN
from .ema import WeightAverage


class RunLog:
    """metrics.jsonl: one JSON object per line, training records and evaluations."""

    def __init__(self, path: Path, resume_step: int | None, log: Callable[[str], None] = print) -> None:
        self.path = path
        if resume_step is not None and path.exists():
            # Records past the checkpoint were made by the interrupted run; the resumed
            # run writes them again. Replaced whole: a kill during the rewrite keeps the old file.
            kept = [r for r in read_records(path, log) if r.get("step", 0) <= resume_step]
            with replacing(path) as tmp:
                tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        elif resume_step is None:
            path.write_text("")

    def write(self, record: dict[str, Any]) -> None:
        try:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(record) + "\n")
        except OSError as exc:
            raise CaptchaStreamError(f"{self.path}: cannot write ({exc.strerror or exc}; disk full?)") from None


def run_dir_for(cfg: Config) -> Path:
    return Path(cfg.train.run_dir or f"runs/{cfg.name}")


def prepare_run_dir(run_dir: Path, resume: bool) -> RunLock:
    """Make the run folder ready and take its lock (the caller releases it when the run ends)."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CaptchaStreamError(f"{run_dir}: cannot create run directory: {exc.strerror}") from None
    if not run_dir.is_dir():
        raise CaptchaStreamError(f"{run_dir}: run directory path is not a folder")
    refused = cannot_write_in(run_dir)
    if refused:
        raise CaptchaStreamError(f"{run_dir}: run directory is not writable ({refused})")
    # Before anything below touches the folder: another run may be writing in it.
    lock = RunLock(run_dir).__enter__()
    try:
        _check_run_dir(run_dir, resume)
    except BaseException:
        lock.__exit__()
        raise
    return lock


def _check_run_dir(run_dir: Path, resume: bool) -> None:
    if not resume and (run_dir / "last.pt").exists():
        raise CaptchaStreamError(
            f"{run_dir}: holds a run already (last.pt); use --resume to continue it or --run-dir for a new one"
        )
    if resume and not (run_dir / "last.pt").exists() and not (run_dir / "last.prev.pt").exists():
        raise CaptchaStreamError(f"{run_dir}: no last.pt to resume from")
    # A checkpoint write cut off by kill -9 leaves its temporary file; the real ones are intact.
    for tmp in run_dir.glob(".*.pt.tmp-*"):
        tmp.unlink(missing_ok=True)


class RunLock:
    """Holds RUN_DIR/.lock for the run's lifetime (flock: released by the OS when the process dies,
    however it dies); a second run on the folder gets one line naming the holder's PID."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / ".lock"
        self.fh: Any = None

    def __enter__(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock, as before
            return self
        self.fh = open(self.path, "a+")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.fh.seek(0)
            holder = self.fh.read().strip() or "?"
            self.fh.close()
            raise CaptchaStreamError(
                f"{self.path.parent}: another training run (PID {holder}) is using this folder; "
                "wait for it, stop it, or use --run-dir"
            ) from None
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(str(os.getpid()))
        self.fh.flush()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.fh is not None:
            # Removed while still held, so a finished run leaves its folder as it was; after a crash
            # the file stays, unlocked, and the next run takes it.
            self.path.unlink(missing_ok=True)
            self.fh.close()
            self.fh = None


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


def resume_config(cfg: Config, overrides: dict[str, Any]) -> Config:
    """The config a resumed run goes on with: the run's own, changed only by what this command gave.

    A resume that cannot go on at all says so before any warning; changed settings are allowed
    (a deliberate new phase) but warned about, so they do not pass for an exact resume.
    """
    run_dir = run_dir_for(cfg)
    if not any((run_dir / name).exists() for name in ("last.pt", "last.prev.pt")):
        raise CaptchaStreamError(f"{run_dir}: no last.pt to resume from")
    state = load_for_resume(run_dir / "last.pt", log=lambda s: None)
    resumed = from_dict(Config, merge(state["config"], {"train.run_dir": str(run_dir), **overrides}))
    resumed.validate()
    check_compatible(state, resumed, run_dir / "last.pt")
    changes = changed_on_resume(state["config"], overrides)
    if changes:
        print(
            f"warning: resuming {run_dir} with changed settings ({'; '.join(changes)}): "
            "from here it will not match the run uninterrupted",
            file=sys.stderr,
        )
    return resumed


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


class TrainingStopped(CaptchaStreamError):
    """Training was stopped by a signal after saving a checkpoint."""

    def __init__(self, signal_name: str, message: str) -> None:
        super().__init__(message)
        # The shell's convention: 128 + signal number.
        self.exit_code = 128 + int(getattr(signal, signal_name))
