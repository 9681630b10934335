"""Training streams: freshly rendered captchas (CaptchaStream) or a labelled folder (FolderStream).

Sample `i` of rank `r` is rendered from seed `derive_seed(seed, r, i)`, so the stream is
a pure function of (seed, rank, index). DataLoader workers split the indices between
them in blocks: worker `w` of `W` renders blocks `w, w + W, w + 2W, ...`. With
`block_size` equal to the DataLoader's batch size, the DataLoader's round-robin over
workers hands out blocks 0, 1, 2, ... in order, so the batches are the same whatever
the number of workers, and a resumed run restarts the stream at `start = steps * batch`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from ..config import DataConfig
from ..model.codec import Codec
from .images import preprocess
from .render import Renderer, derive_seed


def distributed_rank() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class IndexedStream(IterableDataset):
    """Base of the streams: item `i` is a pure function of (seed, rank, i).

    Subclasses say how to make item `i` (`item`) and what each worker must build first
    (`setup`, called inside the worker process so nothing is shared through fork).
    """

    def __init__(
        self,
        seed: int = 0,
        num_samples: int | None = None,
        start: int = 0,
        block_size: int = 1,
        rank: int | None = None,
        augment: float = 0.0,
    ) -> None:
        super().__init__()
        if block_size < 1:
            raise ValueError("block_size must be at least 1")
        self.augment = augment
        self.seed = seed
        self.num_samples = num_samples
        self.start = start
        self.block_size = block_size
        self.rank = rank

    def rank_seed(self) -> int:
        rank = self.rank if self.rank is not None else distributed_rank()[0]
        return derive_seed(self.seed, rank)

    def indices(self, worker: int, num_workers: int) -> Iterator[int]:
        """The sample indices this worker makes, in order."""
        block = worker
        while True:
            first = self.start + block * self.block_size
            for i in range(first, first + self.block_size):
                if self.num_samples is not None and i >= self.num_samples:
                    return
                yield i
            block += num_workers

    def setup(self) -> None:
        pass

    def item(self, rank_seed: int, index: int) -> tuple[torch.Tensor, str]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[tuple[torch.Tensor, str]]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        self.setup()
        rank_seed = self.rank_seed()
        for i in self.indices(worker, num_workers):
            image, label = self.item(rank_seed, i)
            if self.augment > 0:
                image = self.maybe_jitter(image, rank_seed, i)
            yield image, label

    def maybe_jitter(self, image: torch.Tensor, rank_seed: int, index: int) -> torch.Tensor:
        # Seeded by (rank seed, index) like the item itself, so augmented runs still
        # resume exactly and do not depend on the number of workers.
        gen = torch.Generator().manual_seed(derive_seed(rank_seed, index, 2))
        if torch.rand(1, generator=gen).item() >= self.augment:
            return image
        return jitter(image, derive_seed(rank_seed, index, 3))


class CaptchaStream(IndexedStream):
    """Yields `(uint8 image tensor (C, H, W), label)` rendered on the fly."""

    def __init__(
        self,
        data: DataConfig,
        seed: int = 0,
        num_samples: int | None = None,
        start: int = 0,
        block_size: int = 1,
        rank: int | None = None,
        symbol_weights: Sequence[float] | None = None,
        quiet_images: int = 0,
    ) -> None:
        super().__init__(seed, num_samples, start, block_size, rank, augment=data.augment)
        self.data = data
        self.symbol_weights = symbol_weights
        self.quiet_images = quiet_images
        self._renderer: Renderer | None = None
        self._quiet: Renderer | None = None
        self._last: tuple[int, torch.Tensor, str] | None = None

    def setup(self) -> None:
        if self._renderer is None:
            self._renderer = Renderer(self.data, seed=0, symbol_weights=self.symbol_weights)
        if self.quiet_images > 0 and self._quiet is None:
            self._quiet = Renderer(self.data, seed=0, symbol_weights=self.symbol_weights, noise=False)

    def renderer_for(self, index: int) -> Renderer:
        """The scheme's renderer, or its noise-free twin for the curriculum's first images. By index,
        not by arrival, so the split is the same for every number of workers and on resume."""
        if self._quiet is not None and index < self.quiet_images:
            return self._quiet
        assert self._renderer is not None
        return self._renderer

    def item(self, rank_seed: int, index: int) -> tuple[torch.Tensor, str]:
        echo = self.data.echo
        if echo == 1:
            image, label = self.renderer_for(index).sample_at(rank_seed, index)
            return preprocess(image, self.data), label
        # Echoes of one rendering are consecutive indices, so the worker that renders an
        # image usually serves its echoes too, from this one-entry cache.
        base = index // echo
        if self._last is None or self._last[0] != base:
            image, label = self.renderer_for(base * echo).sample_at(rank_seed, base)
            self._last = (base, preprocess(image, self.data), label)
        _, tensor, label = self._last
        return jitter(tensor, derive_seed(rank_seed, index, 1)), label


def jitter(image: torch.Tensor, seed: int) -> torch.Tensor:
    """A small random affine change (rotation, shift, scale) of a uint8 image, seeded."""
    from torchvision.transforms.v2 import functional as TF

    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(4, generator=gen).tolist()
    _, h, w = image.shape
    return TF.affine(
        image,
        angle=(u[0] - 0.5) * 6.0,
        translate=[round((u[1] - 0.5) * 0.06 * w), round((u[2] - 0.5) * 0.06 * h)],
        scale=0.95 + 0.1 * u[3],
        shear=[0.0, 0.0],
        interpolation=TF.InterpolationMode.BILINEAR,
        fill=[255.0] * image.shape[0],  # the captcha background is near white
    )


class FolderStream(IndexedStream):
    """An endless stream over a labelled folder: a fresh seeded permutation each epoch.

    Item `i` is position `i % n` of epoch `i // n`'s permutation, so folder training
    resumes exactly and splits across workers and ranks the same way as rendering.
    """

    def __init__(
        self,
        dataset: Dataset,
        seed: int = 0,
        start: int = 0,
        block_size: int = 1,
        rank: int | None = None,
        augment: float = 0.0,
    ) -> None:
        super().__init__(seed, None, start, block_size, rank, augment)
        self.dataset = dataset
        self._perm: tuple[int, torch.Tensor] | None = None

    def item(self, rank_seed: int, index: int) -> tuple[torch.Tensor, str]:
        n = len(self.dataset)
        epoch, pos = divmod(index, n)
        if self._perm is None or self._perm[0] != epoch:
            gen = torch.Generator().manual_seed(derive_seed(rank_seed, epoch))
            self._perm = (epoch, torch.randperm(n, generator=gen))
        return self.dataset[int(self._perm[1][pos])]


class Batch(NamedTuple):
    images: torch.Tensor  # uint8 (N, C, H, W)
    targets: torch.Tensor  # int64, all labels' ids concatenated (CTC's 1-D form)
    target_lengths: torch.Tensor  # int64 (N,)
    labels: list[str]


class CtcCollate:
    """Collate function for CTC: stacks images and concatenates encoded labels."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec

    def __call__(self, samples: Sequence[tuple[torch.Tensor, str]]) -> Batch:
        images = torch.stack([img for img, _ in samples])
        labels = [label for _, label in samples]
        ids = [self.codec.encode(label) for label in labels]
        targets = torch.tensor([i for seq in ids for i in seq], dtype=torch.long)
        lengths = torch.tensor([len(seq) for seq in ids], dtype=torch.long)
        return Batch(images, targets, lengths, labels)
