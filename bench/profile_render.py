#!/usr/bin/env python
"""Where a captcha's rendering time goes: cProfile of the package and of the fast path.

Renders the same labels with captcha's own ImageCaptcha.generate_image and with
Renderer (fast path), prints the unprofiled milliseconds per captcha and each one's top
functions by own time. Usage:
  python bench/profile_render.py [--config configs/stream.yaml] [--n 1000] [--top 14]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from captcha.image import ImageCaptcha  # noqa: E402

from captcha_stream.config import DataConfig, load_config  # noqa: E402
from captcha_stream.data.render import Renderer  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--top", type=int, default=14)
    args = p.parse_args()

    data = load_config(args.config).data if args.config else DataConfig()
    renderer = Renderer(data, seed=1)
    fonts, sizes = renderer.fonts, tuple(data.font_sizes)
    package = ImageCaptcha(width=data.width, height=data.height, fonts=fonts, font_sizes=sizes)
    labels = [renderer.random_label() for _ in range(args.n)]
    for name, render in (("package generate_image", package.generate_image), ("fast path", renderer.render)):
        for text in labels[:50]:  # warm caches (fonts, glyphs) before timing
            render(text)
        start = time.perf_counter()
        for text in labels:
            render(text)
        ms = (time.perf_counter() - start) * 1000 / len(labels)
        profile = cProfile.Profile()
        profile.enable()
        for text in labels:
            render(text)
        profile.disable()
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(args.top)
        table = [line for line in out.getvalue().splitlines() if line.strip()][3:]
        print(f"=== {name}: {ms:.3f} ms per captcha ({data.width}x{data.height}, unprofiled) ===")
        print("\n".join(table))


if __name__ == "__main__":
    main()
