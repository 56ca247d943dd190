"""The loaders a bench row times: torchvision's DataLoader baselines and
augpipe's own Loader, each a factory args dict -> an iterable of
(images, labels) batches. Run in the row's child process."""
from __future__ import annotations

from . import data as benchdata

# A row is a factory: args dict -> an iterable of (images, labels) batches.

def _tv_loader(dataset, args):
    import torch
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_size=args["batch"], shuffle=True, drop_last=True, num_workers=args["workers"],
                      persistent_workers=args["workers"] > 0, generator=torch.Generator().manual_seed(0))


def _tv_ops(randaugment: bool, args, first):
    from torchvision.transforms import v2

    ops = list(first) + [v2.RandomHorizontalFlip()]
    if randaugment:
        ops.append(v2.RandAugment(num_ops=2, magnitude=int(args["magnitude"]), num_magnitude_bins=31))
    return v2.Compose(ops)


def tv_32(args, randaugment=True):
    from torch.utils.data import Dataset
    from torchvision.transforms import v2

    src = benchdata.fashion_32(args["channels"])
    pixels, targets = src.images, src.labels
    transform = _tv_ops(randaugment, args, [v2.RandomCrop(32, padding=4)])

    class Images(Dataset):
        def __len__(self):
            return len(src)

        def __getitem__(self, i):
            return transform(pixels[i]), int(targets[i])

    return _tv_loader(Images(), args)


def tv_224(args, randaugment=True):
    from torch.utils.data import Dataset
    from torchvision.io import ImageReadMode, decode_jpeg, read_file
    from torchvision.transforms import v2

    from ...sources import FolderSource

    src = FolderSource(benchdata.imagenet_like(args["data_root"]))
    transform = _tv_ops(randaugment, args, [v2.RandomResizedCrop(224, antialias=True)])

    class Jpegs(Dataset):
        def __len__(self):
            return len(src)

        def __getitem__(self, i):
            image = decode_jpeg(read_file(src.describe(i)), mode=ImageReadMode.RGB)
            return transform(image), int(src.labels[i])

    return _tv_loader(Jpegs(), args)


def augpipe_loader(args, data="32px", caps=False, backend="torch", randaugment=True, options=None):
    """augpipe's Loader with RandAugment(2) (or crop + flip only) on a bench data set (any backend)."""
    import numpy as np

    from ...core.policy import Identity, RandAugment
    from ...loader import Loader

    source = benchdata.fashion_32(args["channels"]) if data == "32px" else benchdata.imagenet_like(args["data_root"])
    loader = Loader(source, batch_size=args["batch"], policy=RandAugment(2) if randaugment else Identity(),
                    magnitude=args["magnitude"], backend=backend, num_workers=args["workers"], seed=0,
                    size=32 if data == "32px" else 224, backend_options=options)
    if caps:
        rng = np.random.default_rng(0)
        loader.set_caps(rng.uniform(0, args["magnitude"], len(loader.dataset)).astype(np.float32))
    return loader


