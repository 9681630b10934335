"""Does reading each captcha several ways help? Test-time shifts and checkpoint ensembles, measured.

Each "view" is one checkpoint reading the set shifted by (dx, dy) pixels (edges repeated, so no
border the model never saw; `captcha_stream.tta.shift_images`): the image as it is, +-2 px
horizontally and vertically, +-4 px horizontally. Sets of views ("3 horizontal": 0, +-2;
"5 horizontal": 0, +-2, +-4; "cross": 0, +-2 both ways; "all 7") are combined two ways:

- rescore: every view's greedy answer is a candidate; the answer is the candidate with the highest
  CTC log-likelihood summed over all views (`captcha_stream.tta.agree`, what `evaluate.py --tta`
  does; views may align frames differently, so this is safer than mixing frames);
- mean: the frame-wise mean of the views' probabilities, decoded greedily.

    python experiments/tta_check.py --checkpoint captcha_stream/weights/classic36.pt [--checkpoint B.pt ...] \
        --data data/val-classic36 [--json out.json]

Written for issue 8's accuracy work: its numbers on the validation sets chose which offsets
`evaluate.py --tta` reads for each shipped model (docs/ablations.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from captcha_stream.data.folder import FolderDataset  # noqa: E402
from captcha_stream.eval.evaluation import load_all  # noqa: E402
from captcha_stream.model.codec import Codec  # noqa: E402
from captcha_stream.reader.build import model_from_checkpoint  # noqa: E402
from captcha_stream.reader.tta import agree, shift_images  # noqa: E402

SHIFTS = [(0, 0), (-2, 0), (2, 0), (0, -2), (0, 2), (-4, 0), (4, 0)]
VIEW_SETS = {
    "3 horizontal": SHIFTS[:3],
    "5 horizontal": SHIFTS[:3] + SHIFTS[5:],
    "cross": SHIFTS[:5],
    "all 7": SHIFTS,
}


def shifted(images: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """uint8 (N, C, H, W) moved by dx, dy pixels, edges repeated (vertical: the same on the transpose)."""
    moved = shift_images(images, dx)
    return shift_images(moved.transpose(-1, -2), dy).transpose(-1, -2) if dy else moved


@torch.no_grad()
def log_probs(model: torch.nn.Module, images: torch.Tensor, batch: int = 250) -> torch.Tensor:
    return torch.cat([model(images[i : i + batch]) for i in range(0, len(images), batch)], dim=1)


def rescore(views: list[torch.Tensor], codec: Codec) -> list[str]:
    """What `evaluate.py --tta` does: candidates from every view, CTC likelihood summed over views."""
    return [text for text, _ in agree(views, [codec.greedy_decode(v) for v in views], codec)]


def mean_probs(views: list[torch.Tensor], codec: Codec) -> list[str]:
    return [t for t, _ in codec.greedy_decode(torch.stack(views).logsumexp(0))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", action="append", required=True, help="repeat for an ensemble")
    parser.add_argument("--data", required=True, help="labelled folder (a validation set: choose nothing on test)")
    parser.add_argument("--json", help="write the accuracies here")
    args = parser.parse_args()
    torch.set_num_threads(1)

    models = []
    for path in args.checkpoint:
        model, cfg, _ = model_from_checkpoint(path)
        models.append(model.eval())
    codec = Codec(cfg.data.charset)
    images, labels = load_all(FolderDataset(args.data, cfg.data))
    views = {(m, s): log_probs(model, shifted(images, *s)) for m, model in enumerate(models) for s in SHIFTS}

    def accuracy(preds: list[str]) -> float:
        return sum(p == t for p, t in zip(preds, labels)) / len(labels)

    results: dict[str, float] = {}
    for m in range(len(models)):
        results[f"checkpoint {m}: plain"] = accuracy(mean_probs([views[m, (0, 0)]], codec))
        for name, picked in VIEW_SETS.items():
            results[f"checkpoint {m}: {name}, rescore"] = accuracy(rescore([views[m, s] for s in picked], codec))
        results[f"checkpoint {m}: cross, mean"] = accuracy(mean_probs([views[m, s] for s in VIEW_SETS["cross"]], codec))
    if len(models) > 1:
        plain = [views[m, (0, 0)] for m in range(len(models))]
        results["all checkpoints: rescore"] = accuracy(rescore(plain, codec))
        results["all checkpoints: mean"] = accuracy(mean_probs(plain, codec))
        results["all checkpoints x cross: rescore"] = accuracy(
            rescore([views[m, s] for m in range(len(models)) for s in VIEW_SETS["cross"]], codec)
        )
    for name, value in results.items():
        print(f"{name:<40}{value:.2%}")
    if args.json:
        Path(args.json).write_text(json.dumps({"checkpoints": args.checkpoint, "data": args.data, **results}, indent=2))


if __name__ == "__main__":
    main()
