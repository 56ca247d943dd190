"""The FFCV stage's work, compiled once per install.

FFCV compiles the stage function a decoder returns (`generate_code`) for
every Loader, and numba re-optimises every compiled function that stage
calls as part of it: with the planner, the JPEG decoder, the resize and the
op kernels inside, that was ~15 s per Loader on 2 cores (a train and a
validation loader paid it twice) in every process, whatever numba's cache
held. Here one thread's share of a batch (`rows`) and the copy of the plans
into the backend's ring (`record`) are numba `cfunc`s kept in numba's
on-disk cache and called through C function pointers, which numba cannot
see into; the threads are started by a small C runner (csrc/parallel_rows.c)
rather than a numba prange, whose parfor passes would also run per Loader.
The stage FFCV compiles is a serial pass over the batch's stored fields and
three calls.

A C function takes no arrays, so its arguments travel in a *frame*: one int64
array of scalars and of addresses of arrays (kernels.live turns them back into
views). The slots are the constants below; `Frame` owns the frame and the
arrays it points to.
"""
from __future__ import annotations

import numpy as np
from numba import types

from ..core.ops import MAX_MAGNITUDE, SIGNED
from ..core.plan import plan_sample
from ..engine.compiled import notice
from ..engine.fused import finish_image, jpeg_to_image
from ..kernels.live import address, live_bool, live_f32, live_f64, live_i8, live_i64, live_u8
from ..kernels.resize import resize_box

# Frame slots. Set once: the plan's and the stage's constants, and the live arrays' addresses.
(SEED, KIND, NUM_OPS, DRAW, HAS_OPS, FILL, CHANNELS, MAX_DENOM, FAST_DCT, OUT_H, OUT_W, THREADS, PER_THREAD,
 DEC_N, TMP_N, IMG_N, K_OPS, CROP, N_CROP, POOL, N_POOL, SUB_OPS, SUB_PROBS, SUB_MAGS, N_SUB, SIGNS, LIMITS,
 TABLES, N_TABLE, KNOB, CAPS, N_CAPS,
 RING_OPS, RING_MAGS, RING_USED, RING_INDEX, RING_SLOTS, RING_ROWS, ERROR,
 # set per batch by the stage: its size, epoch, ring slot, stored fields and FFCV's buffers for it
 N, EPOCH, SLOT, FIELDS, DEST, SCRATCH, BOXES, PLAN_OPS, PLAN_MAGS, PLAN_OUT,
 FAILED,  # set by `record`: 1 when a sample failed to decode (ERROR names it)
 SLOTS) = range(51)
# Columns of the per-batch field table (int64, one row per sample).
F_INDEX, F_HEIGHT, F_WIDTH, F_DATA, F_SIZE, F_MODE, F_COLUMNS = range(7)
JPG = 0  # FFCV's RGBImageField mode for a stored JPEG


