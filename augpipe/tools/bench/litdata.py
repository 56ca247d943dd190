"""`augpipe bench --backend litdata` rows: augpipe over a litdata dataset, and torchvision over the same
dataset through litdata's own `StreamingDataLoader` (what a litdata user runs today).

The dataset is the bench's JPEG folder converted once (`augpipe convert --format litdata`: the JPEG
bytes as they are), kept beside it (`litdata-224px/`), or the 32 px set (raw pixels, `litdata-32px-c<C>/`).
"""
from __future__ import annotations

from pathlib import Path

from . import data as benchdata


def dataset(args, data: str) -> Path:
    """The bench data as a litdata dataset, converted on first use."""
    from ...sources.to_litdata import convert_litdata

    root = Path(args["data_root"])
    if data == "32px":
        out = root.parent / f"litdata-32px-c{args['channels']}"
        source = benchdata.fashion_32(args["channels"])
        source = (source.images, source.labels)
    else:
        out = root.parent / "litdata-224px"
        source = benchdata.imagenet_like(root)
    if not (out / "augpipe.json").is_file():
        convert_litdata(source, out, overwrite=out.exists())
    return out


def _augpipe(args, data: str, randaugment: bool = True):
    from ...core.policy import Identity, RandAugment
    from ...loader import Loader

    return Loader(f"litdata:{dataset(args, data)}", batch_size=args["batch"],
                  policy=RandAugment(2) if randaugment else Identity(), magnitude=args["magnitude"],
                  num_workers=args["workers"], seed=0, size=32 if data == "32px" else 224)


def _torchvision(args, data: str):
    """litdata's StreamingDataset + StreamingDataLoader, torchvision v2 decode and transforms per sample."""
    import torch
    from litdata import StreamingDataLoader, StreamingDataset
    from torchvision.io import ImageReadMode, decode_image
    from torchvision.transforms import v2

    from .loaders import _tv_ops

    first = [v2.RandomCrop(32, padding=4)] if data == "32px" else [v2.RandomResizedCrop(224, antialias=True)]
    transform = _tv_ops(True, args, first)
    channels = args["channels"]

    class Images(StreamingDataset):
        def __getitem__(self, index):
            item = super().__getitem__(index)
            data_ = torch.frombuffer(bytearray(item["image"]), dtype=torch.uint8)
            if data == "32px":
                image = data_.view(channels, 32, 32)
            else:
                image = decode_image(data_, mode=ImageReadMode.RGB)
            return transform(image), int(item["label"])

    ds = Images(str(dataset(args, data)), shuffle=True, seed=0, drop_last=True)
    return StreamingDataLoader(ds, batch_size=args["batch"], num_workers=args["workers"], drop_last=True)


ROWS = {
    "32px": {
        "augpipe-torch on litdata crop+flip+RandAugment": lambda a: _augpipe(a, "32px"),
        "torchvision on litdata StreamingDataLoader": lambda a: _torchvision(a, "32px"),
    },
    "224px": {
        "augpipe-torch on litdata RRC+flip+RandAugment": lambda a: _augpipe(a, "224px"),
        "torchvision on litdata StreamingDataLoader": lambda a: _torchvision(a, "224px"),
    },
}
