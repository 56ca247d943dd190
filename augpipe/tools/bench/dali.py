"""`augpipe bench --backend dali` rows: DALI's stock RandAugment pipeline and
augpipe's DALI backend, on the same data with the same DALI thread count.

Stock rows are what a DALI user writes: readers.file (or an in-memory
external_source) + decode + random crop + flip + nvidia.dali.auto_aug
.rand_augment(n=2, m=9), magnitude fixed when the pipeline is built. The
augpipe rows run the same RandAugment(2, 9) through the planner with the live
knob and per-sample caps on (caps ~ U[0, 9] per sample). Both hand out
(uint8 torch images, int64 labels) per batch; stock images stay HWC as DALI
makes them (no extra transpose charged to it), augpipe's are NCHW.
"""
from __future__ import annotations

import numpy as np

from . import data as benchdata
from .loaders import augpipe_loader


class _Stock:
    """Iterate a stock DALI pipeline as epochs of (images, labels) torch batches."""

    def __init__(self, pipe, batches: int):
        self.pipe, self.batches = pipe, batches

    def __iter__(self):
        import torch

        for _ in range(self.batches):
            images, labels = self.pipe.run()
            yield torch.from_numpy(np.array(images.as_tensor())), torch.from_numpy(np.array(labels.as_tensor()))


def stock_224(args):
    from nvidia.dali import fn, pipeline_def, types
    from nvidia.dali.auto_aug import rand_augment

    root = benchdata.imagenet_like(args["data_root"])

    @pipeline_def(batch_size=args["batch"], num_threads=args["workers"], device_id=None, enable_conditionals=True,
                  seed=0)
    def pipe():
        jpegs, labels = fn.readers.file(file_root=str(root), random_shuffle=True, name="reader")
        images = fn.decoders.image(jpegs, device="cpu", output_type=types.RGB)
        images = fn.random_resized_crop(images, size=(224, 224), antialias=True)
        images = fn.flip(images, horizontal=fn.random.coin_flip())
        images = rand_augment.rand_augment(images, n=2, m=int(args["magnitude"]), shape=(224, 224), fill_value=0)
        return images, labels

    p = pipe()
    p.build()
    n = p.epoch_size("reader")
    return _Stock(p, n // args["batch"])


def stock_32(args):
    from nvidia.dali import fn, pipeline_def
    from nvidia.dali.auto_aug import rand_augment

    src = benchdata.fashion_32(args["channels"])
    hwc = np.ascontiguousarray(src.images.permute(0, 2, 3, 1).numpy())
    labels = np.ascontiguousarray(src.labels, dtype=np.int64)
    batch = args["batch"]
    steps = len(hwc) // batch
    state = {"epoch": 0, "step": 0, "order": np.random.default_rng([0, 0]).permutation(len(hwc))}

    def feed():  # a callable with its own epoch permutation (an iterator source stops after one epoch)
        if state["step"] == steps:
            state["epoch"] += 1
            state["step"] = 0
            state["order"] = np.random.default_rng([0, state["epoch"]]).permutation(len(hwc))
        idx = state["order"][state["step"] * batch:(state["step"] + 1) * batch]
        state["step"] += 1
        return hwc[idx], labels[idx]

    @pipeline_def(batch_size=batch, num_threads=args["workers"], device_id=None, enable_conditionals=True, seed=0)
    def pipe():
        images, label = fn.external_source(source=feed, num_outputs=2, batch=True)
        # pad-4 random crop: pad to 40x40 (a centred out-of-bounds crop), then a random 32x32 window
        images = fn.crop(images, crop=(40, 40), out_of_bounds_policy="pad", fill_values=0)
        images = fn.crop(images, crop=(32, 32), crop_pos_x=fn.random.uniform(range=(0.0, 1.0)),
                         crop_pos_y=fn.random.uniform(range=(0.0, 1.0)))
        images = fn.flip(images, horizontal=fn.random.coin_flip())
        images = rand_augment.rand_augment(images, n=2, m=int(args["magnitude"]), shape=(32, 32), fill_value=0)
        return images, label

    p = pipe()
    p.build()
    return _Stock(p, steps)


def augpipe_dali(args, data: str, caps: bool = True):
    return augpipe_loader(args, data, caps, backend="dali")


ROWS = {
    "32px": {
        "DALI stock crop+flip+rand_augment": stock_32,
        "augpipe-dali crop+flip+RandAugment": lambda a: augpipe_dali(a, "32px", caps=False),
        "augpipe-dali, per-sample caps": lambda a: augpipe_dali(a, "32px"),
    },
    "224px": {
        "DALI stock RRC+flip+rand_augment": stock_224,
        "augpipe-dali RRC+flip+RandAugment": lambda a: augpipe_dali(a, "224px", caps=False),
        "augpipe-dali, per-sample caps": lambda a: augpipe_dali(a, "224px"),
    },
}
