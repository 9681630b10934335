"""Run a model over a labelled set and report: the numbers, and a printable report."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..config import Config
from ..errors import CaptchaStreamError
from ..model.codec import Codec
from ..reader.tta import read
from . import metrics


@dataclass
class Results:
    labels: list[str]
    preds: list[str]
    confidences: list[float]
    names: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        return metrics.summary(self.preds, self.labels)


def load_all(
    dataset: Dataset, batch_size: int = 256, workers: int = 0, progress: bool = False
) -> tuple[torch.Tensor, list[str]]:
    """Every image of a labelled dataset as one uint8 tensor (decoded once, reused each eval)."""
    # Its own generator: loading a test set must not move the global RNG (exact resume).
    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=workers, collate_fn=_stack, generator=torch.Generator()
    )
    images, labels = [], []
    for x, y in tqdm(loader, desc="loading images", unit="batch", disable=not progress, leave=False):
        images.append(x)
        labels.extend(y)
    return torch.cat(images), labels


def _stack(samples: Sequence[tuple[torch.Tensor, str]]) -> tuple[torch.Tensor, list[str]]:
    return torch.stack([s[0] for s in samples]), [s[1] for s in samples]


@torch.no_grad()
def decode_images(
    model: torch.nn.Module,
    images: torch.Tensor,
    codec: Codec,
    device: torch.device,
    batch_size: int = 256,
    beam: int = 0,
    progress: bool = False,
    lengths: tuple[int, int] | None = None,
    tta: Sequence[int] = (),
) -> list[tuple[str, float]]:
    """(text, confidence) for each uint8 image, greedy (beam=0) or beam search; `tta` offsets
    (pixels) also read each image moved that far left and right (`captcha_stream.tta`)."""
    was_training = model.training
    model.eval()
    out: list[tuple[str, float]] = []
    try:
        for start in tqdm(
            range(0, len(images), batch_size), desc="decoding", unit="batch", disable=not progress, leave=False
        ):
            batch = images[start : start + batch_size].to(device, non_blocking=True)
            out.extend(read(model, batch, codec, beam, lengths, tta))
    finally:
        model.train(was_training)
    return out


def run_eval(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: list[str],
    codec: Codec,
    device: torch.device,
    **options: Any,
) -> Results:
    """`decode_images` (its keyword `options`: batch_size, beam, progress, lengths, tta), scored against `labels`."""
    decoded = decode_images(model, images, codec, device, **options)
    return Results(labels=list(labels), preds=[t for t, _ in decoded], confidences=[c for _, c in decoded])


def headline(summary: dict[str, float]) -> str:
    """The four headline numbers on one line."""
    return (
        f"full-string {summary['full_string_accuracy']:.2%}  char {summary['char_accuracy']:.2%}  "
        f"CER {summary['cer']:.2%}  case-insensitive {summary['case_insensitive_accuracy']:.2%}"
    )


def format_report(results: Results, samples: int = 10, confusions: int = 10) -> str:
    """The human-readable evaluation: headline numbers, per length, confusions, samples."""
    s = results.summary()
    low, high = metrics.full_string_interval(results.preds, results.labels)
    lines = [
        f"images                     {s['n']}",
        f"full-string accuracy       {s['full_string_accuracy']:.2%}   (95% interval {low:.2%} to {high:.2%})",
        f"character accuracy         {s['char_accuracy']:.2%}   (position-wise; docs/evaluation.md)",
        f"CER                        {s['cer']:.2%}",
        f"case-insensitive accuracy  {s['case_insensitive_accuracy']:.2%}",
        "",
        "by label length:",
    ]
    for length, (count, acc) in metrics.accuracy_by_length(results.preds, results.labels).items():
        lines.append(f"  {length:>2} chars  {count:>6} images  {acc:7.2%}")
    conf = metrics.confusions(results.preds, results.labels, top=confusions) if confusions else []
    if conf:
        lines += ["", "most confused (true -> predicted):"]
        lines += [f"  {a} -> {b}  {c}" for a, b, c in conf]
    if samples:
        lines += ["", f"{'truth':<12}{'prediction':<12}confidence"]
        for i in range(min(samples, len(results.labels))):
            mark = "" if results.preds[i] == results.labels[i] else "   <- wrong"
            lines.append(f"{results.labels[i]:<12}{results.preds[i]:<12}{results.confidences[i]:.3f}{mark}")
    return "\n".join(lines)


def describe_shifts(tta: Sequence[int]) -> str:
    """`eval.tta` offsets in words: [1, 2, 3] -> 'shifts of 1/2/3 px'."""
    return f"shifts of {'/'.join(map(str, tta))} px"


def describe_decoding(beam: int, lengths: tuple[int, int] | None, tta: Sequence[int] = ()) -> str:
    text = "greedy" if not beam else f"beam {beam}" + (f" (lengths {lengths[0]}-{lengths[1]})" if lengths else "")
    return text + (f", {describe_shifts(tta)}" if tta else "")


@dataclass
class Evaluation:
    """A checkpoint read on a labelled set: the readings, and what they were made with."""

    results: Results
    cfg: Config
    step: Any
    data_dir: Path
    paths: list[Path]
    decoding: str


def evaluate_checkpoint(
    ckpt: str | os.PathLike[str],
    data: str | os.PathLike[str] | None = None,
    labels: str | os.PathLike[str] | None = None,
    beam: int | None = None,
    length_prior: bool = True,
    tta: Sequence[int] | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    progress: bool = True,
    prepare: Callable[[torch.nn.Module, Config, torch.device], torch.nn.Module] | None = None,
) -> Evaluation:
    """Read a labelled folder (default: the checkpoint config's test set, exported if missing) with
    a checkpoint; `beam`, `tta` and `batch_size` default to the checkpoint config's. `prepare`, if
    given, changes the model before it reads (e.g. re-measured BatchNorm statistics)."""
    from ..config import check_tta
    from ..data.folder import FolderDataset
    from ..data.frozen import ensure_set
    from ..device import pick_device
    from ..reader.build import model_from_checkpoint

    if batch_size is not None and batch_size < 1:
        raise CaptchaStreamError(f"--batch-size: must be at least 1, got {batch_size}")
    torch_device = pick_device(device, "--device")
    model, cfg, state = model_from_checkpoint(ckpt)
    beam = cfg.eval.beam if beam is None else beam
    if beam < 0:
        raise CaptchaStreamError(f"--beam: must be >= 0, got {beam}")
    cfg.eval.length_prior = cfg.eval.length_prior and length_prior
    tta = cfg.eval.tta if tta is None else list(tta)
    check_tta(tta, cfg.data, "--tta")
    data_dir = (
        Path(data)
        if data
        else ensure_set(cfg.eval.test_dir, cfg.eval.test_size, cfg.data, cfg.eval.test_seed, progress=progress)
    )
    dataset = FolderDataset(data_dir, cfg.data, labels)
    model.to(torch_device)
    if prepare is not None:
        model = prepare(model, cfg, torch_device)
    batch = batch_size or cfg.eval.batch_size
    images, truths = load_all(dataset, batch, progress=progress)
    lengths = cfg.beam_lengths()
    options = {"batch_size": batch, "beam": beam, "progress": progress, "lengths": lengths, "tta": tta}
    results = run_eval(model, images, truths, Codec(cfg.data.charset), torch_device, **options)
    paths = [dataset.path(i) for i in range(len(dataset))]
    return Evaluation(results, cfg, state.get("step", "?"), data_dir, paths, describe_decoding(beam, lengths, tta))
