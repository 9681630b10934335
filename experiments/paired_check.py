"""Is checkpoint B really better than A? Read both on the same images and count where they differ.

Two readers' accuracies on one set are not independent: most images both read right, a few both read
wrong, and only the strings exactly one of them reads right say anything about which is better. This
prints those counts per set and an exact two-sided McNemar test over all sets (under "equally good",
each such string is a fair coin between the two).

    python experiments/paired_check.py --a OLD.pt --b NEW.pt --data data/val-classic36 --data data/test-classic36 ...

Written for issue 8: it measured the widened classic36 against the model it grew from (models/README.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from captcha_stream.config import parse_tta  # noqa: E402
from captcha_stream.data.folder import FolderDataset  # noqa: E402
from captcha_stream.errors import CaptchaStreamError  # noqa: E402
from captcha_stream.eval.metrics import mcnemar_p  # noqa: E402
from captcha_stream.reader.recognizer import Recognizer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", required=True, help="the reference checkpoint")
    parser.add_argument("--b", required=True, help="the challenger")
    parser.add_argument("--data", action="append", required=True, help="a labelled folder (repeatable)")
    # Both read the same way: a checkpoint's own eval.tta would otherwise compare shifted reads with plain ones.
    parser.add_argument("--tta", default="", help="shift offsets for both readers, e.g. 2,4 (default: plain reads)")
    args = parser.parse_args()
    try:
        compare(args.a, args.b, args.data, parse_tta(args.tta))
    except CaptchaStreamError as exc:
        parser.exit(1, f"{parser.prog}: {exc}\n")


def compare(reference: str, challenger: str, folders: list[str], tta: list[int]) -> None:
    """Print, per folder and over all, how many strings only one of the two readers reads right."""
    readers = {"a": Recognizer.from_checkpoint(reference), "b": Recognizer.from_checkpoint(challenger)}
    total_a = total_b = 0
    for folder in folders:
        dataset = FolderDataset(folder, readers["a"].cfg.data)
        paths = [str(dataset.path(i)) for i in range(len(dataset))]
        labels = [label for _, label in dataset.rows]
        right = {k: [p.text == t for p, t in zip(r.predict(paths, tta=tta), labels)] for k, r in readers.items()}
        only_a = sum(a and not b for a, b in zip(right["a"], right["b"]))
        only_b = sum(b and not a for a, b in zip(right["a"], right["b"]))
        print(
            f"{folder}: {len(paths)} images, A wrong {right['a'].count(False)}, B wrong {right['b'].count(False)}; "
            f"only A right {only_a}, only B right {only_b}"
        )
        total_a += only_a
        total_b += only_b
    print(f"all: only A right {total_a}, only B right {total_b}; exact McNemar p = {mcnemar_p(total_a, total_b):.3f}")


if __name__ == "__main__":
    main()
