"""Hard-example mining picks the captchas a model reads worst, in eval mode, with their own targets."""

import contextlib

import torch
from torch import nn

from captcha_stream.data.stream import Batch, CtcCollate
from captcha_stream.model.codec import Codec
from captcha_stream.train.hard_examples import hardest, sample_losses, subset

CODEC = Codec("ab")


class PixelReader(nn.Module):
    """Reads 'a' on every frame as surely as the image's first pixel is bright; records its mode."""

    def __init__(self, frames: int = 6) -> None:
        super().__init__()
        self.frames = frames
        self.modes: list[bool] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        n = images.shape[0]
        logits = torch.zeros(self.frames, n, CODEC.num_classes)
        logits[:, :, CODEC.encode("a")[0]] = images[:, 0, 0, 0].float() / 25.0
        return logits.log_softmax(2)


def pool(brightness: list[int], labels: list[str]) -> Batch:
    images = [torch.full((1, 4, 4), v, dtype=torch.uint8) for v in brightness]
    return CtcCollate(CODEC)(list(zip(images, labels)))


def test_subset_recuts_the_concatenated_targets():
    batch = pool([1, 2, 3, 4], ["a", "abba", "bb", "bab"])
    picked = subset(batch, torch.tensor([1, 3]))
    assert picked.labels == ["abba", "bab"]
    assert picked.targets.tolist() == CODEC.encode("abba") + CODEC.encode("bab")
    assert picked.target_lengths.tolist() == [4, 3]
    assert [img[0, 0, 0].item() for img in picked.images] == [2, 4]


def test_hardest_keeps_the_highest_losses_in_stream_order():
    model = PixelReader().train()
    batch = pool([200, 10, 150, 0, 90, 250], ["a", "a", "a", "a", "a", "a"])
    losses = sample_losses(model, batch, torch.device("cpu"), contextlib.nullcontext())
    # Darker images read 'a' less surely: their loss is higher.
    assert losses.argsort(descending=True).tolist() == [3, 1, 4, 2, 0, 5]
    picked = hardest(model, batch, 3, torch.device("cpu"), contextlib.nullcontext())
    assert [img[0, 0, 0].item() for img in picked.images] == [10, 0, 90]
    # Scored in eval mode (no dropout draws, no batch-norm updates), then back to training.
    assert model.modes == [False, False] and model.training


def test_an_impossible_label_counts_as_hardest():
    # Six frames cannot hold 'aaaa' (each repeat needs a blank between): an infinite loss.
    model = PixelReader(frames=6)
    batch = pool([0, 0, 250], ["a", "b", "aaaa"])
    picked = hardest(model, batch, 1, torch.device("cpu"), contextlib.nullcontext())
    assert picked.labels == ["aaaa"]
