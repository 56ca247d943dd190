"""The torch backend's fast path for image folders (and litdata datasets of image files): JPEG
bytes straight to batches.

Per batch, in a worker thread: plan (sizes come from the file headers, read
once when the folder is first used), read the batch's JPEG files into one
buffer, then one compiled pass per sample without the GIL
(`augpipe.engine.fused.render_jpeg_batch`): decode only the planned box, resize +
flip, the planned ops, CHW. Pixels equal the torchvision path's (accurate
IDCT, torch's resize arithmetic): tests/test_folder.py. Images that are not
greyscale or YCbCr JPEGs (PNG, CMYK JPEGs, unreadable headers) take the
torchvision path (augpipe.engine.reference.build_part) inside the same batch.

Corrupt data (decoding a box does not read the rows below it, so a cut-short
file could decode "fine"):
- when the folder is first used, every JPEG's header is read and its last
  two bytes must be the end-of-image marker; a file without it (truncated) is
  a DecodeError naming it, or with on_error="skip" left out of every batch
  and listed in `loader.errors`;
- backend_options={"validate": "full"} also decodes every JPEG once, fully,
  at that time (slow: a full pass over the data), with the same outcome for
  a file that fails;
- a file that fails while a batch is built: DecodeError naming the file and
  libjpeg's reason, or with on_error="skip" the sample is left out of that
  batch (which comes out shorter) and recorded in `loader.errors`.
"""
from __future__ import annotations

import numpy as np
import torch

from ..core.ops import param_tables
from ..engine.reference import BuildSpec, build_part, build_request
from ..kernels.jpeg import ERRORS, decode_box
from ..sources import KIND_JPEG, KIND_TRUNCATED, DecodeError

VALIDATE = ("header", "full")


def screen(spec: BuildSpec, validate: str, errors: list) -> np.ndarray:
    """Dataset indices left out of every batch (on_error="skip"); raises
    DecodeError for the first bad file with on_error="raise"."""
    if validate not in VALIDATE:
        raise ValueError(f"backend_options['validate'] must be one of {VALIDATE}, got {validate!r}")
    source = spec.source
    sizes, kinds, _ = source.headers()
    bad = {int(i): "the file ends without JPEG's end-of-image marker (truncated)"
           for i in np.flatnonzero(kinds == KIND_TRUNCATED)}
    if validate == "full":
        region = np.zeros(2, np.int64)
        for i in np.flatnonzero(kinds == KIND_JPEG):
            h, w = (int(v) for v in sizes[i])
            rc = decode_box(np.fromfile(source.path(int(i)), dtype=np.uint8), 0, 0, h, w, 1, 0,
                            np.empty(h * w * 4, np.uint8), region, 4)
            if rc != 0:
                bad[int(i)] = f"libjpeg-turbo: {ERRORS.get(rc, f'error {rc}')}"
    for i in sorted(bad):
        if spec.on_error == "raise":
            raise DecodeError(source.path(i), bad[i] + "; pass on_error='skip' to leave it out")
        errors.append((source.path(i), bad[i]))
    return np.array(sorted(bad), dtype=np.int64)


class FolderBatches:
    """Worker side of the fast path: a request in, a batch (as BatchBuilder's dict) out."""

    def __init__(self, spec: BuildSpec, apply_ops: bool, bad: np.ndarray, max_denom: int = 1):
        self.spec, self.apply_ops, self.bad, self.max_denom = spec, apply_ops, bad, max_denom
        self.sizes, self.kinds, self.nbytes = spec.source.headers()

    def __getitem__(self, request) -> dict:
        from ..engine.fused import render_jpeg_batch

        epoch, step, indices, knob = request
        spec, source = self.spec, self.spec.source
        if len(self.bad):
            indices = indices[~np.isin(indices, self.bad)]
        if spec.compiling():  # first use: the torchvision path (the same pixels) until the pass is cached
            return build_request(spec, epoch, step, indices, knob, apply_ops=self.apply_ops)
        fast = self.kinds[indices] == KIND_JPEG
        hw = np.where(fast[:, None], self.sizes[indices], 1)  # the others are planned by build_part below
        plan = spec.plan(epoch, indices, hw[:, 0], hw[:, 1], knob)
        n, (out_h, out_w) = len(indices), plan.size
        images = torch.empty((n, source.channels, out_h, out_w), dtype=torch.uint8)
        offsets = np.zeros(n + 1, np.int64)
        offsets[1:] = np.cumsum(np.where(fast, self.nbytes[indices], 0))
        buf = np.empty(max(1, int(offsets[-1])), np.uint8)
        for i in np.flatnonzero(fast):
            source.read_into(int(indices[i]), memoryview(buf)[offsets[i]:offsets[i + 1]])
        status = np.zeros(n, np.int64)
        render_jpeg_batch(buf, offsets, hw[:, 0], hw[:, 1], fast,
                          plan.box.astype(np.int64), plan.flip, np.uint8(plan.fill), plan.ops, plan.mags,
                          param_tables(plan.space, out_h, out_w), self.apply_ops and plan.ops.size > 0,
                          np.int64(self.max_denom), images.numpy(), status)
        skipped: list[tuple[str, str]] = []
        keep = np.ones(n, dtype=bool)
        for i in np.flatnonzero(status < 0):
            path = source.path(int(indices[i]))
            reason = f"libjpeg-turbo: {ERRORS.get(int(status[i]), f'error {status[i]}')}"
            if spec.on_error == "raise":
                raise DecodeError(path, reason)
            skipped.append((path, reason))
            keep[i] = False
        slow = np.flatnonzero(status == 1)
        if len(slow):  # not a greyscale/YCbCr JPEG: torchvision decodes it
            part = build_part(spec, epoch, indices[slow], knob, apply_ops=self.apply_ops)
            skipped += part["skipped"]
            other, r = part["plan"], 0  # its rows follow `slow`, minus the files that failed
            for j in slow:
                if r < len(other.index) and other.index[r] == indices[j]:
                    images[j] = part["images"][r]
                    for name in ("box", "flip", "ops", "mags", "magnitude"):
                        getattr(plan, name)[j] = getattr(other, name)[r]
                    r += 1
                else:
                    keep[j] = False
        plan = plan.subset(keep) if not keep.all() else plan
        return {"images": images[torch.from_numpy(keep)] if not keep.all() else images, "skipped": skipped,
                "labels": source.labels[plan.index], "index": plan.index, "magnitude": plan.magnitude,
                "ops": plan.ops, "mags": plan.mags, "epoch": epoch, "step": step}


def warm_up(channels: int) -> None:
    """Compile the pass now (before worker threads or processes start); from
    numba's cache after the first process."""
    from ..engine.compiled import notice
    from ..engine.fused import compile_render, render_jpeg_batch

    notice(render_jpeg_batch, "the image-folder kernels", 40)
    compile_render(channels)
