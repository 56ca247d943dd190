"""The FFCV backend: the planner and numba kernels inside FFCV's compiled pipeline.

Batches come from FFCV's `EpochIterator` thread; every stage is compiled
code. The image field has one stage, `PlanDecoder`, parallel over the batch
with one chunk (and one set of scratch buffers) per thread; labels and
stored indices are looked up from the .beton rows the stage records, so the
label and index fields have no pipelines to compile. Per sample it
reads the stored size, calls `augpipe.core.plan.plan_sample` with (seed, epoch,
dataset index, knob, cap[index]) -- the very planner the torch backend uses
--, decodes only the planned box as RGBX (`kernels.jpeg.decode_box`: libjpeg-turbo
with jpeg_crop_scanline / jpeg_skip_scanlines, bit-identical to a full
decode with the accurate IDCT, i.e. torchvision's pixels; optionally DCT-scaled), resizes (torch's
antialiased bilinear, bit-exact) and flips, applies the planned ops
(`kernels.ops.apply_sample_ops`) and writes CHW into FFCV's output buffer.
That work is `ffcv_rows.rows`, a C function in numba's on-disk cache: what
FFCV compiles for each Loader is only a pass over the stored fields and
three calls: a C runner that starts the threads, `rows` on each, and
`ffcv_rows.record` (see ffcv_rows for why).

First use (numba's cache empty, order=None, no dct_scale, CPU, no batch
stage): the stage compiles in a background process (engine/firstuse.py) and
until it is cached `TwinBatches` builds the batches from the same .beton with
the kernels' twins -- the same values --, then FFCV's pipeline is built and
goes on from the next step.

Grey sources stay grey: the .beton stores them as RGB (R = G = B), and the
stage keeps one channel after the resize, so the ops run on 1-channel images
exactly as the other backends run them, and batches are (N, 1, H, W).

Live values: each batch's magnitude is resolved when FFCV's thread starts
building it (`BackendContext.requests` semantics: the schedule's value, else
the live knob; a schedule that reads live state is evaluated there, per
batch, as on the other backends) and written to an array the compiled code
reads by address (kernels.live); the per-sample caps and the epoch are read
the same way. So in-place changes reach compiled code without recompiling.
Lag: FFCV builds up to `batches_ahead` batches ahead, so a change shows up
at most `batches_ahead + 1` batches later.

Memory: the stage's scratch (decoded box, resize buffers, the image and its
ops partner) is one set per thread for the batch being built, not one per
sample per batch in flight as FFCV's own decoders reserve.

Options (`Loader(..., backend="ffcv", backend_options={...})`):
    cache: .beton path for a non-.beton source (converted on first use;
        default ~/.cache/augpipe/ffcv/<content key>.beton).
    image_format, max_resolution, jpeg_quality: conversion settings
        (default "raw" for in-memory sources and "exact" otherwise -- JPEG files
        stored as they are, other images as pixels -- so that batches equal
        the other backends'; None; 90).
    order: None (default: the Loader's own order -- same batches as the
        torch backend, sharded by global rank, exact resume) or FFCV's
        "random" | "quasi_random" | "sequential" (FFCV's sharding with
        distributed=True; resume replays and drops the first batches).
    os_cache: FFCV's os_cache (default True).
    batches_ahead: FFCV's prefetch depth (default: loader.prefetch_factor).
    dct_scale: allow DCT-scaled JPEG decoding when a crop box is at least twice
        the output (default False: faster on large images, but no longer the
        torch backend's pixels).
    copy: hand out fresh contiguous NCHW tensors (default True). False gives FFCV's own buffers, overwritten
        `batches_ahead + 2` batches later, as FFCV does.
"""
from __future__ import annotations

import hashlib
import json
import os
import weakref
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import numba as nb
import numpy as np
import torch

from ..sources import ffcv_import

