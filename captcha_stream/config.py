"""The one config system: a tree of dataclasses, loaded from YAML, overridable from the CLI.

Every value is checked once, here, at the edge; the rest of the code trusts the config.
The whole tree is plain data (`to_dict`), so it is saved inside every checkpoint and a
checkpoint alone is enough to rebuild the model and its preprocessing.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import string
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import CaptchaStreamError

DEFAULT_CHARSET = string.digits + string.ascii_uppercase + string.ascii_lowercase
# The captcha package's own defaults; kept as the default so a 160x60 config renders
# exactly what `ImageCaptcha()` would.
PACKAGE_FONT_SIZES = [42, 50, 56]
MIN_WIDTH = 40
MAX_CONFIG_BYTES = 1_000_000
# Far above any captcha reader; below what a CPU cannot allocate, so a typo gets one line, not an allocator trace.
MAX_SIDE, MAX_CHANNELS, MAX_HIDDEN = 4096, 4096, 16384
MIN_HEIGHT = 20


@dataclass
class DataConfig:
    charset: str = DEFAULT_CHARSET
    min_length: int = 5
    max_length: int = 8
    width: int = 280
    height: int = 90
    # Empty list: the font bundled with the captcha package.
    fonts: list[str] = field(default_factory=list)
    font_sizes: list[int] = field(default_factory=lambda: list(PACKAGE_FONT_SIZES))
    # 1 = grayscale, 3 = RGB; the model's input channels follow this.
    channels: int = 1
    # Data echoing (Choi et al. 2019): use each rendered image this many times, each echo
    # with a small random affine jitter, for machines where rendering cannot keep up.
    echo: int = 1
    # Probability that a training image gets the same small affine jitter (0 = off). The
    # stream never repeats, so this is for folder training and for measuring; echoes
    # (echo > 1) are always jittered and take no extra.
    augment: float = 0.0
    # The captcha package's scheme, knob by knob (data/scheme.py); every default is the package's own.
    # Colours: each RGB channel drawn in [lo, hi]; the ink colours the glyphs, dots and curve.
    background: list[int] = field(default_factory=lambda: [238, 255])
    ink: list[int] = field(default_factory=lambda: [10, 200])
    ink_alpha: list[int] = field(default_factory=lambda: [220, 255])
    # Noise drawn over the text: dots (short strokes) of a width, and one arc.
    noise_dots: int = 30
    noise_dot_width: int = 3
    noise_curve: bool = True
    noise_curve_width: int = 1
    # Per glyph: rotation in degrees, warp as fractions of the glyph's size, offset padding in pixels.
    rotation: list[float] = field(default_factory=lambda: [-30.0, 30.0])
    warp_dx: list[float] = field(default_factory=lambda: [0.1, 0.3])
    warp_dy: list[float] = field(default_factory=lambda: [0.2, 0.3])
    offset_dx: list[int] = field(default_factory=lambda: [0, 4])
    offset_dy: list[int] = field(default_factory=lambda: [0, 6])
    # The package puts a blank glyph before a character when a uniform draw exceeds this (so 1 = never),
    # and pulls each glyph left by up to word_offset_dx of the average glyph width (overlap).
    word_space_probability: float = 0.5
    word_offset_dx: float = 0.25
    # The package's final blur (ImageFilter.SMOOTH).
    smooth: bool = True
    # A font (and size) drawn for every glyph, as the package does, or one for the whole captcha.
    font_per: str = "glyph"
    # Another generator instead of the captcha package: "module:function" or "path/to/file.py:function",
    # called as function(text, rng, data_config) -> PIL image of width x height (docs/schemes.md).
    generator: str = ""

    def validate(self, where: str = "data", check_files: bool = True) -> None:
        if not self.charset:
            raise CaptchaStreamError(f"{where}.charset: is empty; give at least one symbol")
        seen: set[str] = set()
        for ch in self.charset:
            if ch in seen:
                raise CaptchaStreamError(f"{where}.charset: symbol {ch!r} appears more than once")
            if ch.isspace():
                raise CaptchaStreamError(f"{where}.charset: whitespace {ch!r} cannot be a symbol")
            seen.add(ch)
        if self.min_length < 1:
            raise CaptchaStreamError(f"{where}.min_length: must be at least 1, got {self.min_length}")
        if self.max_length < 1:
            raise CaptchaStreamError(f"{where}.max_length: must be at least 1, got {self.max_length}")
        if self.min_length > self.max_length:
            raise CaptchaStreamError(
                f"{where}.min_length: {self.min_length} is greater than max_length {self.max_length}"
            )
        if self.width < MIN_WIDTH:
            raise CaptchaStreamError(f"{where}.width: {self.width} is too small (minimum {MIN_WIDTH})")
        if self.height < MIN_HEIGHT:
            raise CaptchaStreamError(f"{where}.height: {self.height} is too small (minimum {MIN_HEIGHT})")
        if max(self.width, self.height) > MAX_SIDE:
            raise CaptchaStreamError(f"{where}: width and height at most {MAX_SIDE}, got {self.width}x{self.height}")
        for font in self.fonts if check_files else []:
            if not os.path.isfile(font):
                raise CaptchaStreamError(f"{where}.fonts: font file not found: {font}")
        if not self.font_sizes:
            raise CaptchaStreamError(f"{where}.font_sizes: is empty; give at least one size")
        for size in self.font_sizes:
            if size < 4:
                raise CaptchaStreamError(f"{where}.font_sizes: {size} is too small (minimum 4)")
        if self.echo < 1:
            raise CaptchaStreamError(f"{where}.echo: must be at least 1 (1 = off), got {self.echo}")
        if not 0.0 <= self.augment <= 1.0:
            raise CaptchaStreamError(f"{where}.augment: must be a probability in [0, 1], got {self.augment}")
        if self.augment > 0 and self.echo > 1:
            raise CaptchaStreamError(
                f"{where}.augment: echoes (echo={self.echo}) are already jittered; set augment to 0 or echo to 1"
            )
        if self.channels not in (1, 3):
            raise CaptchaStreamError(f"{where}.channels: must be 1 (grayscale) or 3 (RGB), got {self.channels}")
        self.validate_scheme(where)

    def validate_scheme(self, where: str = "data") -> None:
        """The scheme knobs: ranges are [lo, hi] pairs within their bounds."""
        bounds = {
            "background": (0, 255),
            "ink": (0, 255),
            "ink_alpha": (0, 255),
            "rotation": (-180, 180),
            "warp_dx": (0, 1),
            "warp_dy": (0, 1),
            "offset_dx": (0, 100),
            "offset_dy": (0, 100),
        }
        for key, (low, high) in bounds.items():
            pair = getattr(self, key)
            if len(pair) != 2 or pair[0] > pair[1]:
                raise CaptchaStreamError(f"{where}.{key}: expected [low, high] with low <= high, got {pair}")
            if pair[0] < low or pair[1] > high:
                raise CaptchaStreamError(f"{where}.{key}: values must lie in [{low}, {high}], got {pair}")
        for key, low, high in (("noise_dots", 0, 10_000), ("noise_dot_width", 1, 50), ("noise_curve_width", 1, 50)):
            if not low <= getattr(self, key) <= high:
                raise CaptchaStreamError(f"{where}.{key}: must be in {low}..{high}, got {getattr(self, key)}")
        if not 0.0 <= self.word_space_probability <= 1.0:
            raise CaptchaStreamError(
                f"{where}.word_space_probability: must be in [0, 1], got {self.word_space_probability}"
            )
        if not 0.0 <= self.word_offset_dx <= 1.0:
            raise CaptchaStreamError(f"{where}.word_offset_dx: must be in [0, 1], got {self.word_offset_dx}")
        if self.font_per not in ("glyph", "captcha"):
            raise CaptchaStreamError(f"{where}.font_per: must be 'glyph' or 'captcha', got {self.font_per!r}")
        if self.generator and ":" not in self.generator:
            raise CaptchaStreamError(
                f"{where}.generator: expected 'module:function' or 'path/to/file.py:function', got {self.generator!r}"
            )


def scheme_defaults() -> dict[str, Any]:
    """The package's own value of every scheme knob (DataConfig's defaults)."""
    return dataclasses.asdict(DataConfig())


# The data keys a trained model's weights are bound to: its input shape and its output classes.
# Every other data key (lengths, fonts, echo, ...) can change between phases of one model.
MODEL_DATA_KEYS = ("charset", "width", "height", "channels")


@dataclass
class ModelConfig:
    # Output channels of each convolution stage; each pooling stage halves the height, and the
    # first `width_pools` of them also halve the width (so time steps = width / 2**width_pools).
    cnn_channels: list[int] = field(default_factory=lambda: [64, 128, 256, 256])
    width_pools: int = 2
    # The first convolution's stride (both axes): 2 reads the image at half resolution from the
    # start, a quarter of the arithmetic in every stage after it (time steps = width / stride / 2**width_pools).
    stem_stride: int = 1
    # false: the first stage has no max pool, its stride alone downsamples (a kernel of
    # 2 * stride - 1 for strides 3 and 4, so every pixel is read). Its full-resolution activations, the costliest
    # memory traffic of the network, are never made.
    stem_pool: bool = True
    # true: each pooling stage max-pools its last convolution's output before the BatchNorm and ReLU
    # (a 5% faster float32 training step for configs/cpu.yaml's model, one thread).
    pool_first: bool = False
    rnn: str = "lstm"
    rnn_hidden: int = 256
    rnn_layers: int = 2
    bidirectional: bool = True
    dropout: float = 0.1
    # The head's initial bias for the CTC blank (class 0); 0 leaves PyTorch's initialisation.
    # 5.5 starts the blank at about 80% of each frame's probability against 62 symbols, roughly
    # what a reader that has learnt where the characters are leaves to it.
    blank_bias: float = 0.0

    @property
    def pooling_stages(self) -> int:
        return len(self.cnn_channels) - (0 if self.stem_pool else 1)

    def validate(self, where: str = "model") -> None:
        if not self.cnn_channels or any(c < 1 for c in self.cnn_channels):
            raise CaptchaStreamError(f"{where}.cnn_channels: needs at least one positive channel count")
        if not 0 <= self.width_pools <= self.pooling_stages:
            raise CaptchaStreamError(
                f"{where}.width_pools: must be between 0 and the number of pooling stages "
                f"({self.pooling_stages}: len(cnn_channels), less one when stem_pool is false), got {self.width_pools}"
            )
        if self.stem_stride not in (1, 2, 3, 4):
            raise CaptchaStreamError(f"{where}.stem_stride: must be 1, 2, 3 or 4, got {self.stem_stride}")
        if self.rnn not in ("lstm", "gru"):
            raise CaptchaStreamError(f"{where}.rnn: must be 'lstm' or 'gru', got {self.rnn!r}")
        if self.rnn_hidden < 1:
            raise CaptchaStreamError(f"{where}.rnn_hidden: must be positive, got {self.rnn_hidden}")
        if self.rnn_hidden > MAX_HIDDEN or max(self.cnn_channels) > MAX_CHANNELS:
            raise CaptchaStreamError(
                f"{where}: rnn_hidden at most {MAX_HIDDEN} and cnn_channels at most {MAX_CHANNELS} each, "
                f"got {self.rnn_hidden} and {self.cnn_channels}"
            )
        if self.rnn_layers < 1:
            raise CaptchaStreamError(f"{where}.rnn_layers: must be at least 1, got {self.rnn_layers}")
        if not 0.0 <= self.dropout < 1.0:
            raise CaptchaStreamError(f"{where}.dropout: must be in [0, 1), got {self.dropout}")
        if not -20.0 <= self.blank_bias <= 20.0:
            raise CaptchaStreamError(f"{where}.blank_bias: must be within [-20, 20], got {self.blank_bias}")


@dataclass
class OptimConfig:
    # adamw, or muon: Muon's orthogonalised momentum for the hidden weight matrices, AdamW for the
    # stem, the head and the vectors, at one learning rate (captcha_stream/train/muon.py).
    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 500
    # Decay from lr to lr * min_lr_ratio after the warm-up: cosine, or linear (a straight line).
    min_lr_ratio: float = 0.01
    decay: str = "cosine"
    grad_clip: float = 5.0
    # How lr grows with torchrun's world size (the global batch is batch_size x ranks):
    # sqrt (the usual rule for Adam), linear, or none.
    lr_scaling: str = "sqrt"

    def validate(self, where: str = "optim") -> None:
        if self.name not in ("adamw", "muon"):
            raise CaptchaStreamError(f"{where}.name: must be adamw or muon, got {self.name!r}")
        if self.lr_scaling not in ("sqrt", "linear", "none"):
            raise CaptchaStreamError(f"{where}.lr_scaling: must be sqrt, linear or none, got {self.lr_scaling!r}")
        if self.decay not in ("cosine", "linear"):
            raise CaptchaStreamError(f"{where}.decay: must be cosine or linear, got {self.decay!r}")
        if not self.lr > 0:
            raise CaptchaStreamError(f"{where}.lr: must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise CaptchaStreamError(f"{where}.weight_decay: must be >= 0, got {self.weight_decay}")
        if self.warmup_steps < 0:
            raise CaptchaStreamError(f"{where}.warmup_steps: must be >= 0, got {self.warmup_steps}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise CaptchaStreamError(f"{where}.min_lr_ratio: must be in [0, 1], got {self.min_lr_ratio}")
        if self.grad_clip < 0:
            raise CaptchaStreamError(f"{where}.grad_clip: must be >= 0 (0 = off), got {self.grad_clip}")


@dataclass
class TrainConfig:
    steps: int = 200_000
    # Train to a wall-time budget (0 = none): the step count is fitted to the minutes from a
    # measured step rate, evaluations included, and refitted as the run goes; with `steps`
    # too, whichever limit comes first ends the run.
    minutes: float = 0.0
    batch_size: int = 64
    # -1: choose from the machine (cores - 1, at most 8).
    num_workers: int = -1
    seed: int = 0
    device: str = "auto"
    # bf16 autocast where the hardware does bf16 natively (a GPU that supports it, a CPU with
    # AVX-512-bf16 or AMX whose bf16 matrix products measure faster than float32); float32 elsewhere.
    amp: bool = True
    # Convolutions in NHWC layout: on a CPU, with bf16, oneDNN's fastest path.
    channels_last: bool = False
    log_every: int = 50
    eval_every: int = 2000
    # Also validate every this many minutes of wall time (0 = by steps only): a learning curve
    # against time with points at the same moments for every recipe (bench/time_to_accuracy.py).
    eval_minutes: float = 0.0
    checkpoint_every: int = 1000
    # Empty: runs/<config file name>/
    run_dir: str = ""
    max_bad_steps: int = 20
    # Train on a labelled folder instead of the rendered stream (empty: the stream).
    train_dir: str = ""
    # Its labels CSV when not DIR/labels.csv or DIR_Mappings.csv beside it.
    train_labels: str = ""
    # Start from the model weights of this checkpoint (same data and model) with a fresh
    # optimizer, schedule and stream: a longer or lower-lr continuation of a finished run.
    # Ignored by --resume, whose checkpoint already holds the weights.
    init_from: str = ""
    # Keep an exponential moving average of the weights with this decay and evaluate, save
    # as best and ship it instead of the raw weights (0 = off; 0.999 is typical).
    ema_decay: float = 0.0
    # Training labels draw these symbols `focus_weight` times as often as the others
    # (rendered stream only; test sets stay uniform). The package stretches every glyph to
    # one box (experiments/glyph_boxes.py), so 0/O and v/V differ only in stroke weight: more
    # examples of those pairs per minute of training, without tilting either pair.
    focus_symbols: str = ""
    focus_weight: float = 1.0
    # Render this many times the batch each step and train on the batch_size captchas the model
    # reads worst (highest CTC loss; captcha_stream/train/hard_examples.py). 1 = off.
    hard_pool: int = 1
    # A curriculum: the first this many captchas of each rank's stream are drawn without the
    # scheme's noise dots and arc (same labels, glyphs and colours), so the model learns to find
    # characters before it must also ignore the noise (0 = off; rendered stream only).
    quiet_images: int = 0
    # Split each step's batch across this many processes on the CPU, the cores shared out between
    # them (each renders and trains on batch_size / processes captchas; the global batch and the
    # learning rate stay): in float32, where threads barely help, the faster way to use several
    # cores. Ignored on a GPU. Under a torchrun of one's own, leave it at 1.
    processes: int = 1

    def validate(self, where: str = "train") -> None:
        if self.steps < 1:
            raise CaptchaStreamError(f"{where}.steps: must be at least 1, got {self.steps}")
        if not self.eval_minutes >= 0.0:
            raise CaptchaStreamError(f"{where}.eval_minutes: must be >= 0 (0 = by steps only), got {self.eval_minutes}")
        if not self.minutes >= 0.0:
            raise CaptchaStreamError(f"{where}.minutes: must be >= 0 (0 = no time budget), got {self.minutes}")
        if self.batch_size < 1:
            raise CaptchaStreamError(f"{where}.batch_size: must be at least 1, got {self.batch_size}")
        if self.num_workers < -1:
            raise CaptchaStreamError(f"{where}.num_workers: must be -1 (auto) or >= 0, got {self.num_workers}")
        if self.seed < 0:
            raise CaptchaStreamError(f"{where}.seed: must be >= 0, got {self.seed}")
        check_device_name(self.device, f"{where}.device")
        if not 0.0 <= self.ema_decay < 1.0:
            raise CaptchaStreamError(f"{where}.ema_decay: must be in [0, 1) (0 = off), got {self.ema_decay}")
        if not self.focus_weight > 0.0:
            raise CaptchaStreamError(f"{where}.focus_weight: must be > 0 (1 = uniform), got {self.focus_weight}")
        if self.hard_pool < 1:
            raise CaptchaStreamError(f"{where}.hard_pool: must be at least 1 (1 = off), got {self.hard_pool}")
        if len(set(self.focus_symbols)) != len(self.focus_symbols):
            raise CaptchaStreamError(f"{where}.focus_symbols: a symbol repeats in {self.focus_symbols!r}")
        if self.processes < 1:
            raise CaptchaStreamError(f"{where}.processes: must be at least 1, got {self.processes}")
        if self.batch_size % self.processes:
            raise CaptchaStreamError(
                f"{where}.batch_size: {self.batch_size} does not split evenly across train.processes={self.processes}"
            )
        if self.quiet_images < 0:
            raise CaptchaStreamError(f"{where}.quiet_images: must be >= 0 (0 = off), got {self.quiet_images}")
        for name in ("log_every", "eval_every", "checkpoint_every", "max_bad_steps"):
            if getattr(self, name) < 1:
                raise CaptchaStreamError(f"{where}.{name}: must be at least 1, got {getattr(self, name)}")


@dataclass
class EvalConfig:
    # The frozen test set: exported with this seed and size when missing. It reports accuracy
    # (evaluate.py, and once at the end of training) and never chooses anything.
    test_dir: str = "data/test"
    test_size: int = 2000
    test_seed: int = 1_000_003
    # false: training ends without reading the test set, for candidates still to be chosen on
    # other sets; a number seen before choosing would tempt the choice.
    final_test: bool = True
    # The frozen validation set training evaluates on and picks best.pt by: a different seed,
    # so the checkpoint is not chosen on the images its accuracy is reported on.
    val_dir: str = "data/val"
    val_size: int = 2000
    val_seed: int = 2_000_003
    batch_size: int = 256
    # 0 = greedy decoding, N > 0 = beam search of width N.
    beam: int = 0
    # Beam search answers only with data.min_length..max_length symbols (greedy ignores it).
    length_prior: bool = True
    # Test-time shifts: [2, 4] also reads each image moved 2 and 4 pixels left and right and
    # answers with the reading the views agree on best (captcha_stream/reader/tta.py); 1 + 2 x len
    # forward passes. Not used by the validation runs during training. [] = off.
    tta: list[int] = field(default_factory=list)
    samples: int = 10
    # Before each validation during training, BatchNorm's statistics are measured anew for the weights
    # being read, on this many training-stream images (train/batchnorm.py): the running averages lag
    # weights that move fast at high learning rates. 0 = read with the running averages.
    bn_refresh: int = 1024

    def validate(self, where: str = "eval") -> None:
        if self.test_size < 1:
            raise CaptchaStreamError(f"{where}.test_size: must be at least 1, got {self.test_size}")
        if self.test_seed < 0:
            raise CaptchaStreamError(f"{where}.test_seed: must be >= 0, got {self.test_seed}")
        if self.val_size < 1:
            raise CaptchaStreamError(f"{where}.val_size: must be at least 1, got {self.val_size}")
        if self.val_seed < 0:
            raise CaptchaStreamError(f"{where}.val_seed: must be >= 0, got {self.val_seed}")
        if self.batch_size < 1:
            raise CaptchaStreamError(f"{where}.batch_size: must be at least 1, got {self.batch_size}")
        if self.beam < 0:
            raise CaptchaStreamError(f"{where}.beam: must be >= 0, got {self.beam}")
        if self.samples < 0:
            raise CaptchaStreamError(f"{where}.samples: must be >= 0, got {self.samples}")
        if self.bn_refresh < 0:
            raise CaptchaStreamError(f"{where}.bn_refresh: must be >= 0 (0 = off), got {self.bn_refresh}")

    def check_sets_apart(self, where: str = "eval") -> None:
        """Refuse a validation set that is the test set. Checked when training starts, not on
        every load: a checkpoint only read for evaluation does not choose anything."""
        if self.val_seed == self.test_seed:
            raise CaptchaStreamError(
                f"{where}.val_seed: must differ from {where}.test_seed ({self.test_seed}), "
                "or best.pt would be chosen on the test set"
            )
        if os.path.normpath(self.val_dir) == os.path.normpath(self.test_dir):
            raise CaptchaStreamError(
                f"{where}.val_dir: must differ from {where}.test_dir ({self.test_dir}), "
                "or best.pt would be chosen on the test set"
            )


def check_device_name(name: str, where: str) -> None:
    """auto, cpu, cuda, cuda:N, mps (or mps:0): every command's device names pass this one check."""
    kind, colon, index = name.partition(":")
    if name == "auto" or (kind in ("cpu", "cuda", "mps") and (not colon or index.isdigit())):
        return
    raise CaptchaStreamError(f"{where}: must be auto, cpu, cuda, cuda:N or mps, got {name!r}")


