"""Does a second look at each 0 and O fix the full reader's swaps?

The classic36 reader's remaining errors are mostly 0<->O swaps (docs/ablations.md). This script
re-reads every 0 or O the reader writes with a classifier trained by `experiments/zero_o_ceiling.py
--context --jitter J --save CK` on crops of that one glyph cut out of whole captchas, and counts
the wrong strings on labelled sets three ways: the reader alone, the classifier alone, and the sum
of their log-odds (two opinions from different networks).

The crop is centred where the reader fires for the character (its CTC peak) moved by the
measured distance from peak to glyph centre (`--offsets` measures it on captchas whose glyph
centres are known). The last character of a string is left to the reader: its peak comes at
the end of the sequence, 24-60 pixels right of the glyph, not near it.

    python experiments/zero_o_second_stage.py --offsets --reader captcha_stream/weights/classic36.pt
    python experiments/zero_o_second_stage.py --reader READER.pt --classifier CK --data DIR [--data DIR ...]
    python experiments/zero_o_second_stage.py --reader READER.pt --classifier CK --attach OUT.pt

The last form writes a reader checkpoint that carries the classifier (captcha_stream/reader/second_look.py):
evaluate.py and Recognizer then read with the summed log-odds.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zero_o_ceiling as ceiling  # noqa: E402

from captcha_stream.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from captcha_stream.data.folder import FolderDataset  # noqa: E402
from captcha_stream.data.glyphs import GlyphMaker  # noqa: E402
from captcha_stream.data.images import preprocess_array  # noqa: E402
from captcha_stream.errors import CaptchaStreamError  # noqa: E402
from captcha_stream.eval.metrics import mcnemar_p  # noqa: E402
from captcha_stream.reader import stages  # noqa: E402
from captcha_stream.reader.build import model_from_checkpoint  # noqa: E402
from captcha_stream.reader.recognizer import Recognizer  # noqa: E402
from captcha_stream.reader.second_look import (  # noqa: E402
    Look,
    SecondLook,
    attach,
    characters,
    frame_x,
    load_classifier,
)

# Glyph centre minus CTC peak position for characters 1-3 of session 11's classic36 reader (`--offsets`,
# 1000 captchas: means 5.8, 6.2 and 7.3 px, standard deviations 2.1-2.6), and the last glyph's centre
# minus the previous character's peak (41.4 mean, 10.3 standard deviation): the package's defaults.
from captcha_stream.tools.attach import LAST_GAP, PEAK_TO_CENTRE  # noqa: E402

WAYS = ("reader", "classifier", "sum")


def measure_offsets(reader: Recognizer, n: int, seed: int) -> dict[str, dict[str, float]]:
    """Glyph centre minus peak position by character position, on captchas with known centres."""
    maker = GlyphMaker(ceiling.CLASSIC36, seed)
    gaps: dict[int, list[float]] = {k: [] for k in range(ceiling.LENGTH)}
    from_previous: list[float] = []
    for k in range(n):
        full, blank = maker.pair(ceiling.SYMBOLS[k % 2])
        image = preprocess_array(Image.fromarray(full.astype(np.uint8)), reader.cfg.data)
        lp = np.asarray(reader.log_probs(image[None]))[:, 0]
        chars = characters(lp)
        if len(chars) == ceiling.LENGTH:
            x = frame_x(chars[maker.position].peak, lp.shape[0], full.shape[1])
            centre = maker.centre(full, blank)
            gaps[maker.position].append(centre - x)
            if maker.position == ceiling.LENGTH - 1:
                from_previous.append(centre - frame_x(chars[-2].peak, lp.shape[0], full.shape[1]))
    rows = {f"character {k + 1}": v for k, v in gaps.items()}
    rows[f"character {ceiling.LENGTH} from character {ceiling.LENGTH - 1}'s peak"] = from_previous
    return {k: {"n": len(v), "mean": float(np.mean(v)), "sd": float(np.std(v))} for k, v in rows.items() if v}


def second_look(
    reader: Recognizer, classifier: torch.nn.Module, folder: str, last_gap: int | None = LAST_GAP
) -> tuple[dict[str, dict[str, int]], dict[str, list[str]]]:
    """Wrong strings and 0/O swaps on one labelled folder (reader, classifier, both summed), and the readings."""
    data = reader.cfg.data
    dataset = FolderDataset(folder, data)
    codec = reader.codec
    zero, oh = (codec.encode(s)[0] for s in ceiling.SYMBOLS)
    # The package's own second look finds the characters, crops them and asks the classifier.
    look = SecondLook(reader.model, classifier, (zero, oh), PEAK_TO_CENTRE, last_gap)
    result = {way: Counter() for way in WAYS}
    readings: dict[str, list[str]] = {way: [] for way in WAYS}
    for start in range(0, len(dataset), 250):
        rows = range(start, min(start + 250, len(dataset)))
        images = torch.stack([dataset[i][0] for i in rows])
        lp = torch.as_tensor(reader.log_probs(images))
        by_image: dict[int, list[Look]] = {}
        for x in look.looks(images, lp):
            by_image.setdefault(x.image, []).append(x)
        for n, i in enumerate(rows):
            label = dataset.rows[i][1]
            ids = [c.symbol for c in characters(lp[:, n].numpy())]
            mine = by_image.get(n, [])
            for way in result:
                read = list(ids)
                for x in mine:
                    odds = {
                        "reader": x.reader_odds,
                        "classifier": x.classifier_odds,
                        "sum": x.reader_odds + x.classifier_odds,
                    }[way]
                    read[x.index] = zero if odds > 0 else oh
                text = codec.decode_ids(read)
                readings[way].append(text)
                result[way]["strings"] += 1
                result[way]["wrong strings"] += text != label
                # Against the reader alone, string by string: what a paired (McNemar) test counts.
                first_right = readings["reader"][-1] == label
                result[way]["right only this way"] += text == label and not first_right
                result[way]["right only by the reader"] += first_right and text != label
                result[way]["0/O looked at"] += len(mine)
                if len(text) == len(label):
                    swaps = [a in ceiling.SYMBOLS and b in ceiling.SYMBOLS and a != b for a, b in zip(text, label)]
                    result[way]["0/O swaps"] += sum(swaps)
                    result[way]["of them in the last character"] += swaps[-1]
    return {way: dict(c) for way, c in result.items()}, readings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reader", required=True, help="the full reader's checkpoint")
    parser.add_argument(
        "--classifier", default=None, help="weights saved by zero_o_ceiling.py --save, or a checkpoint carrying them"
    )
    parser.add_argument("--data", action="append", default=[], help="a labelled folder (repeatable)")
    parser.add_argument("--offsets", action="store_true", help="measure glyph centre minus CTC peak instead")
    parser.add_argument(
        "--attach", metavar="OUT", help="write the reader's checkpoint with the classifier as its second look to OUT"
    )
    parser.add_argument(
        "--leave-last",
        action="store_true",
        help="leave the last character to the reader (session 14's first form), not placed from the previous peak",
    )
    parser.add_argument("--n", type=int, default=1000, help="captchas for --offsets")
    parser.add_argument("--seed", type=int, default=77, help="seed of the --offsets captchas")
    args = parser.parse_args()
    try:
        # The comparison is with the reader alone (the shipped classic36 carries a second look and a denoiser).
        own = stages.names_in(load_checkpoint(args.reader))
        model, cfg, _ = model_from_checkpoint(args.reader, without=own)
        reader = Recognizer(model, cfg)
        if own:
            print(f"{args.reader}: reading with the reader alone, without its {' and '.join(own)}", file=sys.stderr)
        if args.offsets:
            print(json.dumps(measure_offsets(reader, args.n, args.seed), indent=1))
            return
        if not args.classifier or not (args.data or args.attach):
            parser.error("needs --classifier CK and --data DIR or --attach OUT (or --offsets)")
        if not Path(args.classifier).is_file():
            raise CaptchaStreamError(f"{args.classifier}: classifier weights not found")
        classifier, _ = load_classifier(args.classifier)
        if args.attach:
            last_gap = None if args.leave_last else LAST_GAP
            state = attach(
                load_checkpoint(args.reader), classifier.state_dict(), ceiling.SYMBOLS, PEAK_TO_CENTRE, last_gap
            )
            print("wrote", save_checkpoint(state, args.attach, keep_previous=False))
            return
        total = {way: Counter() for way in WAYS}
        for folder in args.data:
            counts, _ = second_look(reader, classifier, folder, None if args.leave_last else LAST_GAP)
            print(folder, json.dumps(counts), flush=True)
            for way, c in counts.items():
                total[way].update(c)
        print("all", json.dumps({way: dict(c) for way, c in total.items()}))
        for way in WAYS[1:]:
            gained, lost = total[way]["right only this way"], total[way]["right only by the reader"]
            p = mcnemar_p(gained, lost)
            print(f"{way} against the reader: {gained} strings fixed, {lost} broken, exact McNemar p = {p:.3f}")
    except CaptchaStreamError as exc:
        parser.exit(1, f"{parser.prog}: {exc}\n")


if __name__ == "__main__":
    main()