ffcv_import.load()  # before any FFCV module: see sources/ffcv_import.py
from ffcv.fields.rgb_image import SimpleRGBImageDecoder
from ffcv.loader import Loader as FfcvLoader
from ffcv.loader import OrderOption
from ffcv.loader.epoch_iterator import EpochIterator
from ffcv.memory_managers.os_cache import OSCacheManager
from ffcv.memory_managers.process_cache.manager import ProcessCacheManager
from ffcv.pipeline.allocation_query import AllocationQuery
from ffcv.pipeline.compiler import Compiler
from ffcv.pipeline.operation import Operation
from ffcv.pipeline.state import State
from ffcv.transforms import ToDevice, ToTensor
from ffcv.traversal_order.base import TraversalOrder

from ..core.batch import Batch
from ..core.ops import param_tables
from ..engine.contract import BackendContext
from ..kernels.jpeg import ERRORS
from ..kernels.live import address, live_i64
from ..kernels.resize import resize_scratch_rgbx
from ..sources.beton import BetonSource
from .ffcv_rows import (BOXES, DEST, EPOCH, F_COLUMNS, F_DATA, F_HEIGHT, F_INDEX, F_MODE, F_SIZE, F_WIDTH,
                        FAILED, N, PLAN_MAGS, PLAN_OPS, PLAN_OUT, SCRATCH, SLOT, SLOTS, Frame, c_functions)


def _readonly(dtype, ndim: int = 1):
    return nb.types.Array(dtype, ndim, "C", readonly=True)


# FFCV 1.0.2's memory managers build their state types by setting `.mutable = False` on
# numba's interned array types (`nb.uint8[::1]` is one object per process). That turns every
# uint8/uint64 C array in the process read-only and changes the type's hash under the keys of
# compiled-function tables: later compiles fail with "Cannot modify readonly array" or a
# KeyError in numba's dispatcher (seen when an FFCV loader ran before another backend's
# compiled code). The same types, made as new read-only types instead of mutated ones:
OSCacheManager.state_type = property(
    lambda self: nb.types.Tuple([_readonly(nb.uint8), nb.uint64[::1], nb.uint64[::1]]))


def _os_cache_read(address, mem_state):
    """FFCV's OSCacheManager reader (a sample's bytes in the memory-mapped file), as FFCV writes it."""
    size = mem_state[2][np.searchsorted(mem_state[1], address)]
    return mem_state[0][address:address + size]


_READER: list = []  # the compiled reader, one per process


def _os_cache_reader(self):
    # FFCV compiles this reader in every Loader's constructor (~1 s on 2 cores); its types are the
    # same for every Loader, so it is compiled once per install with FFCV's options and numba's cache.
    if not Compiler.is_enabled:  # FFCV's debugging switch: plain Python
        return _os_cache_read
    if not _READER:
        _READER.append(nb.njit(_readonly(nb.uint8)(nb.uint64, self.state_type), fastmath=True, nogil=True,
                               error_model="numpy", cache=True)(_os_cache_read))
    return _READER[0]


OSCacheManager.compile_reader = _os_cache_reader
ProcessCacheManager.state_type = property(
    lambda self: nb.types.Tuple([_readonly(nb.uint8, 2), _readonly(nb.uint64), _readonly(nb.uint64),
                                 _readonly(nb.uint32)]))

_EPOCH, _COUNTER = 0, 1
OPTIONS = {"cache", "image_format", "max_resolution", "jpeg_quality", "order", "os_cache", "batches_ahead",
           "dct_scale", "copy"}
DEFAULT_CACHE = Path(os.environ.get("AUGPIPE_CACHE", Path.home() / ".cache" / "augpipe")) / "ffcv"