@dataclass
class AddonConfig:
    """A reader stage trained on its own (python -m captcha_stream train-addon KIND): the denoiser, or
    the second look's glyph classifier. Its captchas are the config's `data`."""

    steps: int = 6000
    batch_size: int = 16
    lr: float = 0.002
    warmup_steps: int = 200
    weight_decay: float = 0.0
    seed: int = 19
    # Measured on `val_size` held-out examples (another seed) every `eval_every` steps, and saved.
    eval_every: int = 500
    val_size: int = 500
    # torch threads of the trainer (one DataLoader worker renders beside it).
    threads: int = 1
    # Go on from these weights (a train-addon file, or a checkpoint carrying the stage).
    init_from: str = ""
    # denoiser: its channels, and the columns of each full-height training crop.
    width: int = 24
    crop: int = 80
    # second look: the two symbols it tells apart, and how far (pixels) a training crop's centre may
    # sit off the glyph's (at reading time the centre comes from a CTC peak, a few pixels off).
    symbols: str = "0O"
    jitter: int = 0

    def validate(self, where: str = "addon") -> None:
        for name in ("steps", "batch_size", "eval_every", "val_size", "threads", "width", "crop"):
            if getattr(self, name) < 1:
                raise CaptchaStreamError(f"{where}.{name}: must be at least 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "seed", "jitter"):
            if getattr(self, name) < 0:
                raise CaptchaStreamError(f"{where}.{name}: must be >= 0, got {getattr(self, name)}")
        if not self.lr > 0:
            raise CaptchaStreamError(f"{where}.lr: must be > 0, got {self.lr}")
        if not self.weight_decay >= 0:
            raise CaptchaStreamError(f"{where}.weight_decay: must be >= 0, got {self.weight_decay}")
        if len(self.symbols) != 2 or self.symbols[0] == self.symbols[1]:
            raise CaptchaStreamError(f"{where}.symbols: must be two different symbols, got {self.symbols!r}")


def check_tta(offsets: Sequence[int], data: DataConfig, where: str = "eval.tta") -> None:
    """Refuse test-time shifts that are not distinct positive offsets small enough to keep the text in."""
    for pixels in offsets:
        if pixels < 1:
            raise CaptchaStreamError(f"{where}: offsets must be >= 1 pixel, got {pixels}")
        if pixels * 8 > data.width:
            raise CaptchaStreamError(f"{where}: {pixels} pixels is more than 1/8 of data.width ({data.width})")
    if len(set(offsets)) != len(offsets):
        raise CaptchaStreamError(f"{where}: an offset is repeated in {list(offsets)}")


def parse_tta(text: str, where: str = "--tta") -> list[int]:
    """'2,4' -> [2, 4]; '0' or '' -> [] (off)."""
    try:
        offsets = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise CaptchaStreamError(f"{where}: expected pixel offsets like 2 or 2,4, got {text!r}") from None
    return [] if offsets == [0] else offsets


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    addon: AddonConfig = field(default_factory=AddonConfig)
    # Where the config came from; names the default run directory.
    name: str = "default"

    def validate(self, check_files: bool = True) -> None:
        """Check every section; `check_files=False` skips font files (a checkpoint from elsewhere)."""
        self.data.validate("data", check_files)
        self.model.validate("model")
        self.optim.validate("optim")
        self.train.validate("train")
        self.eval.validate("eval")
        self.addon.validate("addon")
        check_tta(self.eval.tta, self.data, "eval.tta")
        for ch in self.train.focus_symbols:
            if ch not in self.data.charset:
                raise CaptchaStreamError(f"train.focus_symbols: symbol {ch!r} is not in data.charset")
        if self.train.quiet_images and (self.train.train_dir or self.data.generator):
            source = "train.train_dir" if self.train.train_dir else "data.generator"
            raise CaptchaStreamError(
                f"train.quiet_images: draws the package's scheme without its noise; {source} makes its own images"
            )
        if self.train.train_dir and self.symbol_weights() is not None:
            raise CaptchaStreamError(
                "train.focus_symbols: shapes the rendered stream's labels; a train_dir run reads its labels from disk"
            )

    def symbol_weights(self) -> list[float] | None:
        """Relative draw weights of data.charset's symbols in training labels (None = uniform)."""
        focus, weight = self.train.focus_symbols, self.train.focus_weight
        if not focus or weight == 1.0:
            return None
        return [weight if ch in focus else 1.0 for ch in self.data.charset]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def beam_lengths(self) -> tuple[int, int] | None:
        """The length prior beam search applies, or None."""
        return (self.data.min_length, self.data.max_length) if self.eval.length_prior else None


def _check_type(value: Any, hint: Any, key: str) -> Any:
    """Return `value` as the type `hint` asks for, or raise naming `key`."""
    origin = typing.get_origin(hint)
    if origin is list:
        (item_hint,) = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise CaptchaStreamError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        return [_check_type(v, item_hint, f"{key}[{i}]") for i, v in enumerate(value)]
    if hint is bool:
        if not isinstance(value, bool):
            raise CaptchaStreamError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        # bool is an int in Python; `steps: true` is still a mistake.
        if isinstance(value, bool) or not isinstance(value, int):
            raise CaptchaStreamError(f"{key}: expected an integer, got {value!r}")
        if not -(2**63) <= value < 2**63:
            # Seeds and sizes reach torch as 64-bit integers.
            raise CaptchaStreamError(f"{key}: {value} is out of range (64-bit integers only)")
        return value
    if hint is float:
        if isinstance(value, str):
            # PyYAML follows YAML 1.1, which reads 1e-3 (no dot) as a string.
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CaptchaStreamError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            # NaN passes every comparison a check could make (and turns grad clipping off silently).
            raise CaptchaStreamError(f"{key}: must be a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            # YAML reads `charset: 0123456789` as an integer; a string was meant.
            if isinstance(value, int) and not isinstance(value, bool):
                raise CaptchaStreamError(f"{key}: expected a string, got number {value!r}; quote it")
            raise CaptchaStreamError(f"{key}: expected a string, got {value!r}")
        return value
    raise AssertionError(f"unsupported config type {hint!r} for {key}")


def from_dict(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass `cls` from nested plain data, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise CaptchaStreamError(f"{where or 'config'}: expected a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        full = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise CaptchaStreamError(f"unknown config key {full!r}; valid keys: {', '.join(names)}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = from_dict(hint, value, full)
        else:
            kwargs[key] = _check_type(value, hint, full)
    return cls(**kwargs)


def _read_yaml(path: Path) -> dict[str, Any]:
    if path.is_dir():
        raise CaptchaStreamError(f"{path}: is a directory, expected a YAML config file")
    if path.exists() and not path.is_file():
        raise CaptchaStreamError(f"{path}: is not a regular file, expected a YAML config file")
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise CaptchaStreamError(f"{path}: over {MAX_CONFIG_BYTES // 1000} kB, not a config file")
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise CaptchaStreamError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CaptchaStreamError(f"{path}: cannot read config: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise CaptchaStreamError(f"{path}: YAML syntax error{at}: {problem}") from None
    if data is None:
        # Most likely the wrong file (or one cut short): the defaults are had by naming no config.
        raise CaptchaStreamError(f"{path}: empty config file (no settings in it); leave --config out for the defaults")
    if not isinstance(data, dict):
        raise CaptchaStreamError(f"{path}: expected a mapping of sections at the top, got {type(data).__name__}")
    return data


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise CaptchaStreamError(f"--set {dotted}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """Parse `section.key=value`; the value is read as YAML so numbers and lists work."""
    if "=" not in text:
        raise CaptchaStreamError(f"--set {text!r}: expected section.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or "." not in key:
        raise CaptchaStreamError(f"--set {text!r}: expected section.key=value, e.g. train.steps=1000")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if key.endswith("charset") and not isinstance(value, str):
        value = raw  # a charset like 0123456789 must stay a string
    return key, value


def resolve_config(given: str | None) -> Path:
    """A config file as given, or a config by name (`cpu`, `configs/cpu.yaml`): looked for here, then in
    the repository the package runs from, then in the copy an installed package carries."""
    path = Path(given or "configs/stream.yaml")
    if path.exists() or path.is_absolute():
        return path
    name = path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml"
    here = Path(__file__).resolve().parent
    for folder in (Path("configs"), here.parent / "configs", here / "configs"):
        if (folder / name).is_file():
            return folder / name
    return path  # load_config says it is missing, naming it


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
    validate: bool = True,
) -> Config:
    """Load a config from YAML (or defaults when `path` is None) and apply dotted overrides."""
    data: dict[str, Any] = {}
    name = "default"
    if path is not None:
        p = Path(path)
        data = _read_yaml(p)
        name = p.stem
    data.setdefault("name", name)
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, value)
    try:
        cfg = from_dict(Config, data)
    except CaptchaStreamError as exc:
        if path is not None:
            raise CaptchaStreamError(f"{path}: {exc}") from None
        raise
    if validate:
        try:
            cfg.validate()
        except CaptchaStreamError as exc:
            if path is not None:
                raise CaptchaStreamError(f"{path}: {exc}") from None
            raise
    return cfg


def config_from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a Config saved by `Config.to_dict` (e.g. inside a checkpoint)."""
    cfg = from_dict(Config, data)
    # Fonts only matter for rendering; a checkpoint must load on a machine without them.
    cfg.validate(check_files=False)
    return cfg


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`base` with dotted `section.key` overrides applied (a deep copy)."""
    out = json.loads(json.dumps(base))
    for key, value in overrides.items():
        _set_dotted(out, key, value)
    return out


# Settings a resumed run may change without leaving the path an uninterrupted run takes:
# where it runs, how often it reports, and what it is measured on. Not train.steps: the
# cosine schedule is laid over the total, so a longer run changes the lr from here on.
_RESUME_NEUTRAL = (
    "train.run_dir",
    "train.device",
    "train.num_workers",
    "train.log_every",
    "train.eval_every",
    "train.checkpoint_every",
    "train.init_from",
    "eval.",
    "addon.",
)


def changed_on_resume(saved: dict[str, Any], overrides: dict[str, Any]) -> list[str]:
    """The overrides that change the saved run's training, as 'key old -> new' (stream, model, optimizer)."""
    changes = []
    for key, value in overrides.items():
        if key.startswith(_RESUME_NEUTRAL):
            continue
        node: Any = saved
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node != value:
            changes.append(f"{key} {node!r} -> {value!r}")
    return changes
