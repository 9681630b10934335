#!/usr/bin/env python
"""Inference speed and accuracy: PyTorch eager vs ONNX Runtime (vs ddddocr when installed).

Single-image latency (median, p95, including preprocessing and decoding) and batched
throughput (images/s), measured side by side in one run, plus each reader's full-string and
case-insensitive accuracy on the same frozen set. Usage:
  python bench/inference.py [--checkpoint captcha_stream/weights/captcha62.pt] [--data DIR] [--n 500] [--batch 64]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from captcha_stream.checkpoint import load_checkpoint  # noqa: E402
from captcha_stream.cli import find_checkpoint  # noqa: E402
from captcha_stream.data.folder import FolderDataset  # noqa: E402
from captcha_stream.data.frozen import ensure_set  # noqa: E402
from captcha_stream.data.images import load_image  # noqa: E402
from captcha_stream.eval import metrics  # noqa: E402
from captcha_stream.reader import stages  # noqa: E402
from captcha_stream.reader.build import model_from_checkpoint  # noqa: E402
from captcha_stream.reader.recognizer import Recognizer  # noqa: E402
from captcha_stream.tools.slim import slim_checkpoint  # noqa: E402


def latency(read, images, repeats):
    times = []
    for i in range(repeats):
        img = images[i % len(images)]
        t = time.perf_counter()
        read([img])
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


def throughput(read, images, batch):
    t = time.perf_counter()
    for start in range(0, len(images), batch):
        read(images[start : start + batch])
    return len(images) / (time.perf_counter() - t)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint")
    p.add_argument("--data", help="labelled folder (default: the checkpoint config's frozen test set)")
    p.add_argument("--n", type=int, default=500, help="images for throughput and accuracy")
    p.add_argument("--repeats", type=int, default=200, help="single-image latency samples")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--out", default="bench/results/inference.json")
    return p.parse_args()


# A reader under test: a batch of images in, their texts out.
Read = Callable[[list], list[str]]


def texts(reader: Recognizer, batch_size: int) -> Read:
    return lambda batch: [p.text for p in reader.predict(batch, batch_size=batch_size)]


def pytorch_readers(whole: Recognizer, ckpt: Path, state: dict, batch_size: int) -> dict[str, Read]:
    """The whole reader, then the stack less its outermost stages, one more at a time, down to the
    CRNN alone: each stage (captcha_stream/reader/stages.py) is measured against what it wraps."""
    readers = {"pytorch": texts(whole, batch_size)}
    names = stages.names_in(state)
    for k in range(len(names) - 1, -1, -1):
        left_out = names[k:]
        inner = Recognizer(model_from_checkpoint(ckpt, without=left_out)[0], whole.cfg)
        readers[f"pytorch, without {' + '.join(left_out)}"] = texts(inner, batch_size)
    return readers


def onnx_readers(ckpt: Path, state: dict, batch_size: int) -> dict[str, Read]:
    try:
        from captcha_stream.reader.onnx import export_onnx

        tmp = Path(tempfile.mkdtemp())
        onnx_path = tmp / "model.onnx"
        # ONNX exports the stack less the stages it cannot carry.
        refused = stages.not_for_onnx(state)
        export_onnx(slim_checkpoint(ckpt, tmp / "reader.pt", without=refused) if refused else ckpt, onnx_path)
        name = f"onnxruntime, without {' + '.join(refused)}" if refused else "onnxruntime"
        return {name: texts(Recognizer.from_checkpoint(onnx_path), batch_size)}
    except Exception as exc:  # noqa: BLE001 - the extra is optional; say why it is missing
        print(f"ONNX Runtime skipped: {exc}", file=sys.stderr)
        return {}


def ddddocr_readers() -> dict[str, Read]:
    try:
        import ddddocr
    except ImportError:
        print("ddddocr skipped: not installed (pip install ddddocr)", file=sys.stderr)
        return {}
    ocr = ddddocr.DdddOcr(show_ad=False)

    def dddd(batch: list) -> list[str]:
        out = []
        for img in batch:
            buf = io.BytesIO()
            img.save(buf, format="PNG")  # ddddocr takes encoded bytes
            out.append(ocr.classification(buf.getvalue()))
        return out

    return {"ddddocr": dddd}


def measure(read: Read, images: list, truths: list[str], args: argparse.Namespace) -> dict:
    read(images[:8])  # warm-up
    med, p95 = latency(read, images, args.repeats)
    rate = throughput(read, images, args.batch)
    preds = read(images)
    return {
        "latency_ms_median": med,
        "latency_ms_p95": p95,
        "batched_img_per_s": rate,
        "full_string_accuracy": metrics.full_string_accuracy(preds, truths),
        "case_insensitive_accuracy": metrics.case_insensitive_accuracy(preds, truths),
    }


def print_table(results: dict[str, dict]) -> None:
    print(f"{'reader':<40}{'latency ms (median/p95)':>26}{'batched img/s':>15}{'full-string':>13}{'case-insens.':>14}")
    for name, r in results.items():
        lat = f"{r['latency_ms_median']:.2f} / {r['latency_ms_p95']:.2f}"
        print(
            f"{name:<40}{lat:>26}{r['batched_img_per_s']:>15.0f}{r['full_string_accuracy']:>13.2%}"
            f"{r['case_insensitive_accuracy']:>14.2%}"
        )


def main() -> None:
    args = parse_args()
    ckpt = find_checkpoint(args.checkpoint)
    whole = Recognizer.from_checkpoint(ckpt)
    cfg = whole.cfg
    data_dir = (
        Path(args.data)
        if args.data
        else ensure_set(cfg.eval.test_dir, cfg.eval.test_size, cfg.data, cfg.eval.test_seed)
    )
    ds = FolderDataset(data_dir, cfg.data)
    n = min(args.n, len(ds))
    images = [load_image(ds.path(i)) for i in range(n)]
    truths = [ds.rows[i][1] for i in range(n)]

    state = load_checkpoint(ckpt)
    readers = {
        **pytorch_readers(whole, ckpt, state, args.batch),
        **onnx_readers(ckpt, state, args.batch),
        **ddddocr_readers(),
    }
    results = {name: measure(read, images, truths, args) for name, read in readers.items()}
    print(f"\n{ckpt} on {data_dir} ({n} images, batch {args.batch}), {os.cpu_count()} cores")
    print_table(results)
    summary = {
        "checkpoint": str(ckpt),
        "data": str(data_dir),
        "n": n,
        "batch": args.batch,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
