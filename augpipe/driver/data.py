"""Datasets and loaders for the CLI: named data or an image folder, carved
into seeded train / validation subsets, plus a test split."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..sources import ArraySource, FashionMNIST, Source, open_source

DATASETS = ("fashion-mnist",)
EVAL_BATCH = 512


class Subset(Source):
    """The samples `indices` of another source (for sources without a fixed shape)."""

    def __init__(self, base: Source, indices):
        self.base, self.indices = base, np.asarray(indices, dtype=np.int64)
        self.labels, self.classes, self.skipped = base.labels[self.indices], base.classes, []

    def load(self, index: int):
        return self.base.load(int(self.indices[self._check_index(index)]))

    def describe(self, index: int) -> str:
        return self.base.describe(int(self.indices[self._check_index(index)]))


@dataclass
class Data:
    train: Source
    val: Source | None
    test: Source | None
    in_channels: int
    num_classes: int


def _subset(source: Source, idx: np.ndarray) -> Source:
    if isinstance(source, ArraySource):
        return ArraySource(source.images[idx], source.labels[idx], name=source.name, classes=source.classes)
    return Subset(source, idx)


def make_data(data: str, train_size: int | None = None, val_size: int = 0, seed: int = 0,
              channels: int = 1, test_size: int | None = None) -> Data:
    """Open `data` and split it.

    Args:
        data: "fashion-mnist" (train split; test: fashion-mnist:test), an
            image folder: root/<class>/<image>, or root/train + root/test (or val),
            or "litdata:DIR_OR_URL" (without train_size/val_size the whole dataset
            trains in litdata's order; a subset of it is read sample by sample).
        train_size: training samples, a seeded subset (default: all left after val).
        val_size: samples held out of the training split for validation (seeded).
        seed: the split's seed.
        channels: Fashion-MNIST only: 1 (grey) or 3 (repeated).
        test_size: a seeded subset of the test split (default: all of it).

    Raises:
        ValueError: unknown data, or sizes the dataset cannot hold.
    """
    if data == "fashion-mnist":
        full, test = FashionMNIST("train", channels=channels), FashionMNIST("test", channels=channels)
    elif data.startswith("litdata:"):
        full, test = open_source(data), None
        if not val_size and not train_size:  # the whole dataset trains: it keeps streaming in litdata's order
            return Data(train=full, val=None, test=None, num_classes=len(full.classes),
                        in_channels=full.fixed_shape[0] if full.fixed_shape is not None else 3)
    elif Path(data).is_dir():
        root = Path(data)
        if (root / "train").is_dir():
            full = open_source(root / "train")
            held = next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
            test = open_source(held) if held is not None else None
        else:
            full, test = open_source(root), None
    else:
        raise ValueError(f"unknown data {data!r}; choose one of {', '.join(DATASETS)}, an image folder path "
                         "(root/<class>/<image>, or root/train and root/test) or litdata:DIR_OR_URL")
    n = len(full)
    for name, value in (("train_size", train_size), ("val_size", val_size), ("test_size", test_size)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    if val_size + (train_size or 1) > n:
        raise ValueError(f"{data} has {n} training samples: cannot hold val_size={val_size} "
                         f"+ train_size={train_size or 1}")
    order = np.random.default_rng([seed, 7321]).permutation(n)
    val_idx, rest = order[:val_size], order[val_size:]
    train_idx = np.sort(rest[:train_size] if train_size else rest)
    if test is not None and test_size is not None and test_size < len(test):
        test = _subset(test, np.sort(np.random.default_rng([seed, 7322]).permutation(len(test))[:test_size]))
    shape = full.fixed_shape
    return Data(train=_subset(full, train_idx), val=_subset(full, np.sort(val_idx)) if val_size else None,
                test=test, in_channels=shape[0] if shape is not None else 3, num_classes=len(full.classes))


def make_loaders(data: Data, *, batch_size: int, magnitude: float, seed: int, workers: int, policy="randaugment",
                 size=None, device="cpu", mix=None, erase=None, repeats: int = 1):
    """(train, val or None, test or None) augpipe Loaders; evaluation ones use
    train=False (no augmentation, no shuffle, every sample). `mix`/`erase`
    and `repeats` (repeated augmentation) go to the training loader."""
    from ..loader import Loader

    common = dict(num_workers=workers, output="float", size=size, device=device, seed=seed)
    train = Loader(data.train, batch_size=batch_size, policy=policy, magnitude=magnitude, train=True, mix=mix,
                   erase=erase, repeats=repeats, **common)
    evals = [eval_loader(s, workers=workers, size=size, device=device) if s is not None else None
             for s in (data.val, data.test)]
    return train, evals[0], evals[1]


def eval_loader(source: Source, *, workers: int, size=None, device="cpu"):
    """An evaluation Loader: train=False (no augmentation, no shuffle, every
    sample). Over the training subset it measures memorisation: accuracy on
    the training images as the model sees them at test time."""
    from ..loader import Loader

    return Loader(source, batch_size=EVAL_BATCH, policy="identity", train=False, num_workers=workers,
                  output="float", size=size, device=device, seed=0)