def rows(frame_addr, t):
    """Thread t's samples of the batch described by the frame (round robin:
    samples t, t + threads, ...), with thread t's scratch. Decode failures are
    written to plan_out[i, 1] (a C function cannot raise); the sample stays black."""
    f = live_i64(frame_addr, SLOTS)
    n, threads, per_thread, k = f[N], f[THREADS], f[PER_THREAD], f[K_OPS]
    out_h, out_w, channels = f[OUT_H], f[OUT_W], f[CHANNELS]
    dec_n, tmp_n, img_n = f[DEC_N], f[TMP_N], f[IMG_N]
    seed, epoch = np.uint64(f[SEED]), np.uint64(f[EPOCH])
    kind, num_ops, draw, has_ops = f[KIND], f[NUM_OPS], f[DRAW] != 0, f[HAS_OPS] != 0
    fill, max_denom, fast_dct = np.uint8(f[FILL]), f[MAX_DENOM], f[FAST_DCT]
    crop = live_f64(f[CROP], f[N_CROP])
    pool = live_i8(f[POOL], f[N_POOL])
    n_sub, n_table, n_caps = f[N_SUB], f[N_TABLE], f[N_CAPS]
    sub_ops = live_i8(f[SUB_OPS], 2 * n_sub).reshape((n_sub, 2))
    sub_probs = live_f64(f[SUB_PROBS], 2 * n_sub).reshape((n_sub, 2))
    sub_mags = live_f64(f[SUB_MAGS], 2 * n_sub).reshape((n_sub, 2))
    signed = live_bool(f[SIGNS], n_table)
    limits = live_f64(f[LIMITS], n_table)
    tables = live_f64(f[TABLES], n_table * 31).reshape((n_table, 31))
    knob = live_f64(f[KNOB], 1)[0]
    caps = live_f32(f[CAPS], n_caps)
    fields = live_i64(f[FIELDS], n * F_COLUMNS).reshape((n, F_COLUMNS))
    dest = live_u8(f[DEST], n * channels * out_h * out_w).reshape((n, channels, out_h, out_w))
    boxes = live_i64(f[BOXES], n * 6).reshape((n, 6))
    plan_ops = live_i8(f[PLAN_OPS], n * k).reshape((n, k))
    plan_mags = live_f32(f[PLAN_MAGS], n * k).reshape((n, k))
    plan_out = live_f32(f[PLAN_OUT], n * 2).reshape((n, 2))
    mine = live_u8(f[SCRATCH] + t * per_thread, per_thread)
    rgb_n = out_h * out_w * 3
    dec_buf = mine[:dec_n]
    tmp = mine[dec_n:dec_n + tmp_n]
    image = mine[dec_n + tmp_n:dec_n + tmp_n + rgb_n].reshape((out_h, out_w, 3))
    pair = mine[dec_n + tmp_n + img_n:]
    for i in range(t, n, threads):
        idx = fields[i, F_INDEX]
        height, width = fields[i, F_HEIGHT], fields[i, F_WIDTH]
        box = boxes[i, :4]
        region = boxes[i, 4:]
        cap = np.float64(caps[idx]) if n_caps > 0 else MAX_MAGNITUDE
        flip, used = plan_sample(seed, epoch, idx, height, width, knob, cap, crop, kind, pool, num_ops, draw,
                                 sub_ops, sub_probs, sub_mags, signed, limits, box, plan_ops[i], plan_mags[i])
        plan_out[i, 0] = used
        plan_out[i, 1] = 0.0
        data = live_u8(fields[i, F_DATA], fields[i, F_SIZE])
        if fields[i, F_MODE] == JPG:
            rc = jpeg_to_image(data, height, width, box, region, max_denom, fast_dct, flip, fill, dec_buf, tmp,
                               image)
            if rc != 0:
                plan_out[i, 1] = rc
                dest[i][:] = 0
                continue
        else:
            nbytes = height * width * 3
            for p in range(nbytes):  # a loop, not a slice assignment: see kernels.ops.copy_flat
                dec_buf[p] = data[p]
            src = dec_buf[:nbytes].reshape((height, width, 3))
            resize_box(src, box[0], box[1], box[2], box[3], flip, fill, image, tmp)
        finish_image(image, channels, plan_ops[i], plan_mags[i], tables, has_ops, pair, dest[i])


def record(frame_addr):
    """After every thread's rows: the batch's rows of the .beton and their plans into the ring slot (what
    the Batch reports: labels and source indices are looked up from the rows), and the
    first sample that failed to decode into ERROR (FAILED = 1; the stage raises, a C function cannot)."""
    f = live_i64(frame_addr, SLOTS)
    n, k, slot, rows_per_slot = f[N], f[K_OPS], f[SLOT], f[RING_ROWS]
    total = f[RING_SLOTS] * rows_per_slot
    ring_ops = live_i8(f[RING_OPS], total * k).reshape((total, k))
    ring_mags = live_f32(f[RING_MAGS], total * k).reshape((total, k))
    ring_used = live_f32(f[RING_USED], total)
    ring_index = live_i64(f[RING_INDEX], total)
    fields = live_i64(f[FIELDS], n * F_COLUMNS).reshape((n, F_COLUMNS))
    plan_ops = live_i8(f[PLAN_OPS], n * k).reshape((n, k))
    plan_mags = live_f32(f[PLAN_MAGS], n * k).reshape((n, k))
    plan_out = live_f32(f[PLAN_OUT], n * 2).reshape((n, 2))
    f[FAILED] = 0
    for i in range(n):
        row = slot * rows_per_slot + i
        for j in range(k):
            ring_ops[row, j] = plan_ops[i, j]
            ring_mags[row, j] = plan_mags[i, j]
        ring_used[row] = plan_out[i, 0]
        ring_index[row] = fields[i, F_INDEX]
        if plan_out[i, 1] != 0.0 and f[FAILED] == 0:
            f[FAILED] = 1
            error = live_i64(f[ERROR], 2)
            error[0] = fields[i, F_INDEX]
            error[1] = np.int64(plan_out[i, 1])


