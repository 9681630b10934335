"""Does taking the noise dots and curve out of a captcha help its reader? Paired reading, with and without.

The shipped classic36 reader, reading the same captchas re-rendered without the package's noise
(its 30 dots and one arc, drawn last in the text's colour), made 38 mistakes in 12000 instead of 60
(`zero_o_ceiling.py --without-noise`). The package trains a denoiser for that
(`python -m captcha_stream train-addon denoiser --config configs/classic36-denoiser.yaml --out D.pt`);
this script reads exported sets as exported and denoised, paired image by image (exact McNemar test
over all sets):

    python experiments/denoise.py --denoiser D.pt --reader captcha_stream/weights/classic36.pt \
        --data data/val-classic36 --data data/fresh-classic36 ...

`--clean-seeds S1,S2,...` instead of `--denoiser` reads the sets drawn again from their export seeds
without the noise: what a perfect denoiser would give. `--sheet FILE` with `--denoiser` draws
held-out captchas: noisy, denoised, clean. Putting a denoiser into a reader:
`python -m captcha_stream attach READER.pt OUT.pt --denoiser D.pt`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from captcha_stream.atomic import replacing  # noqa: E402
from captcha_stream.checkpoint import load_checkpoint  # noqa: E402
from captcha_stream.config import DataConfig, load_config  # noqa: E402
from captcha_stream.data.folder import FolderDataset
from captcha_stream.data.images import (
    load_image,  # noqa: E402
    preprocess_array,  # noqa: E402
)
from captcha_stream.data.pairs import held_out_pairs  # noqa: E402
from captcha_stream.data.render import Renderer  # noqa: E402
from captcha_stream.data.seeding import derive_seed  # noqa: E402
from captcha_stream.errors import CaptchaStreamError  # noqa: E402
from captcha_stream.eval.metrics import mcnemar_p  # noqa: E402
from captcha_stream.model.denoiser import Denoiser
from captcha_stream.reader import stages  # noqa: E402
from captcha_stream.reader.build import model_from_checkpoint  # noqa: E402
from captcha_stream.reader.denoised import load_denoiser  # noqa: E402
from captcha_stream.reader.recognizer import Recognizer  # noqa: E402
from captcha_stream.train.addons import HELD_OUT, denoise  # noqa: E402


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
    quiet, seed = Renderer(data, noise=False), args.clean_seeds[k]
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
    # The comparison is with what the reader makes of the images as exported (captcha_stream/weights/classic36.pt
    # carries a denoiser of its own).
    own = "denoiser" in stages.names_in(load_checkpoint(args.reader))
    model, cfg, _ = model_from_checkpoint(args.reader, without=["denoiser"] if own else [])
    reader = Recognizer(model, cfg)
    if own:
        print(f"{args.reader}: reading without its own denoiser", file=sys.stderr)
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


def sheet(args: argparse.Namespace, data: DataConfig, path: str, rows: int = 8) -> None:
    """Held-out captchas in three columns: noisy, denoised, clean."""
    model = load_denoiser(args.denoiser)
    noisy, clean = held_out_pairs(data, derive_seed(args.seed, HELD_OUT), rows)
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
    parser.add_argument("--seed", type=int, default=19, help="with --sheet: the denoiser's training seed")
    parser.add_argument(
        "--denoiser", help="a denoiser (train-addon file or checkpoint): read --data with it, or --sheet"
    )
    parser.add_argument("--reader", help="with --denoiser: the checkpoint that reads")
    parser.add_argument("--data", action="append", help="with --reader: a labelled folder (repeatable)")
    parser.add_argument(
        "--clean-seeds",
        type=lambda text: [int(seed) for seed in text.split(",")],
        help="with --reader, instead of --denoiser: the --data sets' export seeds (S1,S2,...), to read them noise-free",
    )
    parser.add_argument("--show", action="store_true", help="with --reader: list the strings only one way reads right")
    parser.add_argument("--sheet", help="with --denoiser: a PNG of held-out captchas, noisy / denoised / clean")
    args = parser.parse_args()
    try:
        data = load_config(args.config).data
        if args.denoiser and args.sheet:
            sheet(args, data, args.sheet)
        if args.reader:
            if not args.data or not (args.denoiser or args.clean_seeds):
                parser.error("--reader needs --data DIR (repeatable) and --denoiser or --clean-seeds")
            read(args)
        elif not args.sheet:
            parser.error("needs --reader (with --data and --denoiser or --clean-seeds) or --denoiser with --sheet")
    except CaptchaStreamError as exc:
        parser.exit(1, f"{parser.prog}: {exc}\n")


if __name__ == "__main__":
    main()
