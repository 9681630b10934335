"""FolderDataset: labelled captcha images on disk (a frozen set, or the original layout).

Two layouts are found without flags:
  DIR/labels.csv beside the PNGs            (what export_fixed_set.py writes)
  Training_Data/ + Training_Data_Mappings.csv beside it   (the original system's layout)
Any other CSV can be named with `labels=`. Rows are `filename,label`; a header row
`filename,label` is optional. Filenames are relative to the image folder.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path, PurePosixPath

import torch
from torch.utils.data import Dataset

from ..config import DataConfig
from ..errors import CaptchaStreamError
from ..files import check_input
from ..model.codec import Codec
from .images import load_image, preprocess

LABELS_NAME = "labels.csv"


def find_labels(root: Path, labels: str | os.PathLike[str] | None = None) -> Path:
    """The CSV of labels for image folder `root`."""
    if labels is not None:
        path = Path(labels)
        if not path.is_file():
            raise CaptchaStreamError(f"{path}: labels CSV not found")
        return path
    if not root.exists():
        raise CaptchaStreamError(f"{root}: image folder not found")
    if not root.is_dir():
        raise CaptchaStreamError(f"{root}: is not a folder of images")
    candidates = [root / LABELS_NAME, root.parent / f"{root.name}_Mappings.csv"]
    for path in candidates:
        if path.is_file():
            return path
    raise CaptchaStreamError(
        f"{root}: no labels CSV found (looked for {candidates[0]} and {candidates[1]}; name one with --labels)"
    )


def read_labels(path: Path, codec: Codec | None = None) -> list[tuple[str, str]]:
    """Rows `(filename, label)` of a labels CSV, checked; errors name the file and line."""
    # A million labels take about 20 MB.
    check_input(path, "labels CSV", 512 * 10**6)
    try:
        # utf-8-sig: Excel writes a byte-order mark, which would otherwise stick to the first file name.
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except UnicodeDecodeError:
        raise CaptchaStreamError(f"{path}: not a UTF-8 text CSV") from None
    except csv.Error as exc:
        raise CaptchaStreamError(f"{path}: not a labels CSV ({exc})") from None
    except OSError as exc:
        raise CaptchaStreamError(f"{path}: cannot read labels: {exc.strerror}") from None
    out: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for lineno, row in enumerate(rows, start=1):
        if not row or all(not cell.strip() for cell in row):
            continue  # blank lines are harmless
        if lineno == 1 and [c.strip().lower() for c in row] == ["filename", "label"]:
            continue
        if len(row) != 2:
            raise CaptchaStreamError(
                f"{path}:{lineno}: malformed row {','.join(row)!r}: expected 2 fields filename,label, got {len(row)}"
            )
        name, label = row[0].strip(), row[1]
        if not name:
            raise CaptchaStreamError(f"{path}:{lineno}: empty filename")
        # One spelling per file (./a.png is a.png), and never a file outside the folder.
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if PurePosixPath(name).is_absolute() or ".." in parts or name.startswith(("/", "\\")):
            raise CaptchaStreamError(f"{path}:{lineno}: {name} is outside the image folder")
        name = str(PurePosixPath(*[part for part in parts if part != "."])) if parts else name
        if not label:
            raise CaptchaStreamError(f"{path}:{lineno}: empty label for {name}")
        if label != label.strip():
            raise CaptchaStreamError(f"{path}:{lineno}: label {label!r} for {name} has surrounding whitespace")
        if name in seen:
            raise CaptchaStreamError(f"{path}:{lineno}: duplicate filename {name} (first on line {seen[name]})")
        if codec is not None:
            codec.check(label, where=f"{path}:{lineno}: label")
        seen[name] = lineno
        out.append((name, label))
    if not out:
        raise CaptchaStreamError(f"{path}: no labelled rows")
    return out


class FolderDataset(Dataset):
    """Map-style dataset of `(uint8 image tensor, label)` from a folder and a labels CSV."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        data: DataConfig,
        labels: str | os.PathLike[str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.data = data
        self.labels_path = find_labels(self.root, labels)
        self.rows = read_labels(self.labels_path, Codec(data.charset))
        for name, _ in self.rows:
            path = self.root / name
            if not path.is_file():
                what = "is a directory" if path.is_dir() else "image file not found"
                raise CaptchaStreamError(f"{path}: {what} (listed in {self.labels_path})")
            if path.stat().st_size == 0:
                raise CaptchaStreamError(f"{path}: empty file (listed in {self.labels_path})")

    def __len__(self) -> int:
        return len(self.rows)

    def path(self, index: int) -> Path:
        return self.root / self.rows[index][0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        name, label = self.rows[index]
        return preprocess(load_image(self.root / name), self.data), label
