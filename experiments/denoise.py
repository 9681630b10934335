"""Take the noise dots and curve out of a captcha before reading it: a denoiser, and whether it helps.

Session 13 found that the shipped classic36 reader, reading the same captchas re-rendered without the
package's noise (its 30 dots and one arc, drawn last in the text's colour), made 38 mistakes in 12000
instead of 60 (`zero_o_ceiling.py --without-noise`). The renderer makes that pair for any captcha
(`zero_o_ceiling.quiet_renderer`: same seed, same draws, no noise), so a network can learn to remove
the noise from an endless stream of (noisy, clean) pairs, and the reader can read its output.

Training (one DataLoader worker renders pairs, the main process trains on full-height crops):

    python experiments/denoise.py --steps 6000 --save runs/denoise/denoiser.pt --json results/denoise.json

Reading exported sets with and without it, paired image by image (exact McNemar test over all sets):

    python experiments/denoise.py --denoiser runs/denoise/denoiser.pt --reader models/classic36.pt \
        --data data/val-classic36 --data data/fresh-classic36 ...

`--clean-seeds S1,S2,...` instead of `--denoiser` reads the sets drawn again from their export seeds
without the noise: what a perfect denoiser would give. `--attach OUT` with `--denoiser` and `--reader`
writes the reader's checkpoint with the denoiser in front of it (captcha_stream/denoiser.py):
evaluate.py and Recognizer then read denoised images. `--sheet FILE` with `--denoiser` draws held-out
captchas: noisy, denoised, clean.
Written for issue 8 (session 19); results in models/README.md, "classic36 in session 19".
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from paired_check import mcnemar_p  # noqa: E402
from zero_o_ceiling import quiet_renderer, warmup_cosine  # noqa: E402

from captcha_stream.atomic import replacing  # noqa: E402
from captcha_stream.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from captcha_stream.config import DataConfig, load_config  # noqa: E402
from captcha_stream.data.folder import FolderDataset
from captcha_stream.data.images import (
    load_image,  # noqa: E402
    preprocess_array,  # noqa: E402
)
from captcha_stream.data.render import Renderer  # noqa: E402
from captcha_stream.data.seeding import derive_seed  # noqa: E402
from captcha_stream.errors import CaptchaStreamError  # noqa: E402
from captcha_stream.model.denoiser import Denoiser
from captcha_stream.reader.denoised import Denoised, attach  # noqa: E402
from captcha_stream.reader.recognizer import Recognizer  # noqa: E402


def render_pair(plain: Renderer, quiet: Renderer, seed: int, index: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Captcha `index` of the sequence `seed`, grayscale, with and without its noise."""
    noisy, label = plain.sample_at(seed, index)
    clean, same = quiet.sample_at(seed, index)
    if same != label:  # the quiet renderer must make exactly the same draws before the noise
        raise CaptchaStreamError(f"pair {seed}/{index}: labels differ ({label!r}, {same!r})")
    return np.asarray(noisy.convert("L")), np.asarray(clean.convert("L")), label


class PairStream(IterableDataset):
    """Batches of (noisy, clean) uint8 crops, full height, `crop` columns, from new captchas."""

    def __init__(self, data: DataConfig, seed: int, batch_size: int, crop: int) -> None:
        self.data, self.seed, self.batch_size, self.crop = data, seed, batch_size, crop

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        seed = derive_seed(self.seed, info.id if info else 0)
        plain, quiet = Renderer(self.data), quiet_renderer(self.data)
        rng = np.random.default_rng(seed)
        index = 0
        while True:
            noisy, clean = [], []
            for _ in range(self.batch_size):
                a, b, _ = render_pair(plain, quiet, seed, index)
                index += 1
                x = int(rng.integers(0, a.shape[1] - self.crop + 1))
                noisy.append(a[:, x : x + self.crop])
                clean.append(b[:, x : x + self.crop])
            yield torch.from_numpy(np.stack(noisy))[:, None], torch.from_numpy(np.stack(clean))[:, None]


