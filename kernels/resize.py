"""Crop + resize (+ horizontal flip) of HWC uint8 images into preallocated buffers.

`resize_box` reproduces torch's antialiased bilinear resize of uint8 images
(`torchvision.transforms.v2.functional.resize(..., antialias=True)`, the
PIL-style separable filter): triangle filter widened by the downscale factor,
weights quantised to int16 fixed point exactly as torch's uint8 path does,
horizontal pass first into a uint8 intermediate, then the vertical pass.
Boxes whose size equals the output are copied pixel for pixel, and may reach
outside the image (padded crops: those pixels get `fill`).

Plain module-level functions: under NUMBA_DISABLE_JIT=1 they run as Python.
"""
import math

import numpy as np
from numba import njit, prange


@njit(nogil=True)
def aa_weights(in_size, out_size, offset, span):
    """Int16-style fixed-point antialiased bilinear weights.

    Maps `out_size` output pixels onto the source segment [offset, offset + span).
    Returns (starts, counts, weights (out_size, max_taps) int32, precision bits);
    `starts` are absolute source coordinates (clamped to the segment).
    """
    scale = span / out_size
    support = scale if scale >= 1.0 else 1.0
    inv = 1.0 / scale if scale >= 1.0 else 1.0
    taps = np.int64(math.ceil(support)) * 2 + 1
    starts = np.empty(out_size, np.int64)
    counts = np.empty(out_size, np.int64)
    wf = np.zeros((out_size, taps), np.float64)
    max_w = 0.0
    for i in range(out_size):
        center = scale * (i + 0.5)
        xmin = max(np.int64(center - support + 0.5), 0)
        xmax = min(np.int64(center + support + 0.5), span)
        n = min(xmax - xmin, taps)
        total = 0.0
        for j in range(n):
            x = (j + xmin - center + 0.5) * inv
            if x < 0:
                x = -x
            w = 1.0 - x if x < 1.0 else 0.0
            wf[i, j] = w
            total += w
        if total != 0.0:
            for j in range(n):
                wf[i, j] /= total
                if wf[i, j] > max_w:
                    max_w = wf[i, j]
        starts[i] = xmin + offset
        counts[i] = n
    # torch: the largest precision for which the biggest weight fits int16
    prec = 0
    while prec < 22:
        if np.int64(0.5 + max_w * (1 << (prec + 1))) >= (1 << 15):
            break
        prec += 1
    wi = np.zeros((out_size, taps), np.int32)
    one = float(1 << prec)
    for i in range(out_size):
        for j in range(counts[i]):
            v = wf[i, j] * one
            wi[i, j] = np.int32(v - 0.5) if v < 0 else np.int32(v + 0.5)
    return starts, counts, wi, prec


@njit(nogil=True, inline="always")
def _clip(v):
    return np.uint8(0 if v < 0 else (255 if v > 255 else v))


@njit(nogil=True)
def copy_box(src, top, left, flip, fill, dst):
    """dst = src[top:top+h, left:left+w] (h, w = dst's), mirrored if `flip`;
    source pixels outside the image read as `fill`."""
    height, width, channels = src.shape
    h, w = dst.shape[0], dst.shape[1]
    for y in range(h):
        sy = top + y
        row_ok = 0 <= sy < height
        for x in range(w):
            sx = left + (w - 1 - x if flip else x)
            if row_ok and 0 <= sx < width:
                for c in range(channels):
                    dst[y, x, c] = src[sy, sx, c]
            else:
                for c in range(channels):
                    dst[y, x, c] = fill


@njit(nogil=True)
def resize_box(src, top, left, h, w, flip, fill, dst, tmp):
    """Crop box (top, left, h, w) of HWC uint8 `src`, resize it to dst's size
    (antialiased bilinear, torch's uint8 arithmetic), mirror if `flip`.

    tmp: uint8 scratch with at least h * out_w * C elements (any shape; it is
    flattened). A box of exactly the output size is copied (and may reach
    outside the image, reading `fill`); otherwise it must lie inside.
    """
    out_h, out_w, channels = dst.shape
    if h == out_h and w == out_w:
        copy_box(src, top, left, flip, fill, dst)
        return
    # horizontal pass: rows top..top+h, columns -> out_w, into tmp (h, out_w, C)
    inter = tmp.reshape(-1)[: h * out_w * channels].reshape(h, out_w, channels)
    if w == out_w:
        for y in range(h):
            for x in range(out_w):
                for c in range(channels):
                    inter[y, x, c] = src[top + y, left + x, c]
    else:
        xs, xn, xw, xp = aa_weights(src.shape[1], out_w, left, w)
        half = np.int32(1 << (xp - 1)) if xp > 0 else np.int32(0)
        for y in range(h):
            row = src[top + y]
            irow = inter[y]
            for x in range(out_w):
                s0 = xs[x]
                if channels == 3:
                    a0 = half
                    a1 = half
                    a2 = half
                    for j in range(xn[x]):
                        wj = xw[x, j]
                        a0 += np.int32(row[s0 + j, 0]) * wj
                        a1 += np.int32(row[s0 + j, 1]) * wj
                        a2 += np.int32(row[s0 + j, 2]) * wj
                    irow[x, 0] = _clip(a0 >> xp)
                    irow[x, 1] = _clip(a1 >> xp)
                    irow[x, 2] = _clip(a2 >> xp)
                else:
                    for c in range(channels):
                        acc = half
                        for j in range(xn[x]):
                            acc += np.int32(row[s0 + j, c]) * xw[x, j]
                        irow[x, c] = _clip(acc >> xp)
    # vertical pass (+ flip on write)
    if h == out_h:
        for y in range(out_h):
            for x in range(out_w):
                dx = out_w - 1 - x if flip else x
                for c in range(channels):
                    dst[y, dx, c] = inter[y, x, c]
        return
    ys, yn, yw, yp = aa_weights(src.shape[0], out_h, 0, h)
    half = np.int32(1 << (yp - 1)) if yp > 0 else np.int32(0)
    flat = inter.reshape(h, out_w * channels)
    acc = np.empty(out_w * channels, np.int32)
    for y in range(out_h):
        s0 = ys[y]
        acc[:] = half
        for j in range(yn[y]):
            wj = yw[y, j]
            r = flat[s0 + j]
            for k in range(out_w * channels):
                acc[k] += np.int32(r[k]) * wj
        drow = dst[y]
        for x in range(out_w):
            dx = out_w - 1 - x if flip else x
            for c in range(channels):
                drow[dx, c] = _clip(acc[x * channels + c] >> yp)


@njit(nogil=True, parallel=True)
def crop_resize_batch(images, boxes, flips, fill, out, tmp):
    """Batch form, parallel over samples: out[i] = resize_box(images[i], boxes[i], flips[i]).

    images: uint8 (N, H, W, C); boxes: int (N, 4) (top, left, h, w);
    flips: bool (N,); out: uint8 (N, oh, ow, C); tmp: uint8 (N, >= H*ow*C).
    """
    for i in prange(images.shape[0]):
        resize_box(images[i], boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3], flips[i], fill, out[i], tmp[i])
