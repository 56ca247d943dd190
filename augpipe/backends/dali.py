"""The DALI backend: DALI decodes, crops, resizes and flips exactly where the
planner says; augpipe's batched torch kernels apply the policy's ops.

    loader = augpipe.Loader(folder_or_arrays, backend="dali", device="cpu" | "cuda", ...)

How a batch is made
-------------------
One DALI pipeline per Loader, built once. Its only input is a callable
`fn.external_source(batch=True)` (`_Feed`). Each time DALI asks it for an
iteration, it takes the Loader's next request (epoch, step, indices, scheduled
magnitude), reads the live knob and the per-sample caps, runs `make_plan`,
and feeds, per sample: the encoded file bytes (folders) or the HWC uint8
image (arrays), the crop anchor and shape, the flip flag, and as pass-through
outputs the dataset index, label, magnitude used, op ids, signed magnitudes
and (epoch, step). The graph is

    folders: decoders.image_slice(bytes, anchor, shape)   # ROI decode; "mixed" (nvJPEG) on CUDA
             -> resize(out size, linear, antialias) -> flip(horizontal=flag) -> transpose(CHW)
    arrays:  slice(image, anchor, shape, pad with fill) [-> resize] -> flip -> transpose(CHW)

and the batch it returns goes through `augpipe.backends.torch_ops.apply_ops`
(bit-exact with torchvision; on the GPU when device="cuda", where DALI's
output already lives). Every random decision is the planner's: the graph holds
no randomness, so the same (seed, epoch, index, knob, cap) gives the same
sample as the torch backend, up to JPEG decoding and resampling (stated in
tests/test_dali.py). The metadata travels through the graph with its images,
so `Batch.index` / `.magnitude` are exact whatever DALI prefetches.

The knob's lag: DALI calls the feed `prefetch_queue_depth` (default: the
Loader's `prefetch_factor`, 2) iterations ahead. After batch k has been
handed out, requests up to k + depth - 1 are already planned, so
`loader.magnitude = m` (or a cap change) shows up from batch k + depth:
`DaliBackend.lag` = depth batches after the current one. A schedule
(`set_magnitude(f)`) is evaluated per request and is exact, no lag. The
pipeline runs on across epoch ends (the feed continues into epoch e + 1, so
DALI's queue never drains), so the same lag holds at an epoch boundary;
set_epoch / load_state_dict / an abandoned iteration rebuild the pipeline
(tens of ms on CPU) so that no stale batch leaks out.

Why external_source and not readers.file
----------------------------------------
The planner must know every sample's index and source size before DALI
decodes it, and the sample order must be the Loader's (a full permutation per
(seed, epoch), sharded by global rank with padding so that every rank yields
the same number of batches, resumable mid-epoch by step). `readers.file` has
its own order (a 1,024-sample shuffle buffer), its own sharding and its own
epoch boundaries; feeding it a `file_list` in the Loader's order would need a
pipeline rebuild per epoch and a second channel for the per-sample arguments
kept in lockstep with it. Reading the bytes in the feed (`np.fromfile`, page
cache) costs ~20 us a file, and makes order, sharding (`Loader.indices`: shard
= global rank, world size, padded), resume and the plan one thing.
Image sizes come from the file headers (PIL, no decoding), read once when the
backend is built.

Bad files
---------
- A header PIL cannot read: at construction, `DecodeError(path, ...)`; with
  on_error="skip" it is left out of every batch and listed in `loader.errors`.
- A file that fails inside DALI: the pipeline stops; the backend finds the
  file among the batches in flight (decoding each candidate with torchvision)
  and raises `DecodeError(path, "DALI: <DALI's own message>")`. With
  on_error="skip" it records the file in `loader.errors`, rebuilds the
  pipeline and carries on from the first batch not yet handed out, without
  that file (the batch comes out shorter, as with the torch backend).
  DALI's CPU decoder accepts some damaged files that torchvision rejects
  (e.g. truncated JPEGs: libjpeg-turbo fills the missing rows); those decode.

Options (`backend_options`): "num_threads" (DALI threads; default
max(1, num_workers)), "prefetch_queue_depth" (default prefetch_factor),
"ops_threads" (numba threads for the policy's ops on CPU; default
max(1, cpu_count - num_threads), as DALI's pool and the ops' pool otherwise
contend for the same cores).
"""
from __future__ import annotations

import collections
import math
import os
import re
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch

