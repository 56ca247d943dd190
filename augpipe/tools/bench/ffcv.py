"""`augpipe bench --backend ffcv` rows: FFCV's own pipeline and augpipe-ffcv, same .beton.

The .beton files are cached under the bench data root (`ffcv-32px.beton`:
the 32x32 Fashion-MNIST set, raw pixels; `ffcv-224px.beton`: the JPEG
folder, JPEG quality 90, max side 512).
"""
from __future__ import annotations

from pathlib import Path

from . import data as benchdata


def _beton(args, data: str) -> str:
    from ...backends.ffcv import ensure_beton

    root = Path(args["data_root"])
    if data == "32px":
        source = benchdata.fashion_32(args["channels"])
        opts = {"cache": str(root.parent / f"ffcv-32px-c{args['channels']}.beton"), "image_format": "raw"}
    else:
        from ...sources import FolderSource

        source = FolderSource(benchdata.imagenet_like(root))
        opts = {"cache": str(root.parent / "ffcv-224px.beton"), "image_format": "jpg", "max_resolution": 512}
    return str(ensure_beton(source, opts))


def _ffcv_own(args, data: str):
    from ...sources import ffcv_import

    ffcv_import.load()
    from ffcv.fields.basics import IntDecoder
    from ffcv.fields.rgb_image import (
        RandomResizedCropRGBImageDecoder,
        SimpleRGBImageDecoder,
    )
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import (
        RandomHorizontalFlip,
        RandomTranslate,
        Squeeze,
        ToTensor,
        ToTorchImage,
    )

    if data == "32px":
        image = [SimpleRGBImageDecoder(), RandomTranslate(padding=4), RandomHorizontalFlip()]
    else:
        image = [RandomResizedCropRGBImageDecoder((224, 224)), RandomHorizontalFlip()]
    return Loader(_beton(args, data), batch_size=args["batch"], num_workers=args["workers"],
                  order=OrderOption.RANDOM, drop_last=True, seed=0, os_cache=True,
                  pipelines={"image": image + [ToTensor(), ToTorchImage()],
                             "label": [IntDecoder(), ToTensor(), Squeeze()], "index": None})


def _augpipe_ffcv(args, data: str, randaugment: bool = True, caps: bool = False):
    import numpy as np

    from ...core.policy import Identity, RandAugment
    from ...loader import Loader
    from ...sources.beton import BetonSource

    loader = Loader(BetonSource(_beton(args, data)), batch_size=args["batch"],
                    policy=RandAugment(2) if randaugment else Identity(), magnitude=args["magnitude"],
                    num_workers=args["workers"], seed=0, size=32 if data == "32px" else 224, backend="ffcv",
                    backend_options={"batches_ahead": 3})
    if caps:  # as the other backends' caps rows: caps ~ U[0, magnitude] per sample
        rng = np.random.default_rng(0)
        loader.set_caps(rng.uniform(0, args["magnitude"], len(loader.dataset)).astype(np.float32))
    return loader


ROWS = {
    "32px": {
        "FFCV crop+flip (no RandAugment)": lambda a: _ffcv_own(a, "32px"),
        "augpipe-ffcv crop+flip (no RandAugment)": lambda a: _augpipe_ffcv(a, "32px", False),
        "augpipe-ffcv crop+flip+RandAugment": lambda a: _augpipe_ffcv(a, "32px"),
        "augpipe-ffcv, per-sample caps": lambda a: _augpipe_ffcv(a, "32px", caps=True),
    },
    "224px": {
        "FFCV RRC+flip (no RandAugment)": lambda a: _ffcv_own(a, "224px"),
        "augpipe-ffcv RRC+flip (no RandAugment)": lambda a: _augpipe_ffcv(a, "224px", False),
        "augpipe-ffcv RRC+flip+RandAugment": lambda a: _augpipe_ffcv(a, "224px"),
        "augpipe-ffcv, per-sample caps": lambda a: _augpipe_ffcv(a, "224px", caps=True),
    },
}
