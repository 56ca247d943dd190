"""The FFCV backend: the planner and numba kernels inside FFCV's compiled pipeline.

Batches come from FFCV's `EpochIterator` thread; every stage is compiled
code. The image field has one stage, `PlanDecoder`, parallel over the batch
with one chunk (and one set of scratch buffers) per thread. Per sample it
reads the stored size, calls `augpipe.plan.plan_sample` with (seed, epoch,
dataset index, knob, cap[index]) -- the very planner the torch backend uses
--, decodes only the planned box as RGBX (`kernels.jpeg.decode_box`: libjpeg-turbo
with jpeg_crop_scanline / jpeg_skip_scanlines, bit-identical to a full
decode; DCT-scaled when the box is >= 2x the output), resizes (torch's
antialiased bilinear, bit-exact) and flips, applies the planned ops
(`kernels.ops.apply_sample_ops`) and writes CHW into FFCV's output buffer.

Live values: the knob, the per-sample caps, the epoch and a per-step
schedule are read through their addresses (kernels.live) on every batch, so
in-place changes reach already compiled code without recompiling. Lag: FFCV
builds `batches_ahead` batches ahead, so `loader.magnitude = m` shows up at
most `batches_ahead + 1` batches later; caps are keyed by dataset index and
`set_magnitude(schedule)` is exact per step (no lag).

Options (`Loader(..., backend="ffcv", backend_options={...})`):
    cache: .beton path for a non-.beton source (converted on first use;
        default ~/.cache/augpipe/ffcv/<content key>.beton).
    image_format, max_resolution, jpeg_quality: conversion settings
        (default "jpg", None, 90).
    order: None (default: the Loader's own order -- same batches as the
        torch backend, sharded by global rank, exact resume) or FFCV's
        "random" | "quasi_random" | "sequential" (FFCV's sharding with
        distributed=True; resume replays and drops the first batches).
    os_cache: FFCV's os_cache (default True).
    batches_ahead: FFCV's prefetch depth (default: loader.prefetch_factor).
    dct_scale: allow DCT-scaled JPEG decoding (default True).
    copy: hand out fresh contiguous NCHW tensors (default True). False gives FFCV's own buffers, overwritten
        `batches_ahead + 2` batches later, as FFCV does.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch

from ffcv.fields.basics import IntDecoder
from ffcv.fields.rgb_image import SimpleRGBImageDecoder
from ffcv.loader import Loader as FfcvLoader
from ffcv.loader import OrderOption
from ffcv.pipeline.allocation_query import AllocationQuery
from ffcv.pipeline.compiler import Compiler
from ffcv.pipeline.operation import Operation
from ffcv.pipeline.state import State
from ffcv.transforms import Squeeze, ToDevice, ToTensor
from ffcv.traversal_order.base import TraversalOrder

from ..batch import Batch
from ..beton import BetonSource
from ..kernels.decode import dct_denominator, scale_box, scaled_size
from ..kernels.jpeg import ERRORS, decode_box
from ..kernels.live import address, live_f32, live_f64, live_i8, live_i64
from ..kernels.ops import apply_sample_ops
from ..kernels.resize import resize_box, resize_box_rgbx, resize_scratch_rgbx
from ..ops import MAX_MAGNITUDE, SIGNED, check_magnitude, param_tables
from ..plan import plan_sample
from ..policy import Identity

if TYPE_CHECKING:
    from ..loader import Loader

_JPG = 0
_EPOCH, _COUNTER, _START = 0, 1, 2
DEFAULT_CACHE = Path(os.environ.get("AUGPIPE_CACHE", Path.home() / ".cache" / "augpipe")) / "ffcv"


class LiveState:
    """The arrays compiled code reads by address; owned by the backend.

    state: int64 [epoch, batches built this iteration, start step, 0]
    sched: float64 per-step magnitudes of the epoch (-1: use the knob)
    ring_*: ops / signed magnitudes / magnitude used, per batch built,
        in a ring of `slots` batches (batch j of an iteration is slot j % slots).
    error: int64 [dataset index, code] of the first sample that failed to decode (-1: none).
    """

    def __init__(self, steps: int, slots: int, batch: int, num_ops: int):
        self.state = np.zeros(4, np.int64)
        self.sched = np.full(max(1, steps), -1.0, np.float64)
        self.slots, self.batch, self.num_ops = slots, batch, num_ops
        self.ring_ops = np.full((slots, batch, num_ops), -1, np.int8)
        self.ring_mags = np.zeros((slots, batch, num_ops), np.float32)
        self.ring_used = np.zeros((slots, batch), np.float32)
        self.error = np.full(2, -1, np.int64)


class PlanDecoder(SimpleRGBImageDecoder):
    """The whole image pipeline as one FFCV stage, parallel over the batch.

    Per sample: plan (augpipe.plan.plan_sample), decode only the planned box
    (kernels.jpeg.decode_box; DCT-scaled when the box is >= 2x the output),
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
        max_h = int(self.metadata["height"].max())
        max_w = int(self.metadata["width"].max())
        shape, dtype = (3, out_h, out_w), np.dtype("<u1")  # CHW: no ToTorchImage permute afterwards
        # Scratch per thread, not per sample: FFCV's own decoders reserve a
        # largest-image buffer for every sample of every batch in flight, which
        # is most of their peak memory. FFCV only allocates per sample, so each
        # per-thread buffer is spread over the batch's rows and reshaped back.
        threads, bsz = self.b.threads, self.b.loader.batch_size
        def words(n):  # multiples of 8 bytes: the resize views its scratch as uint32
            return -(-max(1, n) // 8) * 8

        self.sizes = (words(max_h * max_w * 4),  # decoded box (RGBX): at most the largest image
                      words(max(resize_scratch_rgbx(max_h, max_w, out_h, out_w), max_h * out_w * 3)),  # resize
                      2 * words(out_h * out_w * 3))  # the image and its ops ping-pong partner
        per_sample = -(-threads * sum(self.sizes) // bsz)
        k = max(1, self.b.policy.num_ops)
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
        my_range = Compiler.get_iterator()
        # Fresh dispatchers per generated pipeline, as FFCV does for its own
        # callees: calling the module-level dispatchers from a second compiled
        # pipeline in the same process failed in numba's typing (KeyError in
        # Dispatcher.nopython_signatures, measured with numba 0.68).
        resize_box_c = _fresh(resize_box)
        resize_rgbx_c = _fresh(resize_box_rgbx)
        plan_sample_c = _fresh(plan_sample)
        decode_box_c = _fresh(decode_box)
        dct_denominator_c = _fresh(dct_denominator)
        scaled_size_c = _fresh(scaled_size)
        scale_box_c = _fresh(scale_box)
        apply_ops_c = _fresh(apply_sample_ops)
        seed = np.uint64(b.seed)
        crop = b.crop_params
        pol = b.policy
        kind, pool, num_ops, draw = np.int64(pol.kind), pol.pool, np.int64(pol.num_ops), pol.draw_magnitude
        sub_ops, sub_probs, sub_mags, signed = pol.sub_ops, pol.sub_probs, pol.sub_mags, SIGNED
        has_ops = pol.kind != 0
        tables = param_tables(b.space, b.size[0], b.size[1])
        fill = np.uint8(b.fill)
        max_denom = np.int64(8 if b.dct_scale else 1)
        fast_dct = np.int64(1)  # FFCV's decoders and BetonSource decode with the fast integer IDCT too
        out_h, out_w = np.int64(b.size[0]), np.int64(b.size[1])
        knob_addr, caps_addr, n_caps = address(b.knob_value), address(b.caps), np.int64(len(b.caps))
        state_addr, sched_addr, n_sched = address(live.state), address(live.sched), np.int64(len(live.sched))
        ops_addr, mags_addr, used_addr = address(live.ring_ops), address(live.ring_mags), address(live.ring_used)
        error_addr = address(live.error)
        slots, bsz, k_ops = np.int64(live.slots), np.int64(live.batch), np.int64(live.num_ops)
        threads = np.int64(b.threads)
        dec_n, tmp_n, img_pair = (np.int64(v) for v in self.sizes)
        img_n = out_h * out_w * 3
        top_mag = MAX_MAGNITUDE

        def decode(batch_indices, my_storage, metadata, storage_state):
            destination, scratch, boxes, plan_ops, plan_mags, plan_out = my_storage
            state = live_i64(state_addr, 4)
            epoch = state[0]
            built = state[1]
            state[1] = built + 1
            step = state[2] + built
            knob = live_f64(knob_addr, 1)[0]
            sched = live_f64(sched_addr, n_sched)
            if 0 <= step < n_sched and sched[step] >= 0.0:  # no NaN tests: FFCV compiles with fastmath
                knob = sched[step]
            caps = live_f32(caps_addr, n_caps)
            slot = built % slots
            n = len(batch_indices)
            # One chunk per thread (round robin over the batch): each thread owns
            # one set of scratch buffers.
            for t in my_range(threads):
                mine = scratch.reshape(-1)[t * (dec_n + tmp_n + img_pair):]
                dec_buf = mine[:dec_n]
                tmp = mine[dec_n:dec_n + tmp_n]
                image = mine[dec_n + tmp_n:dec_n + tmp_n + img_n].reshape((out_h, out_w, 3))
                half = dec_n + tmp_n + img_pair // 2
                other = mine[half:half + img_n].reshape((out_h, out_w, 3))
                for i in range(t, n, threads):
                    idx = batch_indices[i]
                    box = boxes[i, :4]
                    region = boxes[i, 4:]
                    field = metadata[idx]
                    height = np.int64(field["height"])
                    width = np.int64(field["width"])
                    cap = caps[idx] if n_caps > 0 else top_mag
                    flip, used = plan_sample_c(seed, np.uint64(epoch), np.int64(idx), height, width, knob, cap,
                                               crop, kind, pool, num_ops, draw, sub_ops, sub_probs, sub_mags,
                                               signed, box, plan_ops[i], plan_mags[i])
                    plan_out[i, 0] = used
                    plan_out[i, 1] = 0.0
                    data = mem_read(field["data_ptr"], storage_state)
                    top, left, h, w = box[0], box[1], box[2], box[3]
                    if field["mode"] == _JPG:
                        denom = dct_denominator_c(h, w, out_h, out_w, max_denom)
                        if denom > 1:  # box >= 2x the output: inside the image
                            scale_box_c(top, left, h, w, denom, scaled_size_c(height, denom),
                                        scaled_size_c(width, denom), box)
                            top, left, h, w = box[0], box[1], box[2], box[3]
                        # decode the part of the box inside the image (padded crops reach outside)
                        t0, l0 = max(top, 0), max(left, 0)
                        t1, l1 = min(top + h, height), min(left + w, width)
                        if t1 <= t0 or l1 <= l0:  # nothing inside: every pixel is fill
                            t0, l0, t1, l1 = 0, 0, 1, 1
                        rc = decode_box_c(data, t0, l0, t1 - t0, l1 - l0, denom, fast_dct, dec_buf, region, 4)
                        if rc != 0:  # reported after the loop; the sample stays black
                            plan_out[i, 1] = rc
                            destination[i][:] = 0
                            continue
                        src = dec_buf[: (t1 - t0) * region[1] * 4].reshape((t1 - t0, region[1], 4))
                        resize_rgbx_c(src, top - t0, left - region[0], h, w, flip, fill, image, tmp)
                    else:
                        nbytes = height * width * 3
                        dec_buf[:nbytes] = data[:nbytes]
                        src = dec_buf[:nbytes].reshape((height, width, 3))
                        resize_box_c(src, top, left, h, w, flip, fill, image, tmp)
                    if has_ops:
                        apply_ops_c(image, plan_ops[i], plan_mags[i], tables, other)
                    out = destination[i]
                    for c in range(3):
                        for y in range(out_h):
                            for x in range(out_w):
                                out[c, y, x] = image[y, x, c]
            # Copy the plan into the ring outside the parallel loop: numba's parfor
            # pass drops stores to address-made views inside prange (measured).
            ring_ops = live_i8(ops_addr, slots * bsz * k_ops).reshape((slots * bsz, k_ops))
            ring_mags = live_f32(mags_addr, slots * bsz * k_ops).reshape((slots * bsz, k_ops))
            ring_used = live_f32(used_addr, slots * bsz)
            failed = False
            for i in range(n):
                for k in range(k_ops):
                    ring_ops[slot * bsz + i, k] = plan_ops[i, k]
                    ring_mags[slot * bsz + i, k] = plan_mags[i, k]
                ring_used[slot * bsz + i] = plan_out[i, 0]
                if plan_out[i, 1] != 0.0 and not failed:
                    failed = True
                    error = live_i64(error_addr, 2)
                    error[0] = batch_indices[i]
                    error[1] = np.int64(plan_out[i, 1])
            if failed:
                raise ValueError("augpipe: a stored JPEG failed to decode (see the loader's error)")
            return destination[:n]

        decode.is_parallel = True
        return decode


def _fresh(dispatcher):
    """A new numba dispatcher for a module-level njit function (plain
    function under NUMBA_DISABLE_JIT)."""
    from numba import njit

    py = getattr(dispatcher, "py_func", None)
    if py is None:
        return dispatcher
    options = {k: v for k, v in dispatcher.targetoptions.items() if k in ("nogil", "parallel", "fastmath", "boundscheck")}
    return njit(**options)(py)


class _PlanOrder(TraversalOrder):
    """FFCV traversal order that is whatever the backend set for this epoch."""

    def __init__(self, backend: "FfcvBackend"):  # noqa: D401 - no super(): FFCV calls us with its loader
        self.b = backend

    def __call__(self, ffcv_loader):  # FFCV does `order(self)` on TraversalOrder instances
        return self

    def sample_order(self, epoch: int):
        return self.b.order


def source_key(source, options: dict) -> str:
    """A content key for a source + conversion options (names the cache file)."""
    h = hashlib.sha1(json.dumps(options, sort_keys=True).encode())
    h.update(type(source).__name__.encode())
    if hasattr(source, "_paths"):  # FolderSource: paths, sizes, mtimes
        for p in source._paths:
            st = os.stat(str(p))
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    elif hasattr(source, "images"):
        images = source.images.contiguous().numpy()
        h.update(str(images.shape).encode())
        h.update(memoryview(np.ascontiguousarray(images)).cast("B"))
    else:
        h.update(repr([source.describe(i) for i in range(len(source))]).encode())
    h.update(np.ascontiguousarray(source.labels).tobytes())
    return h.hexdigest()[:20]


def ensure_beton(source, options: dict) -> Path:
    """The .beton for `source`: itself, or a conversion cached under options["cache"]."""
    if isinstance(source, BetonSource):
        return source.path
    from ..convert import convert

    conv = {"image_format": options.get("image_format", "jpg"), "max_resolution": options.get("max_resolution"),
            "jpeg_quality": int(options.get("jpeg_quality", 90))}
    key = source_key(source, conv)
    path = Path(options["cache"]) if options.get("cache") else DEFAULT_CACHE / f"{key}.beton"
    stamp = path.with_name(path.name + ".key")
    if path.exists() and stamp.exists() and stamp.read_text().strip() == key:
        return path
    result = convert(source, path, on_error="raise", **conv)
    stamp.write_text(key + "\n")
    assert result.written == len(source)
    return path


class FfcvBackend:
    """Batches for an augpipe Loader from FFCV's compiled pipeline."""

    def __init__(self, loader: "Loader"):
        opts = dict(loader.backend_options)
        unknown = set(opts) - {"cache", "image_format", "max_resolution", "jpeg_quality", "order", "os_cache",
                               "batches_ahead", "dct_scale", "copy"}
        if unknown:
            raise ValueError(f"unknown FFCV backend options {sorted(unknown)}")
        self.loader = loader
        self.path = ensure_beton(loader.dataset, opts)
        beton = loader.dataset if isinstance(loader.dataset, BetonSource) else BetonSource(self.path)
        if len(beton) != len(loader.dataset):
            raise ValueError(f"{self.path} holds {len(beton)} samples, the source {len(loader.dataset)}")
        self.beton = beton
        policy = (loader.policy if loader.train else Identity()).lower()
        self.policy, self.space = policy, policy.space
        self.seed, self.size, self.fill = loader.seed, loader.crop.size, loader.crop.fill
        self.crop_params = loader.crop.params()
        self.dct_scale = bool(opts.get("dct_scale", True))
        self.copy = bool(opts.get("copy", True))
        self.order_option = opts.get("order")
        if self.order_option not in (None, "random", "quasi_random", "sequential"):
            raise ValueError(f"order must be None, 'random', 'quasi_random' or 'sequential', got {self.order_option!r}")
        batches_ahead = int(opts.get("batches_ahead", max(1, loader.prefetch_factor)))
        self.batches_ahead = batches_ahead
        self.knob_value = loader.knob._value.numpy()  # float64[1], shared, never rebound
        self.caps = loader.knob.caps  # float32[N], shared, never rebound
        self.live = LiveState(len(loader), batches_ahead + 4, loader.batch_size, policy.num_ops)
        self.order = loader.indices(0)
        self.threads = max(1, loader.num_workers)  # FFCV runs its stages on num_workers numba threads
        device = loader.device
        image_ops = [PlanDecoder(self), ToTensor()]  # CHW already: no ToTorchImage
        if device.type == "cuda":
            image_ops.append(ToDevice(device, non_blocking=True))
        tail = [ToTensor(), Squeeze()] + ([ToDevice(device, non_blocking=True)] if device.type == "cuda" else [])
        order = _PlanOrder(self) if self.order_option is None else {
            "random": OrderOption.RANDOM, "quasi_random": OrderOption.QUASI_RANDOM,
            "sequential": OrderOption.SEQUENTIAL}[self.order_option]
        self._ffcv = FfcvLoader(
            str(self.path), batch_size=loader.batch_size, num_workers=self.threads,
            os_cache=bool(opts.get("os_cache", True)), order=order,
            distributed=self.order_option is not None and loader.world_size > 1, seed=loader.seed,
            drop_last=loader.drop_last, batches_ahead=batches_ahead,
            pipelines={"image": image_ops, "label": [IntDecoder()] + tail, "index": [IntDecoder()] + tail},
        )
        mean = torch.tensor(loader.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(loader.std, dtype=torch.float32).view(1, -1, 1, 1)
        self._scale = (1.0 / (255.0 * std)).to(device)
        self._shift = (-mean / std).to(device)
        self._iterator = None

    # ------------------------------------------------------------ iterate
    def _fill_schedule(self, epoch: int) -> None:
        knob = self.loader.knob
        sched = self.live.sched
        if knob.schedule is None:
            sched[:] = -1.0
            return
        for step in range(len(sched)):
            sched[step] = check_magnitude(knob.schedule(epoch, step), name=f"schedule({epoch}, {step})")

    def iterate(self, epoch: int, start: int) -> Iterator[Batch]:
        self.close()
        loader, live = self.loader, self.live
        own_order = self.order_option is None
        skip = 0
        if own_order:
            self.order = loader.indices(epoch)[start * loader.batch_size:]
            live.state[_START] = start
        else:
            skip, live.state[_START] = start, 0
        self._fill_schedule(epoch)
        schedule = loader.knob.schedule
        live.state[_EPOCH] = epoch
        live.state[_COUNTER] = 0
        self._ffcv.next_epoch = epoch
        self._iterator = it = iter(self._ffcv)
        try:
            for j, (images, labels, index) in enumerate(_batches(it, self)):
                step = start + j if own_order else j
                if not own_order and j < skip:
                    continue
                if loader.knob.schedule is not schedule:  # a new schedule mid-epoch: from the next batches on
                    schedule = loader.knob.schedule
                    self._fill_schedule(epoch)
                loader.knob.scheduled(epoch, step)  # mirror the scheduled value into loader.magnitude
                n = images.shape[0]
                used = torch.from_numpy(live.ring_used[j % live.slots, :n].copy())
                if self.copy and images.device.type == "cpu":
                    # contiguous NCHW, like the torch backend (numpy copy: no torch thread pool)
                    images = torch.from_numpy(images.numpy().copy())
                    labels, index = labels.clone(), index.clone()
                if loader.output == "float":
                    images = images.float().mul_(self._scale).add_(self._shift)
                labels = labels.long().reshape(-1)
                index = index.long().reshape(-1)
                yield Batch(images, labels, index, used.to(images.device), epoch, step)
        finally:
            if self._iterator is it:
                self.close()

    def close(self) -> None:
        """Stop FFCV's epoch thread (the backend stays usable)."""
        it, self._iterator = self._iterator, None
        if it is not None:
            it.close()
            if it.is_alive():
                it.join(timeout=5)


def _batches(it, backend: "FfcvBackend"):
    """FFCV's EpochIterator, minus its hang: if its thread dies on an error
    (the traceback is printed by the thread), FFCV's __next__ waits forever;
    this raises instead (a DecodeError naming the sample for a bad JPEG)."""
    from queue import Empty

    from ffcv.loader.epoch_iterator import IS_CUDA

    while True:
        try:
            result = it.output_queue.get(timeout=0.5)
        except Empty:
            if not it.is_alive():
                it.close()
                index, code = (int(v) for v in backend.live.error)
                if index >= 0:
                    backend.live.error[:] = -1
                    from ..data import DecodeError

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


def make_backend(loader: "Loader") -> FfcvBackend:
    return FfcvBackend(loader)