from ..batch import Batch
from ..data import DecodeError
from ..plan import make_plan
from ..policy import CROP_CENTER, CROP_FULL, CROP_PAD, CROP_RRC, Identity
from .cpu_ops import apply_ops_cpu
from .torch_ops import apply_ops

try:
    from nvidia.dali import fn, pipeline_def, types
except ImportError as err:  # surfaced by Loader._make_backend with an install hint
    raise ImportError(f"nvidia-dali is not installed ({err})") from err

if TYPE_CHECKING:
    from ..loader import Loader

_OUTPUTS = ("data", "anchor", "shape", "flip", "index", "label", "magnitude", "ops", "mags", "where")


def image_sizes(paths, on_error: str = "raise") -> tuple[np.ndarray, list[tuple[int, str]]]:
    """(N, 2) int64 (height, width) of image files from their headers (no
    decoding), and the (position, reason) of files whose header is unreadable
    (rows left at 0; with on_error="raise" the first one raises DecodeError)."""
    from PIL import Image

    sizes = np.zeros((len(paths), 2), np.int64)
    bad = []
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as im:
                w, h = im.size
            sizes[i] = h, w
        except Exception as err:  # PIL raises UnidentifiedImageError, OSError, SyntaxError...
            reason = f"cannot read the image header ({type(err).__name__}: {err})"
            if on_error == "raise":
                raise DecodeError(path, reason) from None
            bad.append((i, reason))
    return sizes, bad


class _Feed:
    """The external_source callable: one Loader request -> one planned batch."""

    def __init__(self, backend: "DaliBackend"):
        self.b = backend
        self.requests: Iterator | None = None
        self.in_flight: collections.deque = collections.deque()  # ((epoch, step), indices) fed, not handed out

    def start(self, epoch: int, step: int) -> None:
        """Feed from (epoch, step) on, running on into the following epochs
        (never StopIteration): DALI's queue stays full across epoch ends."""
        def stream(epoch, step):
            while True:
                yield from self.b.loader.requests(epoch, step)
                epoch, step = epoch + 1, 0

        self.requests = stream(epoch, step)
        self.in_flight.clear()

    def __call__(self):
        b = self.b
        loader = b.loader
        while True:
            epoch, step, indices, scheduled = next(self.requests)
            if b.bad:
                indices = indices[~np.isin(indices, list(b.bad))]
            if len(indices):
                break
            self.in_flight.append(((epoch, step), indices))  # an all-skipped batch yields nothing
        knob = scheduled if not math.isnan(scheduled) else loader.knob.value
        if b.arrays:
            h, w = b.hwc.shape[1:3]
            plan = make_plan(loader.seed, epoch, indices, h, w, knob, loader.knob.caps, loader.crop, b.policy)
            data = b.hwc[indices]
        else:
            plan = make_plan(loader.seed, epoch, indices, b.sizes[indices, 0], b.sizes[indices, 1], knob,
                             loader.knob.caps, loader.crop, b.policy)
            data = [np.fromfile(b.paths[i], dtype=np.uint8) for i in indices]
        self.in_flight.append(((epoch, step), indices))
        n = len(indices)
        where = np.empty((n, 2), np.int64)
        where[:, 0], where[:, 1] = epoch, step
        return (data,
                np.ascontiguousarray(plan.box[:, [1, 0]], dtype=np.float32),  # anchor (x, y)
                np.ascontiguousarray(plan.box[:, [3, 2]], dtype=np.float32),  # shape (w, h)
                plan.flip.astype(np.int32),
                indices.astype(np.int64),
                b.labels[indices],
                plan.magnitude.astype(np.float32),
                np.ascontiguousarray(plan.ops, dtype=np.int32),
                np.ascontiguousarray(plan.mags, dtype=np.float32),
                where)


