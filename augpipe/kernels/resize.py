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


@njit(nogil=True, cache=True)  # cached: the FFCV backend calls it from Python at every Loader
def resize_scratch_rgbx(max_h, max_w, out_h, out_w):
    """Bytes of scratch `resize_box_rgbx` needs for boxes up to max_h x max_w."""
    h, w = max(max_h, out_h), max(max_w, out_w)
    return 4 * (h * w + 2 * h * out_w + out_h * out_w)


@njit(nogil=True)
def resize_box_rgbx(src, top, left, h, w, flip, fill, dst, tmp):
    """`resize_box` for an RGBX source (H, W, 4) into an RGB `dst` (oh, ow, 3):
    the same arithmetic, bit for bit, in a vectorisable order.

    The horizontal pass is the costly one in `resize_box`: its taps move along
    a row, so it cannot run on SIMD lanes. Here each pixel is one 32-bit word;
    the box is transposed (columns become rows), filtered with the same
    contiguous-lane loop as the vertical pass, transposed back, then filtered
    vertically. Measured 1.7-2.4x faster than `resize_box` at 224 px.

    tmp: uint8 scratch of at least resize_scratch_rgbx(h, w, oh, ow) bytes, a
    multiple of 4. A box of exactly the output size is copied and may reach
    outside the image (those pixels get `fill`); otherwise it must lie inside.
    """
    out_h, out_w = dst.shape[0], dst.shape[1]
    height, width = src.shape[0], src.shape[1]
    if h == out_h and w == out_w:
        copy_box(src[:, :, :3], top, left, flip, fill, dst)
        return
    src32 = src.reshape(height * width * 4).view(np.uint32).reshape(height, width)
    t32 = tmp[: (tmp.shape[0] // 4) * 4].view(np.uint32)
    # 1. the box, transposed: column x of the box is row x of col_t
    col_t = t32[: w * h].reshape(w, h)
    for y in range(h):
        row = src32[top + y]
        for x in range(w):
            col_t[x, y] = row[left + x]
    # 2. horizontal pass over the columns -> inter_t (out_w, h) RGBX
    inter_t = t32[w * h: w * h + out_w * h].reshape(out_w, h)
    cols = col_t.view(np.uint8).reshape(w, h * 4)
    inter_rows = inter_t.view(np.uint8).reshape(out_w, h * 4)
    if w == out_w:
        for x in range(w):  # a loop, not a slice assignment: see kernels.ops.copy_flat
            for k in range(h * 4):
                inter_rows[x, k] = cols[x, k]
    else:
        xs, xn, xw, xp = aa_weights(width, out_w, left, w)
        _filter_lanes(cols, xs, xn, xw, xp, -left, inter_rows)
    # 3. back to rows: inter (h, out_w) RGBX
    inter = t32[w * h + out_w * h: w * h + 2 * out_w * h].reshape(h, out_w)
    for x in range(out_w):
        col = inter_t[x]
        for y in range(h):
            inter[y, x] = col[y]
    rows = inter.view(np.uint8).reshape(h, out_w * 4)
    # 4. vertical pass, then RGBX -> RGB with the flip
    if h == out_h:
        out = rows
    else:
        end = w * h + 2 * out_w * h
        out = t32[end: end + out_h * out_w].view(np.uint8).reshape(out_h, out_w * 4)
        ys, yn, yw, yp = aa_weights(height, out_h, 0, h)
        _filter_lanes(rows, ys, yn, yw, yp, 0, out)
    for y in range(out_h):
        orow = out[y]
        drow = dst[y]
        for x in range(out_w):
            dx = out_w - 1 - x if flip else x
            drow[dx, 0] = orow[4 * x]
            drow[dx, 1] = orow[4 * x + 1]
            drow[dx, 2] = orow[4 * x + 2]


@njit(nogil=True)
def _filter_lanes(src_rows, starts, counts, weights, prec, shift, out_rows):
    """out_rows[i] = clip((sum_j weights[i, j] * src_rows[starts[i] + shift + j] + half) >> prec):
    one output row per filter position, every lane (byte) of a row at once."""
    n = src_rows.shape[1]
    half = np.int32(1 << (prec - 1)) if prec > 0 else np.int32(0)
    acc = np.empty(n, np.int32)
    for i in range(out_rows.shape[0]):
        s0 = starts[i] + shift
        for k in range(n):
            acc[k] = half
        for j in range(counts[i]):
            wj = weights[i, j]
            r = src_rows[s0 + j]
            for k in range(n):
                acc[k] += np.int32(r[k]) * wj
        o = out_rows[i]
        for k in range(n):
            v = acc[k] >> prec
            o[k] = 0 if v < 0 else (255 if v > 255 else v)
