"""An audit: a scheme's `data:` section, trained on from scratch with the best recipe this machine has,
validated at fixed moments, then read once on a fresh test set of the scheme in detail."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import yaml

from ..atomic import replacing
from ..checkpoint import load_checkpoint
from ..config import Config, load_config, resolve_config
from ..errors import CaptchaStreamError
from ..eval import metrics
from ..eval.evaluation import evaluate_checkpoint
from ..eval.time_to import curve, time_to

# The recipes an audit trains with: the fastest known way to a good reader on each kind of machine.
CPU_RECIPE = "cpu"
GPU_RECIPE = "stream"
# Validations per budget by default: the points of the learning curve.
POINTS = 10


@dataclass
class Budget:
    minutes: float = 0.0
    steps: int = 0
    # Each validation costs a read of 1000 captchas: more points draw a finer curve from less training.
    points: int = POINTS

    def describe(self) -> str:
        return f"{self.minutes:g} minutes" if self.minutes else f"{self.steps} steps"


def recipe_config(
    scheme: Path, budget: Budget, out: Path, recipe: str | None, sets: dict[str, Any]
) -> tuple[Config, str]:
    """The recipe's model, optimizer and training settings with the scheme's data, pointed into `out`;
    and the recipe's name."""
    scheme_cfg = load_config(scheme)
    name = recipe or (GPU_RECIPE if torch.cuda.is_available() else CPU_RECIPE)
    overrides: dict[str, Any] = {
        "train.run_dir": str(out / "run"),
        "eval.val_dir": str(out / "val"),
        "eval.test_dir": str(out / "test"),
        "eval.val_size": 1000,
        "eval.test_size": 2000,
        # The test set is read here, in detail, once training is done.
        "eval.final_test": False,
        "train.eval_every": 10**9,
    }
    if budget.minutes:
        overrides.update({"train.minutes": budget.minutes, "train.steps": 10**9})
        overrides["train.eval_minutes"] = max(0.05, budget.minutes / budget.points)
    else:
        overrides.update({"train.minutes": 0.0, "train.steps": budget.steps})
        overrides["train.eval_every"] = max(1, budget.steps // budget.points)
    cfg = load_config(resolve_config(name), {**overrides, **sets})
    cfg.data = scheme_cfg.data
    cfg.name = scheme_cfg.name
    cfg.validate()
    return cfg, name


def train_recipe(cfg: Config, out: Path, progress: bool) -> dict[str, Any]:
    """Train the audit's run as the train command would: on a CPU, a recipe's train.processes ranks
    each take their share of the step. Returns the steps trained and the seconds they took."""
    from ..train.loop import train
    from ..train.processes import launch, plan_processes

    cfg, launches = plan_processes(cfg)
    if not launches:
        return train(cfg, progress=progress)
    # The ranks are commands of their own: they read the recipe, scheme and budget from a file.
    recipe = out / "recipe.yaml"
    with replacing(recipe) as tmp:
        tmp.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    code = launch(cfg, ["--config", str(recipe), *([] if progress else ["--no-progress"])])
    if code:
        # The ranks said why (a stop by a signal, or an error); the audit ends with their status.
        stopped = CaptchaStreamError(f"{out}: the audit's training ended with exit status {code}; no report written")
        stopped.exit_code = code
        raise stopped
    state = load_checkpoint(out / "run" / "last.pt")
    return {"step": state["step"], "elapsed": state["elapsed"]}


def machine() -> dict[str, Any]:
    """What the numbers were measured on: they mean nothing without it."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    versions = {name: _version(name) for name in ("captcha", "pillow", "captcha-stream")}
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        **versions,
        "platform": platform.platform(),
    }


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def audit_scheme(
    scheme: str | os.PathLike[str],
    budget: Budget,
    out: str | os.PathLike[str],
    recipe: str | None = None,
    sets: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train, validate on the clock, read the test set; the report's numbers (report.py writes them)."""
    out, scheme = Path(out), Path(scheme)
    if (out / "run" / "last.pt").exists():
        raise CaptchaStreamError(f"{out}: holds an audit already; choose another --out")
    cfg, name = recipe_config(scheme, budget, out, recipe, sets or {})
    print(f"auditing {scheme} for {budget.describe()} with the {name!r} recipe into {out}", file=sys.stderr)
    result = train_recipe(cfg, out, progress)
    points = curve(out / "run")
    best = out / "run" / "best.pt"
    ev = evaluate_checkpoint(best, progress=progress)
    res = ev.results
    low, high = metrics.full_string_interval(res.preds, res.labels)
    per_symbol = metrics.symbol_errors(res.preds, res.labels)
    by_length = metrics.accuracy_by_length(res.preds, res.labels)
    confused = metrics.confusions(res.preds, res.labels)
    return {
        "scheme": str(scheme),
        "name": cfg.name,
        "budget": {"minutes": budget.minutes, "steps": budget.steps},
        "recipe": name,
        "trained": {"steps": result["step"], "minutes": round(result["elapsed"] / 60, 2)},
        "machine": machine(),
        "time_to": time_to(points),
        "curve": [[round(p.minutes, 3), p.images, p.step, p.accuracy] for p in points],
        "test": {
            **res.summary(),
            "full_string_interval_95": [low, high],
            "best_step": ev.step,
            "decoding": ev.decoding,
        },
        "per_symbol": sorted(
            ({"symbol": s, "n": n, "error_rate": e} for s, (n, e) in per_symbol.items()),
            key=lambda r: (-r["error_rate"], r["symbol"]),
        ),
        "confused_pairs": [{"truth": a, "read": b, "count": c} for a, b, c in confused],
        "by_length": {str(k): {"n": n, "accuracy": a} for k, (n, a) in by_length.items()},
        "_readings": (ev.paths, res.labels, res.preds, res.confidences),
    }