class DaliBackend:
    """Builds batches for a Loader with a DALI pipeline + augpipe's torch ops."""

    def __init__(self, loader: "Loader"):
        self.loader = loader
        opts = loader.backend_options
        self.gpu = loader.device.type == "cuda"
        self.device_id = (loader.device.index if loader.device.index is not None else torch.cuda.current_device()) \
            if self.gpu else None
        self.policy = (loader.policy if loader.train else Identity()).lower()
        self.space = self.policy.space
        self.num_threads = int(opts.get("num_threads", max(1, loader.num_workers)))
        self.depth = int(opts.get("prefetch_queue_depth", max(1, loader.prefetch_factor)))
        # DALI's threads and a second thread pool on the same cores spin against
        # each other (measured 2 cores with torch's pool: 98 img/s with both at 2, 493 at 1)
        self.ops_threads = int(opts.get("ops_threads", max(1, (os.cpu_count() or 1) - self.num_threads)))
        src = loader.dataset
        self.labels = np.ascontiguousarray(src.labels, dtype=np.int64)
        self.arrays = src.fixed_shape is not None
        self.bad: set[int] = set()
        if self.arrays:
            # HWC, the layout DALI's image ops expect; one copy at build time
            self.hwc = np.ascontiguousarray(src.images.permute(0, 2, 3, 1).numpy())
            self.channels = self.hwc.shape[3]
        else:
            self.paths = [src.describe(i) for i in range(len(src))]
            self.sizes, bad = image_sizes(self.paths, loader.on_error)
            for i, reason in bad:
                self.bad.add(i)
                loader.errors.append((self.paths[i], reason))
            self.channels = 3
        # Compile the planner now, not inside DALI's first prefetch.
        make_plan(0, 0, np.zeros(1, np.int64), 8, 8, 0.0, None, loader.crop, self.policy)
        mean = torch.tensor(loader.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(loader.std, dtype=torch.float32).view(1, -1, 1, 1)
        self._scale = (1.0 / (255.0 * std)).to(loader.device)
        self._shift = (-mean / std).to(loader.device)
        self._feed = _Feed(self)
        self._pipe = None
        self._next: tuple[int, int] | None = None  # (epoch, step) the running pipeline hands out next
        self._held = None  # a batch of the next epoch pulled while finishing this one

    @property
    def lag(self) -> int:
        """A knob or cap change made after batch k is handed out shows up from batch k + lag."""
        return self.depth

    # ---------------------------------------------------------- the graph
    def _build(self):
        loader, crop = self.loader, self.loader.crop
        out_h, out_w = crop.size
        fill = float(crop.fill)
        gpu = self.gpu
        if not self.arrays or crop.mode in (CROP_RRC, CROP_CENTER):
            resize = True
        elif crop.mode == CROP_FULL:
            resize = tuple(self.hwc.shape[1:3]) != (out_h, out_w)
        else:  # CROP_PAD: windows of the output size
            resize = False
        bytes_hint = 3 * out_h * out_w

        @pipeline_def(batch_size=loader.batch_size, num_threads=self.num_threads, device_id=self.device_id,
                      prefetch_queue_depth=self.depth, exec_async=True, exec_pipelined=True)
        def graph():
            data, anchor, shape, flip, index, label, magnitude, ops, mags, where = fn.external_source(
                source=self._feed, num_outputs=len(_OUTPUTS), batch=True, parallel=False)
            if self.arrays:
                images = data.gpu() if gpu else data
                images = fn.slice(images, anchor, shape, axis_names="WH", normalized_anchor=False,
                                  normalized_shape=False, out_of_bounds_policy="pad", fill_values=fill)
            elif crop.mode == CROP_PAD:  # windows may reach outside: decode, then a padding slice
                images = fn.decoders.image(data, device="mixed" if gpu else "cpu", output_type=types.RGB,
                                           adjust_orientation=False)
                images = fn.slice(images, anchor, shape, axis_names="WH", normalized_anchor=False,
                                  normalized_shape=False, out_of_bounds_policy="pad", fill_values=fill)
            else:  # boxes inside the image: region-of-interest decode
                images = fn.decoders.image_slice(
                    data, anchor, shape, device="mixed" if gpu else "cpu", output_type=types.RGB,
                    adjust_orientation=False, normalized_anchor=False, normalized_shape=False)
            if resize:
                images = fn.resize(images, resize_x=out_w, resize_y=out_h, interp_type=types.INTERP_LINEAR,
                                   antialias=True, bytes_per_sample_hint=bytes_hint)
            images = fn.flip(images, horizontal=flip)
            images = fn.transpose(images, perm=[2, 0, 1])
            return images, index, label, magnitude, ops, mags, where

        pipe = graph()
        pipe.build()
        return pipe

    # ---------------------------------------------------------- iteration
    def iterate(self, epoch: int, start: int) -> Iterator[Batch]:
        """Batches of `epoch` from step `start`. The pipeline is built once and
        kept running across epochs (the feed runs on into the next epoch, so
        no queue drain and refill at each epoch end); it is rebuilt only when
        the caller jumps elsewhere (set_epoch mid-epoch, load_state_dict, an
        abandoned iteration) or after a skipped bad file."""
        total = len(self.loader)
        step = start
        while step < total:
            if self._pipe is None or self._next != (epoch, step):
                self.close()
                self._feed.start(epoch, step)
                self._pipe = self._build()
            self._next = None  # unknown until this epoch is handed out in full
            try:
                while True:
                    if self._held is not None:
                        batch, self._held = self._held, None
                    else:
                        batch = self._finish(self._pipe.run())
                    flight = self._feed.in_flight
                    while flight and flight[0][0] < (batch.epoch, batch.step):
                        flight.popleft()  # all-skipped batches
                    if flight and flight[0][0] == (batch.epoch, batch.step):
                        flight.popleft()
                    if batch.epoch != epoch:  # this epoch's last batches were all skipped files
                        self._held, self._next = batch, (epoch + 1, 0)
                        return
                    step = batch.step + 1
                    if step >= total:
                        self._next = (epoch + 1, 0)
                    yield batch
                    if step >= total:
                        return
            except RuntimeError as err:
                self._pipe = None  # DALI: "Current pipeline object is no longer valid"
                self._on_error(err)  # raises, or marks the bad file(s) and we rebuild from `step`

    def _on_error(self, err: RuntimeError) -> None:
        if self.arrays:
            raise err
        message = _dali_message(str(err))
        candidates = [int(i) for _, idx in self._feed.in_flight for i in idx]
        found, why = [], {}
        for i in candidates:
            try:
                self.loader.dataset.load(i)
            except DecodeError as bad:
                found.append(i)
                why[i] = bad.reason
        if not found:
            files = ", ".join(self.paths[i] for i in candidates[:8])
            raise DecodeError(f"one of {len(candidates)} files in flight ({files}{', ...' if len(candidates) > 8 else ''})",
                              f"DALI {message}") from err
        if self.loader.on_error == "raise":
            i = found[0]
            raise DecodeError(self.paths[i], f"DALI {message} (torchvision: {why[i]})") from None
        for i in found:
            self.bad.add(i)
            self.loader.errors.append((self.paths[i], f"DALI {message} (torchvision: {why[i]})"))

    def _finish(self, outputs) -> Batch:
        images_tl, *meta = outputs
        device = self.loader.device
        if self.gpu:
            from nvidia.dali.plugin.pytorch import feed_ndarray

            t = images_tl.as_tensor()
            images = torch.empty(t.shape(), dtype=torch.uint8, device=device)
            feed_ndarray(t, images, cuda_stream=torch.cuda.current_stream(device))
        else:
            images = torch.from_numpy(np.array(images_tl.as_tensor()))
        index, label, magnitude, ops, mags, where = (np.array(m.as_tensor()) for m in meta)
        if self.gpu:
            images = apply_ops(images, ops, mags, self.space)
        else:  # the fused numba kernels, on numba's threads while DALI's work on the next batch
            images = apply_ops_cpu(images, ops, mags, self.space, parallel=True, threads=self.ops_threads)
        if self.loader.output == "float":
            images = images.float().mul_(self._scale).add_(self._shift)
        return Batch(images, torch.from_numpy(label).to(device), torch.from_numpy(index).to(device),
                     torch.from_numpy(magnitude).to(device), int(where[0, 0]), int(where[0, 1]))

    def close(self) -> None:
        """Drop the pipeline (its threads and buffers); the next iteration builds a new one."""
        if self._pipe is not None:
            pipe, self._pipe = self._pipe, None
            del pipe
        self._next, self._held = None, None


def _dali_message(text: str) -> str:
    """DALI's own reason and operator, without its traceback of the pipeline definition."""
    text = text.replace("Current pipeline object is no longer valid.", "")
    op = re.search(r"Error in \w+ operator `(?:nvidia\.dali\.fn\.)?([\w.]+)`", text)
    m = re.search(r"encountered:\s*(.*?)(?:\nC\+\+ context|\Z)", text, re.S)
    reason = " ".join((m.group(1) if m else text).split()).rstrip(" :")
    return f"{op.group(1)}: {reason}" if op else reason


def make_backend(loader: "Loader") -> DaliBackend:
    return DaliBackend(loader)
