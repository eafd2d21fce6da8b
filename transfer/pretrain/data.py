"""The pretraining data stream: images of an ImageFolder split, two views each, in a resumable order.

What a step sees is a pure function of (seed, epoch, batch index): the order of
an epoch is a permutation seeded by (seed, epoch), and the views of an image by
(seed, epoch, index) (`transfer.rng.sample_seed`). So a run resumed at step k sees
exactly what an uninterrupted run sees from step k, with any number of workers,
and process r of W always takes slice r of each global batch.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.datasets import ImageFolder

from transfer.data import check_command, check_dataset, find_dataset, read_rgb
from transfer.errors import UserError
from transfer.pretrain.views import MoCoV2Views
from transfer.rng import sample_seed


def find_train_images(data: str | os.PathLike | None, decode_images: bool = False) -> Path:
    """The `train` folder of the ImageFolder dataset at (or under) `data`, checked (every pixel if `decode_images`)."""
    root = find_dataset("imagefolder", data)
    check_dataset("imagefolder", root, splits=("train",), decode_images=decode_images)
    return root / "train"


class TwoViewImages(Dataset):
    """ImageFolder images (labels unused): item `(index, epoch)` -> (view1, view2, params1, params2).

    An image that fails to decode stops the run with its path (BadImageError), not a traceback.
    """

    def __init__(self, root: str | os.PathLike, views: MoCoV2Views, seed: int):
        self.folder = ImageFolder(str(root))
        self.views, self.seed = views, seed
        self.hint = check_command("imagefolder", Path(root).parent)

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        index, epoch = key
        path, _ = self.folder.samples[index]
        image = read_rgb(path, self.hint)  # PIL RGB, as ImageFolder's loader
        return self.views(image, sample_seed(self.seed, epoch, index))


class ResumableSampler(Sampler):
    """Yields `(index, epoch)` for this process: its slice of each whole global batch of `epoch`, from `start_batch`."""

    def __init__(self, num_images: int, batch_per_process: int, world_size: int = 1, rank: int = 0, seed: int = 0):
        self.num_images, self.batch, self.world, self.rank, self.seed = (num_images, batch_per_process, world_size,
                                                                         rank, seed)
        self.steps_per_epoch = num_images // (batch_per_process * world_size)  # the last partial batch is dropped
        if self.steps_per_epoch == 0:
            raise UserError(f"the dataset has {num_images} images, fewer than one global batch of "
                            f"{batch_per_process * world_size}; lower train.batch_size or add images")
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Iterate `epoch` from its batch `start_batch` (where a resumed run left off)."""
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_batch) * self.batch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.num_images, generator=generator).tolist()
        global_batch = self.batch * self.world
        for b in range(self.start_batch, self.steps_per_epoch):
            first = b * global_batch + self.rank * self.batch
            for index in order[first:first + self.batch]:
                yield index, self.epoch


def build_loader(dataset: TwoViewImages, sampler: ResumableSampler, workers: int, pin_memory: bool) -> DataLoader:
    """The DataLoader over `sampler`; workers persist across epochs (the sampler runs in this process)."""
    return DataLoader(dataset, batch_size=sampler.batch, sampler=sampler, num_workers=workers, drop_last=True,
                      pin_memory=pin_memory, persistent_workers=workers > 0,
                      prefetch_factor=4 if workers > 0 else None)