def _words(n: int) -> int:
    """n rounded up to a multiple of 8 bytes (the resize views its scratch as uint32)."""
    return -(-max(1, n) // 8) * 8


class LiveState:
    """The arrays compiled code reads by address; owned by the backend.

    state: int64 [epoch, batches built this iteration]
    knob: float64 [magnitude of the batch being built], set per batch by
        the pipeline thread just before the compiled stage runs.
    ring_*: ops / signed magnitudes / magnitude used / .beton row, per batch built,
        in a ring of `slots` batches (batch j of an iteration is slot j % slots).
    error: int64 [dataset index, code] of the first sample that failed to decode (-1: none).
    threads, per_thread: the stage's parallelism and each thread's scratch bytes
        (allocated per batch by each thread: one set per thread, never per sample).
    """

    def __init__(self, slots: int, batch: int, num_ops: int, threads: int, per_thread: int):
        self.state = np.zeros(2, np.int64)
        self.knob = np.zeros(1, np.float64)
        self.slots, self.batch, self.num_ops = slots, batch, num_ops
        self.ring_ops = np.full((slots, batch, num_ops), -1, np.int8)
        self.ring_mags = np.zeros((slots, batch, num_ops), np.float32)
        self.ring_used = np.zeros((slots, batch), np.float32)
        self.ring_rows = np.zeros((slots, batch), np.int64)  # the .beton rows of each batch
        self.error = np.full(2, -1, np.int64)
        self.threads, self.per_thread = threads, per_thread


class PlanDecoder(SimpleRGBImageDecoder):
    """The whole image pipeline as one FFCV stage, parallel over the batch.

    Per sample: plan (augpipe.core.plan.plan_sample), decode only the planned box
    (kernels.jpeg.decode_box; DCT-scaled with dct_scale when the box is >= 2x the output),
    resize + flip (kernels.resize), the planned ops (kernels.ops), and a CHW
    write into FFCV's output buffer. One pass per sample keeps the image in
    cache and leaves no serial stage between parallel ones.

    (A SimpleRGBImageDecoder subclass only so that FFCV takes it as the image
    field's decoder.)"""

    def __init__(self, backend: "FfcvBackend"):
        Operation.__init__(self)
        self.b = backend

    def declare_state_and_memory(self, previous_state: State):
        out_h, out_w = self.b.size
        k = max(1, self.b.policy.num_ops)
        shape, dtype = (self.b.channels, out_h, out_w), np.dtype("<u1")  # CHW: no ToTorchImage permute
        # Scratch per thread, not per sample: FFCV's own decoders reserve a
        # largest-image buffer for every sample of every batch in flight, which
        # is most of their peak memory. FFCV only allocates per sample, so the
        # threads' buffers are spread over the batch's rows and reshaped back
        # (every batch FFCV builds is full: see _Ffcv.__iter__).
        live = self.b.live
        per_sample = -(-live.threads * live.per_thread // live.batch)
        return (replace(previous_state, jit_mode=True, shape=shape, dtype=dtype),
                (AllocationQuery(shape, dtype),
                 AllocationQuery((per_sample,), dtype),  # the threads' scratch
                 AllocationQuery((6,), np.dtype("<i8")),  # crop box (4) and decoded region (2)
                 AllocationQuery((k,), np.dtype("<i1")),  # planned ops
                 AllocationQuery((k,), np.dtype("<f4")),  # planned signed magnitudes
                 AllocationQuery((2,), np.dtype("<f4"))))  # [magnitude used, decode status]

    def generate_code(self):
        b, live = self.b, self.b.live
        mem_read = self.memory_read
        runner, rows_addr, record = c_functions()  # compiled once per install: see ffcv_rows
        rows_addr = np.uint64(rows_addr)
        frame_addr, fields_addr = address(b.frame.frame), address(b.frame.fields)
        state_addr = address(live.state)
        slots, bsz, threads = np.int64(live.slots), np.int64(live.batch), np.int64(live.threads)

        def decode(batch_indices, my_storage, metadata, storage_state):
            destination, scratch, boxes, plan_ops, plan_mags, plan_out = my_storage
            state = live_i64(state_addr, 2)
            built = state[1]
            state[1] = built + 1
            n = len(batch_indices)
            # The stored fields, read here: FFCV's reader is compiled into this stage, not into `rows`.
            fields = live_i64(fields_addr, bsz * F_COLUMNS).reshape((bsz, F_COLUMNS))
            for i in range(n):
                idx = batch_indices[i]
                field = metadata[idx]
                data = mem_read(field["data_ptr"], storage_state)
                fields[i, F_INDEX] = idx
                fields[i, F_HEIGHT] = field["height"]
                fields[i, F_WIDTH] = field["width"]
                fields[i, F_DATA] = data.ctypes.data
                fields[i, F_SIZE] = data.shape[0]
                fields[i, F_MODE] = field["mode"]
            frame = live_i64(frame_addr, SLOTS)
            frame[N] = n
            frame[EPOCH] = state[0]
            frame[SLOT] = built % slots
            frame[DEST] = destination.ctypes.data
            frame[SCRATCH] = scratch.ctypes.data
            frame[BOXES] = boxes.ctypes.data
            frame[PLAN_OPS] = plan_ops.ctypes.data
            frame[PLAN_MAGS] = plan_mags.ctypes.data
            frame[PLAN_OUT] = plan_out.ctypes.data
            runner(rows_addr, frame_addr, threads)
            record(frame_addr)
            if frame[FAILED] != 0:
                raise ValueError("augpipe: a stored JPEG failed to decode (see the loader's error)")
            return destination[:n]

        decode.is_parallel = False  # the runner starts the threads: see ffcv_rows
        return decode


class _PlanOrder(TraversalOrder):
    """FFCV traversal order that is whatever the backend set for this epoch."""

    def __init__(self, backend: "FfcvBackend"):  # noqa: D401 - no super(): FFCV calls us with its loader
        self.b = backend

    def __call__(self, ffcv_loader):  # FFCV does `order(self)` on TraversalOrder instances
        return self

    def sample_order(self, epoch: int):
        return self.b.order


def source_key(source, options: dict) -> str:
    """A content key for a source + conversion options (names the cache file).
    Image files also contribute their modification times, so an edited file
    gets a new conversion."""
    h = hashlib.sha1(json.dumps(options, sort_keys=True).encode())
    h.update(source.fingerprint().encode())
    if source.files:
        for i in range(len(source)):
            h.update(str(os.stat(source.path(i)).st_mtime_ns).encode())
    return h.hexdigest()[:20]


def ensure_beton(source, options: dict) -> Path:
    """The .beton for `source`: its own, or a conversion cached under options["cache"]."""
    if source.beton is not None:
        return Path(source.beton)
    from ..sources.convert import convert

    default_format = "raw" if source.in_memory else "exact"  # the very pixels the other backends read
    conv = {"image_format": options.get("image_format", default_format),
            "max_resolution": options.get("max_resolution"), "jpeg_quality": int(options.get("jpeg_quality", 90))}
    key = source_key(source, conv)
    path = Path(options["cache"]) if options.get("cache") else DEFAULT_CACHE / f"{key}.beton"
    stamp = path.with_name(path.name + ".key")
    if path.exists() and stamp.exists() and stamp.read_text().strip() == key:
        return path
    result = convert(source, path, on_error="raise", **conv)
    if result.written != len(source):
        raise RuntimeError(f"converting to {path} wrote {result.written} of {len(source)} samples")
    stamp.write_text(key + "\n")
    return path


class _Pipeline(EpochIterator):
    """FFCV's epoch thread, resolving each batch's magnitude as it starts the
    batch (the same moment the other backends resolve it: dispatch)."""

    def __init__(self, loader, order, backend: "FfcvBackend"):
        self.backend = backend
        super().__init__(loader, order)

    def run_pipeline(self, b_ix, batch_indices, batch_slot, cuda_event):
        b = self.backend
        try:
            b.live.knob[0] = b.ctx.knob.resolve(b.epoch, b.start + b_ix)
        except BaseException as err:  # re-raised in the caller's thread by _batches
            b.failure = err
            raise
        return super().run_pipeline(b_ix, batch_indices, batch_slot, cuda_event)


class _Ffcv(FfcvLoader):
    """FFCV's Loader with `_Pipeline` as its epoch iterator, and full batches
    only (a short last batch is padded; `FfcvBackend.iterate` cuts it back)."""

    def __iter__(self):
        Compiler.set_num_threads(self.num_workers)
        order = np.asarray(self.next_traversal_order())
        selected = order[:len(self) * self.batch_size]
        short = -len(selected) % self.batch_size
        if short:
            selected = np.concatenate([selected, np.resize(selected, short)])
        self.augpipe_backend.real = len(selected) - short
        self.next_epoch += 1
        if self.code is None or self.recompile:
            self.generate_code()
        return _Pipeline(self, selected, self.augpipe_backend)


class FfcvBackend:
    """Batches for an augpipe Loader from FFCV's compiled pipeline."""

    def __init__(self, ctx: BackendContext):
        opts = dict(ctx.options)
        unknown = set(opts) - OPTIONS
        if unknown:
            raise ValueError(f"unknown FFCV backend options {sorted(unknown)}; known: {sorted(OPTIONS)}")
        if ctx.knob.cap_store != "float":
            raise ValueError("the FFCV backend reads per-sample caps as float32 inside its compiled stage: "
                             "pass cap_store='float' (4 bytes per sample), or use the torch backend")
        self.ctx = ctx
        self.path = ensure_beton(ctx.source, opts)
        beton = ctx.source if ctx.source.beton is not None else BetonSource(self.path)
        if len(beton) != len(ctx.source):
            raise ValueError(f"{self.path} holds {len(beton)} samples, the source {len(ctx.source)}")
        self.beton = beton
        self.policy = ctx.policy
        self.channels = ctx.channels
        self.seed, self.size, self.fill = ctx.seed, ctx.crop.size, ctx.crop.fill
        self.crop_params = ctx.crop.params()
        self.dct_scale = bool(opts.get("dct_scale", False))
        self.copy = bool(opts.get("copy", True))
        self.order_option = opts.get("order")
        if self.order_option not in (None, "random", "quasi_random", "sequential"):
            raise ValueError(f"order must be None, 'random', 'quasi_random' or 'sequential', got {self.order_option!r}")
        self.batches_ahead = int(opts.get("batches_ahead", max(1, ctx.prefetch_factor)))
        self.caps = ctx.knob.caps  # float32[N], shared, never rebound
        self.threads = max(1, ctx.num_workers)  # FFCV runs its stages on num_workers numba threads
        out_h, out_w = self.size
        max_h, max_w = int(beton.heights.max()), int(beton.widths.max())
        self.scratch_sizes = (_words(max_h * max_w * 4),  # decoded box (RGBX): at most the largest image
                              _words(max(resize_scratch_rgbx(max_h, max_w, out_h, out_w), max_h * out_w * 3)),
                              _words(out_h * out_w * 3))  # the resized image
        pair = 2 * _words(out_h * out_w * 3)  # ops ping-pong partner (or a grey image and its partner)
        self.live = LiveState(self.batches_ahead + 4, ctx.batch_size, max(1, self.policy.num_ops), self.threads,
                              sum(self.scratch_sizes) + pair)
        self.frame = Frame(seed=self.seed, policy=self.policy, crop=self.crop_params,
                           tables=param_tables(self.policy.space, out_h, out_w), fill=self.fill,
                           channels=self.channels, size=self.size, dct_scale=self.dct_scale, threads=self.threads,
                           per_thread=self.live.per_thread, scratch_sizes=self.scratch_sizes, knob=self.live.knob,
                           caps=self.caps, batch=ctx.batch_size, ring_ops=self.live.ring_ops,
                           ring_mags=self.live.ring_mags, ring_used=self.live.ring_used, ring_index=self.live.ring_rows,
                           error=self.live.error)
        self.epoch, self.start, self.order, self.real = 0, 0, ctx.order(0), 0
        self.failure: BaseException | None = None
        self.os_cache = bool(opts.get("os_cache", True))
        # A first use (numba's cache empty) with the Loader's own order and torch's pixels: batches come from
        # the twins over the .beton (engine/firstuse.py) while the stage compiles in the background
        ctx.warm_up(background=self.order_option is None and not self.dct_scale, extra="augpipe.backends.ffcv_rows")
        self.twins = TwinBatches(self) if ctx.spec.compiling() else None
        self._ffcv = None if self.twins is not None else self._make_ffcv()
        self._iterator = None
        self._running: list = []  # FFCV's epoch thread while one runs; held by the exit hook, not self
        weakref.finalize(self, _stop, self._running)

    def _make_ffcv(self) -> "_Ffcv":
        """FFCV's Loader (its constructor compiles the stage: from numba's cache but for FFCV's own pass)."""
        ctx = self.ctx
        image_ops = [PlanDecoder(self), ToTensor()]  # CHW already: no ToTorchImage
        if ctx.device.type == "cuda":
            image_ops.append(ToDevice(ctx.device, non_blocking=True))
        order = _PlanOrder(self) if self.order_option is None else {
            "random": OrderOption.RANDOM, "quasi_random": OrderOption.QUASI_RANDOM,
            "sequential": OrderOption.SEQUENTIAL}[self.order_option]
        loader = _Ffcv(
            str(self.path), batch_size=ctx.batch_size, num_workers=self.threads,
            os_cache=self.os_cache, order=order,
            distributed=self.order_option is not None and ctx.world_size > 1, seed=ctx.seed,
            drop_last=ctx.drop_last, batches_ahead=self.batches_ahead,
            # labels and stored indices come from the rows the stage records (FFCV's IntDecoder
            # pipelines cost a compile each per Loader, ~0.3-0.7 s on 2 cores)
            pipelines={"image": image_ops, "label": None, "index": None},
        )
        loader.augpipe_backend = self
        return loader

    @property
    def lag(self) -> int:
        """A knob or cap change reaches batches built after it: at most this many later."""
        return self.batches_ahead + 1

    # ------------------------------------------------------------ iterate
    def iterate(self, epoch: int, start: int) -> Iterator[Batch]:
        self.close()
        if self._ffcv is None:
            if self.twins.spec.compiling():
                start = yield from self.twins.iterate(epoch, start)  # the step FFCV goes on from, once cached
                if start is None:
                    return
            self.twins.close()
            self._ffcv = self._make_ffcv()
        ctx, live = self.ctx, self.live
        own_order = self.order_option is None
        if own_order:
            self.order = ctx.order(epoch)[start * ctx.batch_size:]
            self.start, skip = start, 0
        else:
            self.start, skip = 0, start  # FFCV's own order: replay the epoch, drop the first batches
        self.epoch = epoch
        self.failure = None
        live.state[_EPOCH] = epoch
        live.state[_COUNTER] = 0
        self._ffcv.next_epoch = epoch
        self._iterator = it = iter(self._ffcv)
        self._running.append(it)
        try:
            for j, (images,) in enumerate(_batches(it, self)):
                if j < skip:
                    continue
                n = min(images.shape[0], self.real - j * ctx.batch_size)  # the padding of a last batch goes
                images = images[:n]
                slot = j % live.slots
                rows = live.ring_rows[slot, :n]
                if self.copy and images.device.type == "cpu":
                    # contiguous NCHW, like the torch backend (numpy copy: no torch thread pool)
                    images = torch.from_numpy(images.numpy().copy())
                yield ctx.finish(images, self.beton.labels[rows], self.beton.source_index[rows],
                                 live.ring_used[slot, :n].copy(), live.ring_ops[slot, :n].copy(),
                                 live.ring_mags[slot, :n].copy(), epoch, self.start + j)
        finally:
            if self._iterator is it:
                self.close()

    def close(self) -> None:
        """Stop FFCV's epoch thread (the backend stays usable)."""
        self._iterator = None
        _stop(self._running)


def _stop(running: list) -> None:
    """Stop and join FFCV's epoch threads in `running`. Also run at interpreter exit: an epoch left
    unfinished (a `break`) kept FFCV's daemon thread inside compiled code while the process tore down,
    which aborted it ("terminate called without an active exception") in ~1 of 12 runs."""
    while running:
        it = running.pop()
        it.close()
        if it.is_alive():
            it.join(timeout=5)


class TwinBatches:
    """A first use's batches (numba's cache empty, engine/firstuse.py): the torch backend's path over the
    .beton, on `threads` threads -- each sample loaded from the file (libjpeg-turbo's accurate IDCT, as the
    stage decodes), planned by the planner's twin, cropped and resized with torch's arithmetic, grey sources
    cut to their one channel after the resize as the stage does, the ops by the torch executor: the stage's
    values, slower, until its compiled code is cached."""

    def __init__(self, backend: "FfcvBackend"):
        from ..engine.reference import BuildSpec

        ctx = backend.ctx
        self.b, self.ctx = backend, ctx
        self.spec = BuildSpec(backend.beton, ctx.policy, ctx.crop, ctx.knob, ctx.seed, ctx.on_error,
                              first_use=ctx.spec.first_use)
        self.pool = None

    def iterate(self, epoch: int, start: int):
        """Yields batches from step `start` while the kernels compile; returns the step the compiled stage
        takes over at, or None when the epoch ended first."""
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor
        from itertools import islice

        if self.pool is None:
            self.pool = ThreadPoolExecutor(self.b.threads, thread_name_prefix="augpipe-ffcv-twins")
            weakref.finalize(self, self.pool.shutdown, wait=False, cancel_futures=True)
        requests = self.ctx.requests(epoch, start)
        pending = deque(self.pool.submit(self._build, r) for r in islice(requests, self.b.lag))
        step = start
        try:
            while pending:
                batch, skipped = pending.popleft().result()
                self.ctx.errors.extend(skipped)
                step = batch.step + 1
                yield batch
                if not self.spec.compiling():
                    break  # requests already dispatched are handed out first, in order
                pending.extend(self.pool.submit(self._build, r) for r in islice(requests, 1))
            for future in list(pending):
                batch, skipped = future.result()
                pending.popleft()
                self.ctx.errors.extend(skipped)
                step = batch.step + 1
                yield batch
        finally:
            for future in pending:  # an abandoned epoch
                future.cancel()
        return None if step >= self.ctx.num_batches else step

    def _build(self, request) -> tuple[Batch, list]:
        from ..engine.exec_torch import apply_ops
        from ..engine.reference import build_part

        epoch, step, rows, knob = request
        part = build_part(self.spec, epoch, rows, knob, apply_ops=False)
        plan, beton = part["plan"], self.b.beton
        images = part["images"][:, :self.b.channels].contiguous()  # grey: stored as RGB, one channel kept
        images = apply_ops(images, plan.ops, plan.mags, plan.space)
        return self.ctx.finish(images, beton.labels[plan.index], beton.source_index[plan.index], plan.magnitude,
                               plan.ops, plan.mags, epoch, step), part["skipped"]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None


def _batches(it, backend: "FfcvBackend"):
    """FFCV's EpochIterator, minus its hang: if its thread dies on an error,
    FFCV's __next__ waits forever; this raises instead (a DecodeError naming
    the sample for a bad JPEG, the schedule's own error for a bad schedule)."""
    from queue import Empty

    from ffcv.loader.epoch_iterator import IS_CUDA

    while True:
        try:
            result = it.output_queue.get(timeout=0.5)
        except Empty:
            if not it.is_alive():
                it.close()
                if backend.failure is not None:
                    raise backend.failure
                index, code = (int(v) for v in backend.live.error)
                if index >= 0:
                    backend.live.error[:] = -1
                    from ..sources import DecodeError

                    raise DecodeError(backend.beton.describe(index), ERRORS.get(code, f"error {code}"))
                raise RuntimeError("FFCV's pipeline thread stopped on an error (its traceback is printed above)")
            continue
        if result is None:
            it.close()
            return
        slot, batch = result
        if IS_CUDA:
            it.current_stream.wait_stream(it.cuda_streams[slot])
        yield batch


def make_backend(ctx: BackendContext) -> FfcvBackend:
    return FfcvBackend(ctx)
