#!/usr/bin/env python
"""Images/s of the rendering pipeline, each way measured side by side in one run.

  (a) captcha's own ImageCaptcha.generate_image
  (b) Renderer(fast=False).sample: seeded, through the package's code
  (c) Renderer(fast=True).sample: seeded, the pixel-identical fast path
  (d) CaptchaStream (fast path) through a DataLoader with 0, 1 and 2 workers (rendering + preprocessing)

Rounds are interleaved (a, b, c0, c1, c2, a, b, ...) so machine noise hits all of them
alike; the table reports the median over rounds. Usage:
  python bench/stream_throughput.py [--config configs/stream.yaml] [--n 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from captcha.image import ImageCaptcha  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from captcha_stream.config import load_config  # noqa: E402
from captcha_stream.data.render import Renderer  # noqa: E402
from captcha_stream.data.stream import CaptchaStream, CtcCollate  # noqa: E402
from captcha_stream.model.codec import Codec  # noqa: E402


def time_package(data, n):
    gen = ImageCaptcha(width=data.width, height=data.height, font_sizes=tuple(data.font_sizes))
    labels = [Renderer(data, seed=i).random_label() for i in range(n)]
    t = time.perf_counter()
    for label in labels:
        gen.generate_image(label)
    return n / (time.perf_counter() - t)


def time_renderer(data, n, fast):
    r = Renderer(data, seed=0, fast=fast)
    t = time.perf_counter()
    for _ in range(n):
        r.sample()
    return n / (time.perf_counter() - t)


def time_loader(data, n, workers, batch=32):
    ds = CaptchaStream(data, seed=0, num_samples=n + 2 * batch * max(workers, 1), block_size=batch)
    loader = DataLoader(ds, batch_size=batch, num_workers=workers, collate_fn=CtcCollate(Codec(data.charset)))
    it = iter(loader)
    # Worker start-up is paid once per training run, not per image: start the clock after the first batches.
    for _ in range(max(workers, 1)):
        next(it)
    seen = 0
    t = time.perf_counter()
    for b in it:
        seen += len(b.labels)
        if seen >= n:
            break
    rate = seen / (time.perf_counter() - t)
    del it
    return rate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None)
    p.add_argument("--n", type=int, default=300, help="images per measurement")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default="bench/results/stream_throughput.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    data = load_config(args.config).data
    cases = {
        "package_generate_image": lambda: time_package(data, args.n),
        "renderer_package_path": lambda: time_renderer(data, args.n, False),
        "renderer_fast_path": lambda: time_renderer(data, args.n, True),
        "loader_0_workers": lambda: time_loader(data, args.n, 0),
        "loader_1_worker": lambda: time_loader(data, args.n, 1),
        "loader_2_workers": lambda: time_loader(data, args.n, 2),
    }
    runs: dict[str, list[float]] = {k: [] for k in cases}
    for r in range(args.rounds):
        for name, fn in cases.items():
            runs[name].append(fn())
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    med = {k: statistics.median(v) for k, v in runs.items()}
    base = med["package_generate_image"]
    print(
        f"\n{data.width}x{data.height}, lengths {data.min_length}-{data.max_length}, {os.cpu_count()} cores, "
        f"median of {args.rounds} rounds of {args.n} images"
    )
    print(f"{'path':<26}{'images/s':>10}{'vs package':>12}")
    for k, v in med.items():
        print(f"{k:<26}{v:>10.1f}{v / base:>11.2f}x")
    result = {
        "config": args.config,
        "width": data.width,
        "height": data.height,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "rounds": runs,
        "median_img_per_s": med,
        "package_img_per_s": base,
        "fast_img_per_s": med["renderer_fast_path"],
        "ratio": med["renderer_fast_path"] / base,
        "ratio_vs_seeded_package_path": med["renderer_fast_path"] / med["renderer_package_path"],
        "loader_2_vs_1_workers": med["loader_2_workers"] / med["loader_1_worker"],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"fast path / package: {result['ratio']:.2f}x; DataLoader 2 vs 1 workers: "
        f"{result['loader_2_vs_1_workers']:.2f}x"
    )
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