_COMPILED: dict = {}  # name -> CFunc: kept alive, since FFCV's stages hold only their addresses
_MADE: dict = {}  # name -> CFunc, compiled or not (its cache can be asked whether it holds the code)
SIGNATURES = {"rows": types.void(types.int64, types.int64), "record": types.void(types.int64)}


def _c_function(py_func, compile: bool = True):
    name = py_func.__name__
    fn = _MADE.get(name)
    if fn is None:
        from numba.core import sigutils
        from numba.core.ccallback import CFunc

        fn = CFunc(py_func, sigutils.normalize_signature(SIGNATURES[name]), locals={}, options={})
        fn.enable_caching()
        _MADE[name] = fn
    if compile and name not in _COMPILED:
        notice(fn, "the FFCV stage", 15)
        fn.compile()
        _COMPILED[name] = fn
    return fn


def first_use_kernels() -> list:
    """The stage's C functions, not compiled: what a first use waits for in numba's cache (engine/firstuse.py
    asks for them by this module's name; the engine does not import backends)."""
    return [_c_function(rows, compile=False), _c_function(record, compile=False)]


def compile_for_first_use() -> None:
    """Compile them into numba's cache (the first-use background process)."""
    c_functions()


def c_functions():
    """(runner, rows address, record): what the stage calls, from numba's on-disk cache after the first
    process. runner(rows, frame, threads) runs rows(frame, t) on `threads` threads (csrc/parallel_rows.c)."""
    import ctypes

    from ..kernels.jpeg import LIBRARY

    runner = LIBRARY.augpipe_parallel_rows
    runner.argtypes, runner.restype = [ctypes.c_uint64, ctypes.c_int64, ctypes.c_int64], ctypes.c_int
    rows_c = _c_function(rows)
    record_c = _c_function(record)
    return runner, rows_c.address, record_c.ctypes


class Frame:
    """The frame and everything it points to, for one FFCV stage (one Loader).
    The owner keeps it alive as long as the stage may run."""

    def __init__(self, *, seed, policy, crop, tables, fill, channels, size, dct_scale, threads, per_thread,
                 scratch_sizes, knob, caps, batch, ring_ops, ring_mags, ring_used, ring_index, error):
        self.keep = [np.ascontiguousarray(a) for a in (crop, policy.pool, policy.sub_ops, policy.sub_probs,
                                                        policy.sub_mags, SIGNED, policy.limits, tables)]
        crop_a, pool, sub_ops, sub_probs, sub_mags, signs, limits, tables_a = self.keep
        self.fields = np.zeros((batch, F_COLUMNS), np.int64)
        f = self.frame = np.zeros(SLOTS, np.int64)
        f[SEED] = np.array([seed], np.uint64).view(np.int64)[0]  # the bits; `rows` reads them back as uint64
        f[KIND], f[NUM_OPS], f[DRAW] = policy.kind, policy.num_ops, bool(policy.draw_magnitude)
        f[HAS_OPS], f[FILL], f[CHANNELS] = policy.kind != 0, fill, channels
        f[MAX_DENOM], f[FAST_DCT] = 8 if dct_scale else 1, 0  # the accurate IDCT: torchvision's pixels
        f[OUT_H], f[OUT_W], f[THREADS], f[PER_THREAD] = size[0], size[1], threads, per_thread
        f[DEC_N], f[TMP_N], f[IMG_N] = scratch_sizes
        f[K_OPS] = max(1, policy.num_ops)
        f[CROP], f[N_CROP] = address(crop_a), len(crop_a)
        f[POOL], f[N_POOL] = address(pool), len(pool)
        f[SUB_OPS], f[SUB_PROBS], f[SUB_MAGS], f[N_SUB] = (address(sub_ops), address(sub_probs),
                                                           address(sub_mags), len(sub_ops))
        f[SIGNS], f[LIMITS], f[TABLES], f[N_TABLE] = address(signs), address(limits), address(tables_a), len(signs)
        f[KNOB], f[CAPS], f[N_CAPS] = address(knob), address(caps), len(caps)
        f[FIELDS] = address(self.fields)
        f[RING_OPS], f[RING_MAGS], f[RING_USED] = address(ring_ops), address(ring_mags), address(ring_used)
        f[RING_INDEX] = address(ring_index)
        f[RING_SLOTS], f[RING_ROWS], f[ERROR] = ring_ops.shape[0], ring_ops.shape[1], address(error)
        if not (len(limits) == len(tables_a) == len(signs)):
            raise ValueError(f"op tables disagree: {len(signs)} ops, {len(limits)} limits, {len(tables_a)} tables")
