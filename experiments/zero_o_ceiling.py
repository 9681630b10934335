"""How well can anything tell a lone 0 from a lone O, as the captcha package draws them?

classic36's remaining errors are mostly 0<->O swaps (docs/ablations.md, "Why 0/O ... is what
is left"). This script asks whether that is the reader's fault or the renderer's: it trains a
small CNN on a stream of single glyphs made by the package's own `_draw_character` (seeded,
draw for draw the package's code), with everything a 170x80 classic36 captcha does to one
character (random font size 42/50/56, offsets, rotation, quad warp, the luminance mask used
for pasting, the colours, the horizontal squeeze of the whole image when the glyphs are wider
than the canvas, and the SMOOTH filter) but with nothing else: no noise curve, no dots, no
overlapping neighbours. Every training batch is new, so the curve measures how much of the
0/O question the pixels answer, not memorisation; the held-out set is fixed by its seed.

Its accuracy is an optimistic estimate of what a reader of whole captchas can reach on these
two symbols (clutter only takes information away), so if it levels off near the full reader's
0/O accuracy, more training of the full reader cannot close the gap.

    python experiments/zero_o_ceiling.py --steps 12000 --json results/zero-o-ceiling.json
    python experiments/zero_o_ceiling.py --context --jitter 6 --init CLASSIFIER.pt --seed 7 --lr 0.0007 ...
    python experiments/zero_o_ceiling.py --reader captcha_stream/weights/classic36.pt --data data/val-classic36 ...

The second form goes on training a classifier from saved weights (a --save file, or the second
look a checkpoint carries) with a new cosine schedule; a new --seed gives it new glyphs and a new
held-out set, on which the starting weights are scored first (step 0). The third form prints,
for comparison, how a full reader does on the 0s and Os of labelled sets; `--reader CK
--without-noise 2000003,1000003` re-renders exported sets from their seeds with and without the
noise dots and curve and reads both.

One DataLoader worker renders (about 0.4 ms a glyph) while the main process trains.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from captcha_stream.atomic import replacing  # noqa: E402
from captcha_stream.config import load_config  # noqa: E402
from captcha_stream.data.glyphs import GlyphMaker as ContextGlyphMaker  # noqa: E402
from captcha_stream.data.render import Renderer  # noqa: E402
from captcha_stream.data.seeding import (  # noqa: E402
    SeededSecrets,
    derive_seed,
    seeded_captcha_class,
)
from captcha_stream.errors import CaptchaStreamError  # noqa: E402
from captcha_stream.model.glyph_classifier import CROP_H, CROP_W, glyph_classifier, normalize  # noqa: E402
from captcha_stream.reader.second_look import load_classifier  # noqa: E402
from captcha_stream.train.addons import classify  # noqa: E402
from captcha_stream.train.schedule import warmup_cosine  # noqa: E402

SYMBOLS = "0O"
# The data the study mirrors: classic36's charset, length, canvas and font sizes.
CLASSIC36 = load_config(Path(__file__).resolve().parents[1] / "configs" / "classic36.yaml").data
CHARSET, LENGTH = CLASSIC36.charset, CLASSIC36.max_length
WIDTH, HEIGHT = CLASSIC36.width, CLASSIC36.height
WORD_SPACE_P = 0.5  # ImageCaptcha.word_space_probability: a blank glyph before a character


class GlyphMaker:
    """Single 0/O glyphs drawn by the package's own code from one seeded stream."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        source = SeededSecrets(self.rng)
        cls = seeded_captcha_class(source)
        self.captcha = cls(width=WIDTH, height=HEIGHT, font_sizes=tuple(CLASSIC36.font_sizes))
        # random_color as the package calls it, drawing from the same seeded source.
        self.random_color = cls._draw_character.__globals__["random_color"]
        self.secrets = source
        self.scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        # A glyph comes out exactly as wide as the font's text box for its symbol (the same for
        # nearly every symbol of a monospace font), so the squeeze needs widths, not pixels.
        self.box_width = {
            (id(font), c): int(self.scratch.multiline_textbbox((1, 1), c, font=font)[2])
            for font in self.captcha.truefonts
            for c in CHARSET + " "
        }

    def squeeze(self, own_width: int) -> float:
        """The horizontal scale `create_captcha_image` applies when the glyphs overflow the canvas.

        The other three characters and the optional blanks get random sizes like ours; their
        widths are all that matters, so only their fonts are drawn, not their pixels.
        """
        total = own_width
        for glyph in range(2 * LENGTH - 1):
            # The first LENGTH are the blanks that may precede each character, the rest the other characters.
            if glyph < LENGTH and not self.rng.random() > WORD_SPACE_P:
                continue
            symbol = " " if glyph < LENGTH else self.rng.choice(CHARSET)
            total += self.box_width[id(self.rng.choice(self.captcha.truefonts)), symbol]
        return min(1.0, WIDTH / total)

    def glyph(self, symbol: str) -> np.ndarray:
        background = self.random_color(238, 255)
        color = self.random_color(10, 200, self.secrets.randbelow(36) + 220)
        im = self.captcha._draw_character(symbol, self.scratch, color)
        w, h = im.size
        canvas = Image.new("RGB", (CROP_W * 2, HEIGHT), background)
        mask = im.convert("L").point(self.captcha.lookup_table)
        canvas.paste(im, ((CROP_W * 2 - w) // 2, (HEIGHT - h) // 2), mask)
        scale = self.squeeze(w)
        if scale < 1.0:
            # The package resizes the whole canvas with Pillow's default filter; so do we.
            canvas = canvas.resize((round(CROP_W * 2 * scale), HEIGHT))
        canvas = canvas.filter(ImageFilter.SMOOTH).convert("L")
        left = (canvas.width - CROP_W) // 2
        top = (HEIGHT - CROP_H) // 2
        return np.asarray(canvas.crop((left, top, left + CROP_W, top + CROP_H)), dtype=np.uint8)


def make_maker(seed: int, context: bool, jitter: int = 0) -> GlyphMaker | ContextGlyphMaker:
    """A lone-glyph maker (this study's), or the package's crops cut out of whole captchas."""
    return ContextGlyphMaker(CLASSIC36, seed, jitter) if context else GlyphMaker(seed)


def make_set(seed: int, n: int, context: bool = False, jitter: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    maker = make_maker(seed, context, jitter)
    labels = torch.arange(n) % 2
    images = np.stack([maker.glyph(SYMBOLS[int(y)]) for y in labels])
    return torch.from_numpy(images)[:, None], labels


class GlyphStream(IterableDataset):
    def __init__(self, seed: int, batch_size: int, context: bool = False, jitter: int = 0) -> None:
        self.seed = seed
        self.batch_size = batch_size
        self.context = context
        self.jitter = jitter

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        maker = make_maker(derive_seed(self.seed, info.id if info else 0), self.context, self.jitter)
        while True:
            labels = torch.tensor([maker.rng.getrandbits(1) for _ in range(self.batch_size)])
            images = np.stack([maker.glyph(SYMBOLS[int(y)]) for y in labels])
            yield torch.from_numpy(images)[:, None], labels


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, dict[str, int]]:
    preds = classify(model, images)
    wrong = {f"{SYMBOLS[a]}->{SYMBOLS[1 - a]}": int(((labels == a) & (preds != a)).sum()) for a in (0, 1)}
    return float((preds == labels).float().mean()), wrong


def tally(preds: list[str], labels: list[str], counts: dict[str, int]) -> None:
    """Add a reader's 0/O characters to `counts`: read right, swapped, or otherwise wrong.

    Position by position in strings read at the right length; a string read at a wrong length
    counts each of its 0s and Os as otherwise wrong. Also counts the wrong strings.
    """
    for pred, label in zip(preds, labels):
        counts["wrong strings"] += pred != label
        for i, truth in enumerate(label):
            if truth not in SYMBOLS:
                continue
            counts["characters"] += 1
            read = pred[i] if len(pred) == len(label) else None
            if read == truth:
                counts["right"] += 1
            elif read == SYMBOLS[1 - SYMBOLS.index(truth)]:
                counts["swapped"] += 1
            else:
                counts["other"] += 1


def new_counts() -> dict[str, int]:
    return {"strings": 0, "wrong strings": 0, "characters": 0, "right": 0, "swapped": 0, "other": 0}


def reader_counts(checkpoint: str, folders: list[str]) -> dict[str, int]:
    """A full reader's 0/O reading on labelled folders."""
    from captcha_stream.data.folder import FolderDataset
    from captcha_stream.reader.recognizer import Recognizer

    reader = Recognizer.from_checkpoint(checkpoint)
    counts = new_counts()
    for folder in folders:
        dataset = FolderDataset(folder, reader.cfg.data)
        labels = [label for _, label in dataset.rows]
        preds = reader.predict([str(dataset.path(i)) for i in range(len(dataset))])
        counts["strings"] += len(labels)
        tally([p.text for p in preds], labels, counts)
    return counts


def without_noise_counts(checkpoint: str, seeds: list[int], size: int) -> dict[str, dict[str, int]]:
    """The reader on exported sets re-rendered from their seeds, with and without the noise.

    Image i of a set with seed S is `Renderer.sample_at(S, i)`, so the sets can be drawn again
    here. The noise dots and curve are drawn after every glyph, from the end of the random stream,
    so leaving them out changes nothing else: same labels, glyphs, places and colours.
    """
    from captcha_stream.reader.recognizer import Recognizer

    reader = Recognizer.from_checkpoint(checkpoint)
    plain = Renderer(reader.cfg.data, fast=False)
    quiet = Renderer(reader.cfg.data, fast=False, noise=False)
    result = {"with noise": new_counts(), "without noise": new_counts()}
    for seed in seeds:
        for kind, renderer in (("with noise", plain), ("without noise", quiet)):
            images, labels = zip(*(renderer.sample_at(seed, i) for i in range(size)))
            result[kind]["strings"] += size
            tally([p.text for p in reader.predict(list(images))], list(labels), result[kind])
    return result


def read(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """The --reader forms: a full reader's 0/O counts on folders, or on re-rendered sets."""
    if args.without_noise:
        try:
            seeds = [int(seed) for seed in args.without_noise.split(",")]
        except ValueError:
            parser.error(f"--without-noise {args.without_noise!r}: expected export seeds like 2000003,1000003")
        for kind, counts in without_noise_counts(args.reader, seeds, args.set_size).items():
            print(kind, json.dumps(counts))
        return
    if not args.data:
        parser.error("--reader needs --data DIR (repeatable) or --without-noise SEEDS")
    counts = reader_counts(args.reader, args.data)
    n = counts["characters"]
    if n == 0:
        raise CaptchaStreamError(f"no 0 or O in the labels of {', '.join(args.data)}")
    print(json.dumps(counts), f"right {counts['right'] / n:.2%}, swapped {counts['swapped'] / n:.2%}")


def parse_args() -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.002)
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--val-size", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument(
        "--context", action="store_true", help="cut the glyphs out of whole captchas (ContextGlyphMaker)"
    )
    parser.add_argument(
        "--jitter", type=int, default=0, help="with --context: crop up to this many pixels off the glyph's centre"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads for training")
    parser.add_argument(
        "--init",
        default=None,
        help="start from these weights (a --save file, or a checkpoint carrying a second look) instead of at random",
    )
    parser.add_argument("--save", default=None, help="write the classifier's weights here at every evaluation")
    parser.add_argument("--json", default=None, help="write the curve here")
    parser.add_argument("--sheet", default=None, help="save a PNG of held-out glyphs, misread ones first")
    parser.add_argument("--reader", default=None, help="instead of training: count this checkpoint's 0/O reading")
    parser.add_argument("--data", action="append", default=[], help="a labelled folder for --reader (repeatable)")
    parser.add_argument(
        "--without-noise",
        default="",
        help="with --reader: export seeds (S1,S2,...) to re-render with and without noise",
    )
    parser.add_argument("--set-size", type=int, default=2000, help="images per seed for --without-noise")
    return parser, parser.parse_args()


def main() -> None:
    parser, args = parse_args()
    if args.reader:
        try:
            read(args, parser)
        except CaptchaStreamError as exc:
            parser.exit(1, f"{parser.prog}: {exc}\n")
        return

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    if args.init:
        try:
            model = load_classifier(args.init)[0].train()
        except CaptchaStreamError as exc:
            parser.exit(1, f"{parser.prog}: --init {exc}\n")
    else:
        model = glyph_classifier()
    t0 = time.time()
    val_images, val_labels = make_set(derive_seed(args.seed, 10**6), args.val_size, args.context, args.jitter)
    print(f"held-out set: {args.val_size} glyphs in {time.time() - t0:.0f} s", flush=True)

    curve = []
    if args.init:
        # Where the continued run starts, on this run's held-out set (a new --seed gives new glyphs).
        acc, wrong = accuracy(model, val_images, val_labels)
        curve.append({"step": 0, "glyphs_seen": 0, "accuracy": acc, "wrong": wrong, "init": args.init})
        print(json.dumps(curve[0]), flush=True)
    curve += train(model, args, val_images, val_labels)

    if args.json:
        with replacing(args.json) as tmp:
            tmp.write_text(json.dumps({"args": vars(args), "curve": curve}, indent=1))
    if args.sheet:
        save_sheet(model, val_images, val_labels, args.sheet)


def train(model: nn.Module, args: argparse.Namespace, val_images: torch.Tensor, val_labels: torch.Tensor) -> list[dict]:
    """Train on the glyph stream for args.steps, reading the held-out set every args.eval_every steps."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    loader = DataLoader(
        GlyphStream(args.seed, args.batch_size, args.context, args.jitter),
        batch_size=None,
        num_workers=1,
        prefetch_factor=8,
    )
    curve = []
    t0 = time.time()
    for step, (images, labels) in enumerate(loader, start=1):
        for group in optimizer.param_groups:
            group["lr"] = warmup_cosine(step - 1, args.lr, args.steps, warmup=300)
        loss = nn.functional.cross_entropy(model(normalize(images)), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % args.eval_every == 0 or step == args.steps:
            acc, wrong = accuracy(model, val_images, val_labels)
            point = {
                "step": step,
                "glyphs_seen": step * args.batch_size,
                "accuracy": acc,
                "wrong": wrong,
                "train_loss": float(loss.detach()),
                "minutes": round((time.time() - t0) / 60, 2),
            }
            curve.append(point)
            print(json.dumps(point), flush=True)
            if args.save:
                save_weights(model, args, point, args.save)
        if step >= args.steps:
            break
    return curve


def save_weights(model: nn.Module, args: argparse.Namespace, point: dict, path: str) -> None:
    """The classifier's weights with how they were made."""
    with replacing(path) as tmp:
        torch.save({"model": model.state_dict(), "args": vars(args), "point": point}, tmp)


def save_sheet(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, path: str, cols: int = 16) -> None:
    """Held-out glyphs the classifier gets wrong (red label), then some it gets right."""
    preds = classify(model, images)
    wrong = torch.nonzero(preds != labels).flatten()[: cols * 2]
    right = torch.nonzero(preds == labels).flatten()[: cols * 2]
    picks = [(int(i), False) for i in wrong] + [(int(i), True) for i in right]
    rows = math.ceil(len(picks) / cols)
    sheet = Image.new("RGB", (cols * (CROP_W + 4), rows * (CROP_H + 16)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for k, (i, ok) in enumerate(picks):
        x, y = (k % cols) * (CROP_W + 4), (k // cols) * (CROP_H + 16)
        sheet.paste(Image.fromarray(images[i, 0].numpy()).convert("RGB"), (x + 2, y + 14))
        colour = (0, 120, 0) if ok else (200, 0, 0)
        draw.text((x + 4, y + 1), f"{SYMBOLS[int(labels[i])]}->{SYMBOLS[int(preds[i])]}", fill=colour)
    with replacing(path) as tmp:
        sheet.save(tmp, format="PNG")


if __name__ == "__main__":
    main()
