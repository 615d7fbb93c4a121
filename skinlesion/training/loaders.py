"""The training run's data loaders: the balanced training set augmented per image (or per batch
on the device), this process's share of the validation images, and a warning when loader
workers and training processes want more CPU cores than there are."""

from __future__ import annotations

import functools
import logging
import os

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, Subset
from torchvision.transforms import v2

from skinlesion.cores import available_cores
from skinlesion.data.arrays import read_manifest
from skinlesion.data.dataset import ImageArrayDataset
from skinlesion.data.folds import FoldData
from skinlesion.data.metadata import FIELDS, encode_metadata
from skinlesion.errors import DataError
from skinlesion.model.architectures import normalization
from skinlesion.training.distributed import World
from skinlesion.training.params import TrainRun
from skinlesion.transforms.augment import for_real_images, train_transform
from skinlesion.transforms.normalize import normalize

log = logging.getLogger(__name__)


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    shuffle: bool,
    workers: int,
    device: torch.device,
    seed: int,
    sampler: Sampler | None = None,
) -> DataLoader:
    # Workers are started anew each epoch, seeded from the generator, which run_epoch() reseeds per
    # epoch: epoch k draws the same order and augmentations whether or not the run resumed.
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(seed),
    )


def crowded_cores(workers: int, processes: int, cores: int) -> str | None:
    """A warning when `processes` training processes with `workers` loader workers each want
    more CPU cores than the `cores` this machine gives them; None when they fit."""
    busy = (workers + 1) * processes
    if busy <= cores:
        return None
    return (
        f"training.num_workers {workers} with {processes} training process(es) makes {busy} busy processes "
        f"on {cores} CPU cores: each training process competes with the loader workers for a core, and on a "
        f"GPU that process launches every kernel (docs/benchmarks.md). Set training.num_workers to at most "
        f"{max(0, cores // processes - 1)}."
    )


def build_loaders(
    params: TrainRun, data: FoldData, device: torch.device, world: World, on_device: bool
) -> tuple[DataLoader, DataLoader]:
    """The training loader (augmenting per image unless `on_device`) and this process's share of
    the validation images.

    Training items are the rows of the balanced manifest, read from prepare-split's arrays; an
    oversampled copy is its source image, augmented afresh each epoch.
    """
    settings, size, augmentation = params.training, params.prepare.image_size, params.augmentation
    mean, std = normalization(params.model.name)
    transform, copy_transform = v2.Identity(), None
    if not on_device:
        transform = train_transform(params=for_real_images(augmentation), size=size, mean=mean, std=std)
        if augmentation.real_images != "augment":
            copy_transform = train_transform(params=augmentation, size=size, mean=mean, std=std)
    manifest, use_metadata = read_manifest(data.balanced, data.classes), params.model.use_metadata
    metadata = encode_metadata(manifest, str(data.balanced)) if use_metadata else None
    if use_metadata and (manifest[list(FIELDS)] == "").all(axis=None):
        raise DataError(
            f"params: model.use_metadata: no training image of {data.balanced} has metadata (data.root has no "
            "metadata CSV, or every age, sex and site is empty): set it to false"
        )
    train_set = ImageArrayDataset(data.prepared, manifest, data.classes, transform, copy_transform, metadata)
    val_metadata = encode_metadata(data.validation, data.where) if use_metadata else None
    val_set = ImageArrayDataset(
        data.prepared, data.validation, data.classes, normalize(mean=mean, std=std), metadata=val_metadata
    )
    warning = crowded_cores(
        settings.num_workers, int(os.environ.get("LOCAL_WORLD_SIZE", world.size)), available_cores()
    )
    if warning and world.main:
        log.warning(warning)
    loader = functools.partial(
        make_loader, batch_size=settings.batch_size // world.size, workers=settings.num_workers, device=device
    )
    if not world.distributed:
        return loader(train_set, shuffle=True, seed=settings.seed), loader(val_set, shuffle=False, seed=settings.seed)
    sampler = DistributedSampler(train_set, num_replicas=world.size, rank=world.rank, seed=settings.seed)
    val_share = Subset(val_set, range(world.rank, len(val_set), world.size))
    return (
        loader(train_set, shuffle=True, seed=settings.seed, sampler=sampler),
        loader(val_share, shuffle=False, seed=settings.seed),
    )
