"""`augpipe bench --mix` rows: RandAugment(2, M) with and without CutMix/MixUp
+ RandomErasing, float output (normalised, as a timm recipe feeds its model),
on every backend, against torchvision v2's recipe in a DataLoader.

torchvision's recipe is the one its docs give: RandomErasing(0.25) per sample
in the dataset's transform after ToDtype/Normalize, and
RandomChoice([CutMix, MixUp]) on each batch after the DataLoader. augpipe's:
`Loader(..., output="float", mix=CutMix(1.0) | MixUp(0.8),
erase=RandomErasing(0.25))`.
"""
from __future__ import annotations

from . import data as benchdata
from .loaders import _tv_loader


def _recipe():
    from ...core.mixing import CutMix, MixUp, RandomErasing

    return {"mix": CutMix(1.0) | MixUp(0.8), "erase": RandomErasing(0.25)}


def tv(args, data: str, mixing: bool):
    import torch
    from torch.utils.data import Dataset
    from torchvision.transforms import v2

    if data == "32px":
        src = benchdata.fashion_32(args["channels"])
        first, read = [v2.RandomCrop(32, padding=4)], lambda i: src.images[i]
    else:
        from torchvision.io import ImageReadMode, decode_jpeg, read_file

        from ...sources import FolderSource

        src = FolderSource(benchdata.imagenet_like(args["data_root"]))
        first = [v2.RandomResizedCrop(224, antialias=True)]
        read = lambda i: decode_jpeg(read_file(src.describe(i)), mode=ImageReadMode.RGB)  # noqa: E731
    c = args["channels"] if data == "32px" else 3
    ops = first + [v2.RandomHorizontalFlip(), v2.RandAugment(2, int(args["magnitude"]), 31),
                   v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.5] * c, [0.5] * c)]
    if mixing:
        ops.append(v2.RandomErasing(0.25))
    transform, labels = v2.Compose(ops), src.labels

    class Images(Dataset):
        def __len__(self):
            return len(src)

        def __getitem__(self, i):
            return transform(read(i)), int(labels[i])

    loader = _tv_loader(Images(), args)
    if not mixing:
        return loader
    mix = v2.RandomChoice([v2.CutMix(num_classes=len(src.classes)), v2.MixUp(num_classes=len(src.classes))])
    return _Mixed(loader, mix)


class _Mixed:
    """A DataLoader followed by a batch transform, as torchvision's docs use CutMix/MixUp."""

    def __init__(self, loader, mix):
        self.loader, self.mix = loader, mix

    def __iter__(self):
        for images, labels in self.loader:
            yield self.mix(images, labels)


def augpipe(args, data: str, backend: str, mixing: bool):
    from ...core.policy import RandAugment
    from ...loader import Loader

    if backend == "ffcv":
        from ...sources.beton import BetonSource
        from .ffcv import _beton

        source, options = BetonSource(_beton(args, data)), {"batches_ahead": 3}
    else:
        options = None
        source = benchdata.fashion_32(args["channels"]) if data == "32px" else \
            benchdata.imagenet_like(args["data_root"])
    return Loader(source, batch_size=args["batch"], policy=RandAugment(2), magnitude=args["magnitude"],
                  backend=backend, num_workers=args["workers"], seed=0, size=32 if data == "32px" else 224,
                  output="float", backend_options=options, **(_recipe() if mixing else {}))


BASELINE = "torchvision RandAugment+RE+CutMix/MixUp"
_RECIPE = "+RandomErasing+CutMix/MixUp"


def rows(backend: str) -> dict:
    """Rows per data set: torchvision's and augpipe-torch's, plus `backend`'s ("all": FFCV's and DALI's)."""
    names = ["torch"] + {"all": ["ffcv", "dali"], "torch": []}.get(backend, [backend])
    out = {}
    for data in ("32px", "224px"):
        r = {"torchvision RandAugment, float": lambda a, d=data: tv(a, d, False),
             BASELINE: lambda a, d=data: tv(a, d, True)}
        for b in names:
            r[f"augpipe-{b} RandAugment, float"] = lambda a, d=data, b=b: augpipe(a, d, b, False)
            r[f"augpipe-{b} RandAugment{_RECIPE}"] = lambda a, d=data, b=b: augpipe(a, d, b, True)
        out[data] = r
    return out
