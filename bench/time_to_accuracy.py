#!/usr/bin/env python
"""Time to accuracy: train one or more recipes from scratch for a wall-time budget and report when
each first reads 50/80/90/95% of the validation set, in minutes and in images seen.

Each recipe is `python -m captcha_stream train --minutes M` (the schedule fitted to the budget),
validated on a fixed schedule of wall-clock moments (train.eval_minutes). Two or more recipes run
side by side, each pinned to its own core with one thread and rendering in-process, so machine
noise hits them alike and the ratio is honest; a single recipe gets the whole machine. The output
keeps throughput (images/s: the machine and the recipe's arithmetic) apart from sample efficiency
(images to X%: what the recipe learns from each image), so a gain is attributed to one or the other.

  python bench/time_to_accuracy.py --minutes 12 --recipe new=configs/cpu.yaml
  python bench/time_to_accuracy.py --minutes 12 --recipe new=configs/cpu.yaml --recipe old=configs/cpu-v1.yaml
  python bench/time_to_accuracy.py --recipe a=configs/cpu.yaml \
      --recipe b=configs/cpu.yaml,model.cnn_channels=[8,16,32,64],optim.lr=0.003

Writes OUT.json and OUT.png (default bench/results/time_to_accuracy) and prints a table. The
FLOPs of one training image and this machine's sustained matrix-multiply FLOP/s are measured too,
so "achieved against possible" is on record.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from captcha_stream.device import cpu_has_native_bf16, precision  # noqa: E402
from captcha_stream.eval.plot import read_records  # noqa: E402
from captcha_stream.eval.time_to import curve, draw_time_curves, time_to  # noqa: E402


def launch(name: str, config: str, sets: list[str], args: argparse.Namespace, core: int | None) -> subprocess.Popen:
    run_dir = Path(args.out).parent / "runs" / f"{Path(args.out).name}-{name}"
    command = [sys.executable, "-m", "captcha_stream", "train", "--config", config, "--minutes", str(args.minutes)]
    command += ["--run-dir", str(run_dir), "--no-progress", "--set", f"train.eval_minutes={args.eval_minutes}"]
    # Validation by the clock only, on a set shared by every recipe.
    command += ["--set", "train.eval_every=100000000", "--set", f"eval.val_size={args.val_size}"]
    command += ["--set", f"eval.val_dir={args.val_dir}"]
    env = dict(os.environ)
    if core is not None:
        # One core, one thread, one process: a recipe's train.processes would share the core it is pinned to.
        command += ["--set", "train.num_workers=0", "--set", "train.processes=1"]
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    for s in sets:
        command += ["--set", s]
    if run_dir.exists() and not args.resume:
        raise SystemExit(f"{run_dir}: exists; remove it or pass --resume to read it again")
    if args.resume:
        return subprocess.Popen(["true"])
    print(f"{name}: {' '.join(command)}", flush=True)
    pin = (lambda: os.sched_setaffinity(0, {core})) if core is not None else None
    return subprocess.Popen(command, cwd=ROOT, env=env, preexec_fn=pin)


def summarize(name: str, run_dir: Path) -> dict:
    records = read_records(run_dir / "metrics.jsonl")
    rates = [r["img_per_s"] for r in records if "img_per_s" in r]
    points = curve(run_dir)
    test = next((r for r in reversed(records) if r.get("event") == "test"), None)
    return {
        "name": name,
        "run_dir": str(run_dir),
        "img_per_s_median": round(statistics.median(rates), 1) if rates else None,
        "steps": max((r["step"] for r in records if "step" in r), default=0),
        "time_to": time_to(points),
        "curve": [[round(p.minutes, 3), p.images, p.step, p.accuracy] for p in points],
        "test": None if test is None else {"best_step": test["best_step"], **test["test"]},
        "test_tta": None if test is None else test.get("test_tta"),
    }


def flops_per_image(config: str, sets: list[str]) -> float:
    """Floating-point operations of one training image: forward and backward of the recipe's model."""
    from torch.utils.flop_counter import FlopCounterMode

    from captcha_stream.config import load_config, parse_override
    from captcha_stream.model.codec import Codec, ctc_loss
    from captcha_stream.model.crnn import CRNN

    cfg = load_config(ROOT / config, dict(parse_override(s) for s in sets))
    model = CRNN(cfg.data, cfg.model, Codec(cfg.data.charset).num_classes)
    batch = 4
    images = torch.zeros(batch, cfg.data.channels, cfg.data.height, cfg.data.width, dtype=torch.uint8)
    targets, lengths = torch.ones(batch * 5, dtype=torch.long), torch.full((batch,), 5)
    with FlopCounterMode(display=False) as counter:
        ctc_loss(model(images), targets, lengths).backward()
    return counter.get_total_flops() / batch


