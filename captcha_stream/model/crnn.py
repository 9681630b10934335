"""CRNN: convolutional features, a bidirectional recurrent layer, a linear head for CTC.

Tensors in, tensors out: no files, no printing, no CLI.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import DataConfig, ModelConfig
from ..errors import CaptchaStreamError


def _stage(
    c_in: int,
    c_out: int,
    convs: int,
    pool: tuple[int, int] | None,
    stride: int = 1,
    kernel: int = 3,
    pool_first: bool = False,
) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(convs):
        k = kernel if i == 0 else 3
        layers += [
            nn.Conv2d(c_in if i == 0 else c_out, c_out, k, stride=stride if i == 0 else 1, padding=k // 2, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        ]
    if pool is not None:
        # Pooling the convolution's output before its normalisation and ReLU gives them a quarter of
        # the elements; in the stem those two cost more than its convolution (a ReLU commutes with a
        # max, a BatchNorm does whenever its scale is positive).
        at = len(layers) - 2 if pool_first else len(layers)
        layers.insert(at, nn.MaxPool2d(pool, pool, ceil_mode=True))
    return nn.Sequential(*layers)


def _pools(model: ModelConfig) -> list[tuple[int, int] | None]:
    """Each stage's max pool. Early pooling stages pool both axes; later ones keep the width,
    which becomes time; an unpooled stem has none."""
    pools: list[tuple[int, int] | None] = [None] if not model.stem_pool else []
    for k in range(model.pooling_stages):
        pools.append((2, 2) if k < model.width_pools else (2, 1))
    return pools


def _stem_kernel(model: ModelConfig) -> int:
    # Without a pool after it, a stride above 2 would skip pixels with a 3x3 kernel. A kernel of
    # 2 * stride - 1 (padding stride - 1) reads every pixel up to the last row and column and,
    # like any odd kernel with padding kernel // 2, gives ceil(size / stride) outputs, as the pooled stem does.
    return 3 if model.stem_pool or model.stem_stride <= 2 else 2 * model.stem_stride - 1


def output_steps(data: DataConfig, model: ModelConfig) -> int:
    """CTC time steps the model emits for an image of the config's width."""
    steps = -(-data.width // model.stem_stride)
    for _ in range(model.width_pools):
        steps = -(-steps // 2)  # ceil_mode pooling
    return steps


def check_fits(data: DataConfig, model: ModelConfig) -> None:
    """CTC needs at least one frame per symbol plus a blank between repeats; ask for 2x."""
    steps = output_steps(data, model)
    if steps < 2 * data.max_length:
        raise CaptchaStreamError(
            f"model emits {steps} time steps for data.width={data.width} with model.width_pools="
            f"{model.width_pools}, fewer than 2 x data.max_length={2 * data.max_length}; "
            "widen the image or lower model.width_pools or model.stem_stride"
        )


class CRNN(nn.Module):
    """uint8 images (N, C, H, W) -> log-probabilities (T, N, classes), blank = class 0."""

    def __init__(self, data: DataConfig, model: ModelConfig, num_classes: int) -> None:
        super().__init__()
        check_fits(data, model)
        stages = []
        c_in = data.channels
        height = -(-data.height // model.stem_stride)
        for i, (c_out, pool) in enumerate(zip(model.cnn_channels, _pools(model))):
            stride, kernel = (model.stem_stride, _stem_kernel(model)) if i == 0 else (1, 3)
            stages.append(_stage(c_in, c_out, 1 if i < 2 else 2, pool, stride, kernel, model.pool_first))
            c_in = c_out
            if pool is not None:
                height = -(-height // 2)
        self.features = nn.Sequential(*stages)
        self.feature_height = height
        rnn_cls = nn.LSTM if model.rnn == "lstm" else nn.GRU
        # Height is folded into the features rather than averaged away: where a stroke sits
        # vertically helps tell case apart (o/O, x/X), which is this task's main confusion.
        self.project = nn.Linear(c_in * height, model.rnn_hidden)
        self.rnn = rnn_cls(
            model.rnn_hidden,
            model.rnn_hidden,
            num_layers=model.rnn_layers,
            bidirectional=model.bidirectional,
            dropout=model.dropout if model.rnn_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(model.dropout)
        self.head = nn.Linear(model.rnn_hidden * (2 if model.bidirectional else 1), num_classes)
        if model.blank_bias:
            # Starting the blank near where CTC drives it anyway skips most of the all-blank
            # plateau a CTC reader starts on (docs/training.md).
            with torch.no_grad():
                self.head.bias[0] = model.blank_bias

    @staticmethod
    def normalize(images: torch.Tensor) -> torch.Tensor:
        """uint8 [0, 255] -> float [-1, 1]; part of the model so every consumer agrees."""
        return images.float().mul(2.0 / 255.0).sub(1.0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.features(self.normalize(images))  # (N, C, H', T)
        n, c, h, t = x.shape
        x = x.permute(3, 0, 1, 2).reshape(t, n, c * h)  # (T, N, C*H')
        x = self.dropout(torch.relu(self.project(x)))
        x, _ = self.rnn(x)
        logits = self.head(self.dropout(x))
        # CTC wants float32 log-probabilities even under autocast.
        return logits.float().log_softmax(dim=2)
