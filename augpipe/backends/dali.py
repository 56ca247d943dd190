"""The DALI backend: DALI decodes, crops, resizes and flips exactly where the
planner says; augpipe's batched torch kernels apply the policy's ops.

    loader = augpipe.Loader(folder_or_arrays_or_beton, backend="dali", device="cpu" | "cuda", ...)

How a batch is made
-------------------
One DALI pipeline per Loader, built once. Its only input is a callable
`fn.external_source(batch=True)` (`_Feed`). Each time DALI asks it for an
iteration, it takes the Loader's next request (epoch, step, indices, magnitude resolved at that
moment), reads the per-sample caps, plans, and feeds, per sample: the
encoded file bytes (sources with `files`), the HWC uint8 image (in-memory
sources: a gather; any other source, e.g. a .beton: `source.load(i)`), the
crop anchor and shape, the flip flag, and as pass-through outputs the
dataset index, label, magnitude used, op ids, signed magnitudes and (epoch,
step). The graph is

    files:  decoders.image_slice(bytes, anchor, shape)   # ROI decode; "mixed" (nvJPEG) on CUDA
            -> resize(out size, linear, antialias) -> flip(horizontal=flag) -> transpose(CHW)
    arrays: slice(image, anchor, shape, pad with fill) [-> resize] -> flip -> transpose(CHW)

and the batch it returns goes through augpipe's executors (the numba kernels
on CPU, `augpipe.engine.exec_torch.apply_ops` on the GPU when device="cuda", where
DALI's output already lives). Every random decision is the planner's: the graph holds
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

Fork safety: every pipeline is registered with augpipe.engine.forksafe, so a
DataLoader worker forked later never finalizes it (DALI's Shutdown in a
forked child waits for threads that do not exist there).

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
import os
import re
from typing import Iterator

import numpy as np
import torch

from ..core.batch import Batch
from ..core.policy import CROP_CENTER, CROP_FULL, CROP_PAD, CROP_RRC
from ..engine.contract import BackendContext
from ..engine.exec_cpu import apply_ops_cpu
from ..engine.exec_torch import apply_ops
from ..engine.forksafe import protect
from ..sources import DecodeError

try:
    from nvidia.dali import fn, pipeline_def, types
except ImportError as err:  # surfaced by augpipe.backends.make_backend with an install hint
    raise ImportError(f"nvidia-dali is not installed ({err})") from err

OPTIONS = {"num_threads", "prefetch_queue_depth", "ops_threads"}
_OUTPUTS = ("data", "anchor", "shape", "flip", "index", "label", "magnitude", "ops", "mags", "where")


def header_problems(source, on_error: str) -> list[tuple[int, str]]:
    """(position, reason) of files whose header PIL cannot read (their
    `source.sizes()` row is 0); with on_error="raise" the first raises DecodeError."""
    from PIL import Image

    bad = []
    for i in np.flatnonzero((source.sizes() == 0).any(axis=1)):
        path = source.path(int(i))
        try:
            with Image.open(path):
                pass
            reason = "cannot read the image size from its header"
        except Exception as err:  # PIL raises UnidentifiedImageError, OSError, SyntaxError...
            reason = f"cannot read the image header ({type(err).__name__}: {err})"
        if on_error == "raise":
            raise DecodeError(path, reason)
        bad.append((int(i), reason))
    return bad


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
                yield from self.b.ctx.requests(epoch, step)
                epoch, step = epoch + 1, 0

        self.requests = stream(epoch, step)
        self.in_flight.clear()

    def __call__(self):
        b = self.b
        ctx = b.ctx
        while True:
            epoch, step, indices, knob = next(self.requests)
            if b.bad:
                indices = indices[~np.isin(indices, list(b.bad))]
            if len(indices):
                break
            self.in_flight.append(((epoch, step), indices))  # an all-skipped batch yields nothing
        if b.mode == "arrays":
            h, w = b.hwc.shape[1:3]
            plan = ctx.plan(epoch, indices, h, w, knob)
            data = b.hwc[indices]
        elif b.mode == "files":
            plan = ctx.plan(epoch, indices, b.sizes[indices, 0], b.sizes[indices, 1], knob)
            data = [np.fromfile(b.paths[i], dtype=np.uint8) for i in indices]
        else:  # decoded one by one by the source (a .beton, or any other source)
            data = [np.ascontiguousarray(ctx.source.load(int(i)).permute(1, 2, 0).numpy()) for i in indices]
            plan = ctx.plan(epoch, indices, [d.shape[0] for d in data], [d.shape[1] for d in data], knob)
        self.in_flight.append(((epoch, step), indices))
        n = len(indices)
        where = np.empty((n, 2), np.int64)
        where[:, 0], where[:, 1] = epoch, step
        return (data,
                np.ascontiguousarray(plan.box[:, [1, 0]], dtype=np.float32),  # anchor (x, y)
                np.ascontiguousarray(plan.box[:, [3, 2]], dtype=np.float32),  # shape (w, h)
                plan.flip.astype(np.int32),
                indices.astype(np.int64),
                np.ascontiguousarray(b.labels[indices]),
                plan.magnitude.astype(np.float32),
                np.ascontiguousarray(plan.ops, dtype=np.int32),
                np.ascontiguousarray(plan.mags, dtype=np.float32),
                where)


class DaliBackend:
    """Builds batches with a DALI pipeline + augpipe's executors."""

    def __init__(self, ctx: BackendContext):
        opts = ctx.options
        unknown = set(opts) - OPTIONS
        if unknown:
            raise ValueError(f"unknown DALI backend options {sorted(unknown)}; known: {sorted(OPTIONS)}")
        self.ctx = ctx
        self.gpu = ctx.device.type == "cuda"
        self.device_id = (ctx.device.index if ctx.device.index is not None else torch.cuda.current_device()) \
            if self.gpu else None
        self.policy = ctx.policy
        self.num_threads = int(opts.get("num_threads", max(1, ctx.num_workers)))
        self.depth = int(opts.get("prefetch_queue_depth", max(1, ctx.prefetch_factor)))
        # DALI's threads and a second thread pool on the same cores spin against
        # each other (measured 2 cores with torch's pool: 98 img/s with both at 2, 493 at 1)
        self.ops_threads = int(opts.get("ops_threads", max(1, (os.cpu_count() or 1) - self.num_threads)))
        src = ctx.source
        self.labels = np.ascontiguousarray(src.labels, dtype=np.int64)
        self.bad: set[int] = set()
        if src.in_memory:
            self.mode = "arrays"
            # HWC, the layout DALI's image ops expect; one copy at build time
            self.hwc = np.ascontiguousarray(src.images.permute(0, 2, 3, 1).numpy())
        elif src.files:
            self.mode = "files"
            self.paths = [src.path(i) for i in range(len(src))]
            self.sizes = src.sizes()
            for i, reason in header_problems(src, ctx.on_error):
                self.bad.add(i)
                ctx.errors.append((self.paths[i], reason))
        else:
            self.mode = "decoded"
        # compile the planner and the threaded op kernel now, not inside DALI's first prefetch; a first use
        # compiles them in the background and batches start from their twins (engine/firstuse.py)
        ctx.warm_up(background=not self.gpu, parallel=True)
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
        ctx, crop = self.ctx, self.ctx.crop
        out_h, out_w = crop.size
        fill = float(crop.fill)
        gpu = self.gpu
        files = self.mode == "files"
        if crop.mode in (CROP_RRC, CROP_CENTER):
            resize = True
        elif crop.mode == CROP_FULL:
            resize = self.mode != "arrays" or tuple(self.hwc.shape[1:3]) != (out_h, out_w)
        else:  # CROP_PAD: windows of the output size
            resize = False
        bytes_hint = ctx.channels * out_h * out_w

        @pipeline_def(batch_size=ctx.batch_size, num_threads=self.num_threads, device_id=self.device_id,
                      prefetch_queue_depth=self.depth, exec_async=True, exec_pipelined=True)
        def graph():
            data, anchor, shape, flip, index, label, magnitude, ops, mags, where = fn.external_source(
                source=self._feed, num_outputs=len(_OUTPUTS), batch=True, parallel=False)
            if not files:
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

        pipe = protect(graph())
        pipe.build()
        return pipe

    # ---------------------------------------------------------- iteration
    def iterate(self, epoch: int, start: int) -> Iterator[Batch]:
        """Batches of `epoch` from step `start`. The pipeline is built once and
        kept running across epochs (the feed runs on into the next epoch, so
        no queue drain and refill at each epoch end); it is rebuilt only when
        the caller jumps elsewhere (set_epoch mid-epoch, load_state_dict, an
        abandoned iteration) or after a skipped bad file."""
        total = self.ctx.num_batches
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
        if self.mode != "files":
            raise err
        message = _dali_message(str(err))
        candidates = [int(i) for _, idx in self._feed.in_flight for i in idx]
        found, why = [], {}
        for i in candidates:
            try:
                self.ctx.source.load(i)
            except DecodeError as bad:
                found.append(i)
                why[i] = bad.reason
        if not found:
            files = ", ".join(self.paths[i] for i in candidates[:8])
            raise DecodeError(f"one of {len(candidates)} files in flight ({files}{', ...' if len(candidates) > 8 else ''})",
                              f"DALI {message}") from err
        if self.ctx.on_error == "raise":
            i = found[0]
            raise DecodeError(self.paths[i], f"DALI {message} (torchvision: {why[i]})") from None
        for i in found:
            self.bad.add(i)
            self.ctx.errors.append((self.paths[i], f"DALI {message} (torchvision: {why[i]})"))

    def _finish(self, outputs) -> Batch:
        images_tl, *meta = outputs
        ctx = self.ctx
        if self.gpu:
            from nvidia.dali.plugin.pytorch import feed_ndarray

            t = images_tl.as_tensor()
            images = torch.empty(t.shape(), dtype=torch.uint8, device=ctx.device)
            feed_ndarray(t, images, cuda_stream=torch.cuda.current_stream(ctx.device))
        else:
            images = torch.from_numpy(np.array(images_tl.as_tensor()))
        index, label, magnitude, ops, mags, where = (np.array(m.as_tensor()) for m in meta)
        if self.gpu or ctx.spec.compiling():  # the torch executor: bit-exact with the numba one
            images = apply_ops(images, ops, mags, self.policy.space)
        else:  # the fused numba kernels, on numba's threads while DALI's work on the next batch
            images = apply_ops_cpu(images, ops, mags, self.policy.space, parallel=True, threads=self.ops_threads)
        return ctx.finish(images, label, index, magnitude, ops, mags, int(where[0, 0]), int(where[0, 1]))

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


def make_backend(ctx: BackendContext) -> DaliBackend:
    return DaliBackend(ctx)