def matmul_flops(dtype: torch.dtype, threads: int, size: int = 1024, seconds: float = 3.0) -> float:
    """Sustained FLOP/s of square matrix products: the most this machine's cores do in practice."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        runs += 1
    return 2 * size**3 * runs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", action="append", required=True, metavar="NAME=CONFIG[,KEY=VALUE...]")
    parser.add_argument("--minutes", type=float, default=12.0)
    parser.add_argument("--eval-minutes", type=float, default=1.0, help="validate every this many minutes")
    parser.add_argument("--val-size", type=int, default=1000)
    parser.add_argument("--val-dir", default="data/val-1000")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "time_to_accuracy"))
    parser.add_argument("--resume", action="store_true", help="only read runs already made into the report")
    args = parser.parse_args()
    recipes = []
    for spec in args.recipe:
        name, _, rest = spec.partition("=")
        # A comma starts a new KEY=VALUE only where a KEY= follows it: list values keep their commas.
        config, *sets = re.split(r",(?=[A-Za-z_][\w.]*=)", rest)
        recipes.append((name, config, sets))
    side_by_side = len(recipes) > 1
    if side_by_side and len(recipes) > (os.cpu_count() or 1):
        raise SystemExit(f"{len(recipes)} recipes side by side need as many cores; this machine has {os.cpu_count()}")
    started = time.time()
    procs = [launch(n, c, s, args, i if side_by_side else None) for i, (n, c, s) in enumerate(recipes)]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"a recipe's training failed (exit status {codes})")
    out = Path(args.out)
    results = [summarize(n, out.parent / "runs" / f"{out.name}-{n}") for n, _, _ in recipes]
    threads = 1 if side_by_side else (os.cpu_count() or 1)
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "threads_per_recipe": threads,
        "torch": torch.__version__,
        # bf16 autocast (train.amp) runs only where the CPU has native bf16 and it measures faster.
        "native_bf16": cpu_has_native_bf16(),
        "train_arithmetic": precision(torch.device("cpu"), True)[0],
        "matmul_gflops_fp32": round(matmul_flops(torch.float32, threads) / 1e9, 1),
        "matmul_gflops_bf16": round(matmul_flops(torch.bfloat16, threads) / 1e9, 1),
    }
    for result, (_, config, sets) in zip(results, recipes):
        flops = flops_per_image(config, sets)
        result["gflop_per_train_image"] = round(flops / 1e9, 3)
        if result["img_per_s_median"]:
            result["achieved_gflops"] = round(flops * result["img_per_s_median"] / 1e9, 1)
    report = {
        "minutes": args.minutes,
        "eval_minutes": args.eval_minutes,
        "val_size": args.val_size,
        "side_by_side": side_by_side,
        "wall_minutes": round((time.time() - started) / 60, 1),
        "machine": machine,
        "recipes": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    from captcha_stream.eval.time_to import Point

    curves = {r["name"]: [Point(*p) for p in r["curve"]] for r in results}
    draw_time_curves(curves, out.with_suffix(".png"), f"{args.minutes:g}-minute budget, validation full-string")
    print_table(results, machine)
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.png')}")


def print_table(results: list[dict], machine: dict) -> None:
    levels = ["50%", "80%", "90%", "95%"]
    print(f"\n{'recipe':<14}{'img/s':>7}{'GFLOP/s':>9}  " + "  ".join(f"{lv:>14}" for lv in levels) + "  test")
    for r in results:
        cells = []
        for level in levels:
            hit = r["time_to"][level]
            cells.append(f"{hit['minutes']:5.1f}m {hit['images'] / 1000:5.0f}k" if hit else f"{'-':>14}")
        test = f"{r['test']['full_string_accuracy']:.2%}" if r["test"] else "-"
        if r.get("test_tta"):
            test += f" ({r['test_tta']['full_string_accuracy']:.2%} with shifts)"
        print(
            f"{r['name']:<14}{r['img_per_s_median'] or 0:>7.0f}{r.get('achieved_gflops', 0):>9.1f}  "
            + "  ".join(cells)
            + f"  {test}"
        )
    print(
        f"(machine: {machine['threads_per_recipe']} thread(s) per recipe sustain {machine['matmul_gflops_fp32']} "
        f"GFLOP/s fp32, {machine['matmul_gflops_bf16']} bf16 in matrix products; native bf16: "
        f"{'yes' if machine['native_bf16'] else 'no'}; train.amp trains in {machine['train_arithmetic']})"
    )


if __name__ == "__main__":
    main()