def held_out(data: DataConfig, seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    plain, quiet = Renderer(data), quiet_renderer(data)
    pairs = [render_pair(plain, quiet, seed, i)[:2] for i in range(n)]
    return tuple(torch.from_numpy(np.stack(side))[:, None] for side in zip(*pairs))  # type: ignore[return-value]


@torch.no_grad()
def denoise(model: Denoiser, images: torch.Tensor, batch: int = 200) -> torch.Tensor:
    """uint8 (N, 1, H, W) -> denoised uint8, in evaluation mode."""
    model.eval()
    return torch.cat([model.clean(images[i : i + batch]) for i in range(0, len(images), batch)])


def errors(model: nn.Module, noisy: torch.Tensor, clean: torch.Tensor) -> dict[str, float]:
    """Root-mean-square error (0-255) against the clean images, before and after denoising."""
    out = denoise(model, noisy).float()
    return {
        "rms_noisy": float((noisy.float() - clean.float()).pow(2).mean().sqrt()),
        "rms_denoised": float((out - clean.float()).pow(2).mean().sqrt()),
    }


def train(args: argparse.Namespace, data: DataConfig) -> None:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    model = Denoiser(args.width)
    val_noisy, val_clean = held_out(data, derive_seed(args.seed, 10**6), args.val_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)

    loader = DataLoader(
        PairStream(data, args.seed, args.batch_size, args.crop), batch_size=None, num_workers=1, prefetch_factor=8
    )
    curve, t0 = [], time.time()
    for step, (noisy, clean) in enumerate(loader, start=1):
        for group in optimizer.param_groups:
            group["lr"] = warmup_cosine(step - 1, args.lr, args.steps, warmup=200)
        model.train()
        loss = nn.functional.mse_loss(model(noisy), clean.float() / 255)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % args.eval_every == 0 or step == args.steps:
            point = {"step": step, "train_loss": float(loss.detach()), **errors(model, val_noisy, val_clean)}
            point["minutes"] = round((time.time() - t0) / 60, 2)
            curve.append(point)
            print(json.dumps(point), flush=True)
            if args.save:
                with replacing(args.save) as tmp:
                    torch.save({"model": model.state_dict(), "width": args.width, "point": point}, tmp)
        if step >= args.steps:
            break
    if args.json:
        with replacing(args.json) as tmp:
            tmp.write_text(json.dumps({"args": vars(args), "curve": curve}, indent=1))


def load_denoiser(path: str) -> Denoiser:
    """A denoiser saved by --save (or a checkpoint's denoiser), in evaluation mode."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        saved = saved.get("denoiser", saved)
        model = Denoiser(int(saved["width"]))
        model.load_state_dict(saved["model"])
    except (FileNotFoundError, IsADirectoryError):
        raise CaptchaStreamError(f"{path}: no such file") from None
    except (AttributeError, KeyError, TypeError, ValueError, RuntimeError, pickle.UnpicklingError):
        raise CaptchaStreamError(f"{path}: holds no denoiser weights") from None
    return model.eval()


def cleaned_images(
    args: argparse.Namespace,
    model: Denoiser | None,
    data: DataConfig,
    gray: list[np.ndarray],
    labels: list[str],
    k: int,
) -> list[np.ndarray]:
    """Folder k's images as the reader will get them: denoised, or drawn again without noise (--clean-seeds)."""
    if model is not None:
        return list(denoise(model, torch.from_numpy(np.stack(gray))[:, None])[:, 0].numpy())
    quiet, seed = quiet_renderer(data), args.clean_seeds[k]
    out = []
    for i, label in enumerate(labels):
        image, drawn = quiet.sample_at(seed, i)
        if drawn != label:
            raise CaptchaStreamError(
                f"{args.data[k]}: image {i} is {label!r}, seed {seed} draws {drawn!r}: wrong seed?"
            )
        out.append(np.asarray(image.convert("L")))
    return out


def read(args: argparse.Namespace) -> None:
    """The reader on each folder as exported and cleaned; paired counts and McNemar over all."""
    reader = Recognizer.from_checkpoint(args.reader)
    if isinstance(reader.model, Denoised):
        # The comparison is with what the reader makes of the images as exported
        # (models/classic36.pt carries a denoiser since session 19).
        print(f"{args.reader}: reading without its own denoiser", file=sys.stderr)
        reader = Recognizer(reader.model.reader, reader.cfg)
    model = None if args.clean_seeds else load_denoiser(args.denoiser)
    if args.clean_seeds and len(args.clean_seeds) != len(args.data):
        raise CaptchaStreamError(f"--clean-seeds: {len(args.clean_seeds)} seeds for {len(args.data)} --data folders")
    only_plain = only_cleaned = 0
    for k, folder in enumerate(args.data):
        dataset = FolderDataset(folder, reader.cfg.data)
        labels = [label for _, label in dataset.rows]
        # What the reader itself would make of each file: grey, at the config's size.
        gray = [preprocess_array(load_image(dataset.path(i)), reader.cfg.data)[0] for i in range(len(dataset))]
        cleaned = cleaned_images(args, model, reader.cfg.data, gray, labels, k)
        right, texts = {}, {}
        for kind, arrays in (("plain", gray), ("cleaned", cleaned)):
            texts[kind] = [p.text for p in reader.predict([Image.fromarray(a, mode="L") for a in arrays])]
            right[kind] = [p == t for p, t in zip(texts[kind], labels)]
        if args.show:
            for i, label in enumerate(labels):
                if right["plain"][i] != right["cleaned"][i]:
                    print(
                        f"  {dataset.path(i).name}: {label}, read {texts['plain'][i]} as exported, "
                        f"{texts['cleaned'][i]} cleaned"
                    )
        a = sum(p and not d for p, d in zip(right["plain"], right["cleaned"]))
        b = sum(d and not p for p, d in zip(right["plain"], right["cleaned"]))
        only_plain, only_cleaned = only_plain + a, only_cleaned + b
        print(
            f"{folder}: wrong as exported {right['plain'].count(False)}, cleaned {right['cleaned'].count(False)}; "
            f"only exported right {a}, only cleaned right {b}",
            flush=True,
        )
    p = mcnemar_p(only_plain, only_cleaned)
    print(f"all: only exported right {only_plain}, only cleaned right {only_cleaned}; exact McNemar p = {p:.4f}")


def attach_to(args: argparse.Namespace) -> None:
    """Write the reader's checkpoint with the denoiser in front of it (captcha_stream/denoiser.py)."""
    model = load_denoiser(args.denoiser)
    state = attach(load_checkpoint(args.reader), model.state_dict(), model.width)
    print(f"wrote {save_checkpoint(state, args.attach, keep_previous=False)}")


def sheet(args: argparse.Namespace, data: DataConfig, path: str, rows: int = 8) -> None:
    """Held-out captchas in three columns: noisy, denoised, clean."""
    model = load_denoiser(args.denoiser)
    noisy, clean = held_out(data, derive_seed(args.seed, 10**6), rows)
    out = denoise(model, noisy)
    h, w = noisy.shape[2:]
    page = Image.new("L", (3 * w + 20, rows * (h + 10)), 255)
    for r in range(rows):
        for c, side in enumerate((noisy, out, clean)):
            page.paste(Image.fromarray(side[r, 0].numpy(), mode="L"), (c * (w + 10), r * (h + 10)))
    with replacing(path) as tmp:
        page.save(tmp, format="PNG")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/classic36.yaml", help="the data the captchas come from")
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--crop", type=int, default=80, help="columns of each training crop (full height)")
    parser.add_argument("--width", type=int, default=24, help="channels of the denoiser")
    parser.add_argument("--lr", type=float, default=0.002)
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training")
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--val-size", type=int, default=500, help="held-out captchas (full width)")
    parser.add_argument("--save", help="write the denoiser's weights here at every evaluation")
    parser.add_argument("--json", help="write the held-out curve here")
    parser.add_argument("--denoiser", help="a saved denoiser: read --data with it, or draw --sheet")
    parser.add_argument("--reader", help="with --denoiser: the checkpoint that reads")
    parser.add_argument("--data", action="append", help="with --reader: a labelled folder (repeatable)")
    parser.add_argument(
        "--clean-seeds",
        type=lambda text: [int(seed) for seed in text.split(",")],
        help="with --reader, instead of --denoiser: the --data sets' export seeds (S1,S2,...), to read them noise-free",
    )
    parser.add_argument("--show", action="store_true", help="with --reader: list the strings only one way reads right")
    parser.add_argument("--attach", metavar="OUT", help="write --reader's checkpoint with --denoiser in front to OUT")
    parser.add_argument("--sheet", help="with --denoiser: a PNG of held-out captchas, noisy / denoised / clean")
    args = parser.parse_args()
    try:
        data = load_config(args.config).data
        if args.denoiser and args.sheet:
            sheet(args, data, args.sheet)
        if args.attach:
            if not (args.denoiser and args.reader):
                parser.error("--attach needs --denoiser and --reader")
            attach_to(args)
        elif args.reader:
            if not args.data or not (args.denoiser or args.clean_seeds):
                parser.error("--reader needs --data DIR (repeatable) and --denoiser or --clean-seeds")
            read(args)
        elif not args.denoiser:
            train(args, data)
    except CaptchaStreamError as exc:
        parser.exit(1, f"{parser.prog}: {exc}\n")


if __name__ == "__main__":
    main()
