"""One compiled pass per sample: planned box -> decode -> resize + flip -> ops -> CHW.

The torch backend runs `render_jpeg_batch` on JPEG files read straight from
an image folder. The FFCV backend's stage does the same steps from a .beton,
calling the same kernels directly (inside FFCV's parallel pipelines a second
pipeline in one process typed arrays handed down to nested compiled helpers
as read-only and failed, numba 0.68). Same pixels: a JPEG's box is decoded with
libjpeg-turbo's accurate IDCT (kernels.jpeg.decode_box: only the box's
columns, no row below it; bit-identical to torchvision.io.decode_jpeg), resized
with torch's antialiased bilinear arithmetic (kernels.resize, bit-exact), the
ops are the generated numba dispatch (augpipe.core.opgen). No GIL anywhere.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..core.dispatch import compiled
from ..core.ops import param_tables
from ..kernels.decode import dct_denominator, scale_box, scaled_size
from ..kernels.jpeg import decode_box
from ..kernels.resize import resize_box_rgbx, resize_scratch_rgbx

apply_sample_ops = compiled().apply_sample_ops


@njit(nogil=True, cache=True)
def jpeg_to_image(data, height, width, box, region, max_denom, fast_dct, flip, fill, dec_buf, tmp, image):
    """Decode the part of `box` (top, left, h, w; int64, rewritten when DCT
    scaling applies) inside a JPEG of height x width, then resize it to
    `image` (out_h, out_w, 3) and mirror if `flip`; pixels of the box outside
    the image are `fill`. region: int64 (2,) scratch. Returns 0, or the
    decoder's negative code (kernels.jpeg.ERRORS)."""
    out_h, out_w = image.shape[0], image.shape[1]
    top, left, h, w = box[0], box[1], box[2], box[3]
    denom = dct_denominator(h, w, out_h, out_w, max_denom)
    if denom > 1:  # box >= denom x the output: inside the image
        scale_box(top, left, h, w, denom, scaled_size(height, denom), scaled_size(width, denom), box)
        top, left, h, w = box[0], box[1], box[2], box[3]
    t0, l0 = max(top, 0), max(left, 0)
    t1, l1 = min(top + h, height), min(left + w, width)
    if t1 <= t0 or l1 <= l0:  # nothing inside: every pixel is fill
        t0, l0, t1, l1 = 0, 0, 1, 1
    rc = decode_box(data, t0, l0, t1 - t0, l1 - l0, denom, fast_dct, dec_buf, region, 4)
    if rc != 0:
        return rc
    src = dec_buf[: (t1 - t0) * region[1] * 4].reshape((t1 - t0, region[1], 4))
    resize_box_rgbx(src, top - t0, left - region[0], h, w, flip, fill, image, tmp)
    return 0

@njit(nogil=True, cache=True)
def finish_image(image, channels, ops, mags, tables, has_ops, pair, out):
    """The planned ops on a resized RGB `image` (its ops partner in `pair`),
    then a CHW write into `out` (channels, H, W). channels == 1 keeps one
    channel of an image stored as R = G = B and runs the ops on it, exactly
    as on a grey source."""
    out_h, out_w = image.shape[0], image.shape[1]
    if channels == 1:
        n = out_h * out_w
        g = pair[:n].reshape((out_h, out_w, 1))
        for y in range(out_h):
            for x in range(out_w):
                g[y, x, 0] = image[y, x, 0]
        if has_ops:
            apply_sample_ops(g, ops, mags, tables, pair[n:2 * n].reshape((out_h, out_w, 1)))
        for y in range(out_h):
            for x in range(out_w):
                out[0, y, x] = g[y, x, 0]
        return
    if has_ops:
        apply_sample_ops(image, ops, mags, tables, pair[:out_h * out_w * 3].reshape((out_h, out_w, 3)))
    for c in range(3):
        for y in range(out_h):
            for x in range(out_w):
                out[c, y, x] = image[y, x, c]



@njit(nogil=True, cache=True)
def render_jpeg_batch(buf, offsets, heights, widths, jpeg, boxes, flips, fill, ops, mags, tables, has_ops,
                      max_denom, out, status):
    """A batch of JPEG files, one compiled pass per sample, on the calling thread.

    Args:
        buf: uint8, the files' bytes one after another; file i is
            buf[offsets[i]:offsets[i + 1]].
        heights, widths: image sizes (from the file headers).
        jpeg: bool per sample: False leaves the sample to the caller (status 1).
        boxes: int64 (N, 4) planned boxes (rewritten by DCT scaling); flips: bool (N,).
        ops, mags: (N, K) planned ops; tables: their parameter tables; has_ops: apply them.
        max_denom: 1, or up to 8 for DCT-scaled decoding.
        out: uint8 (N, C, H, W), C in {1, 3}.
        status: int64 (N,) written: 0 done, 1 not a JPEG here, < 0 the decoder's error.
    """
    n, channels, out_h, out_w = out.shape
    max_h = 1
    max_w = 1
    for i in range(n):
        if jpeg[i]:
            max_h = max(max_h, heights[i])
            max_w = max(max_w, widths[i])
    dec_n = -(-max(1, max_h * max_w * 4) // 8) * 8
    tmp_n = -(-max(1, max(resize_scratch_rgbx(max_h, max_w, out_h, out_w), max_h * out_w * 3)) // 8) * 8
    img_n = -(-max(1, out_h * out_w * 3) // 8) * 8
    scratch = np.empty(dec_n + tmp_n + 3 * img_n, np.uint8)
    dec_buf = scratch[:dec_n]
    tmp = scratch[dec_n:dec_n + tmp_n]
    image = scratch[dec_n + tmp_n:dec_n + tmp_n + out_h * out_w * 3].reshape((out_h, out_w, 3))
    pair = scratch[dec_n + tmp_n + img_n:]
    region = np.zeros(2, np.int64)
    for i in range(n):
        if not jpeg[i]:
            status[i] = 1
            continue
        rc = jpeg_to_image(buf[offsets[i]:offsets[i + 1]], heights[i], widths[i], boxes[i], region, max_denom, 0,
                           flips[i], fill, dec_buf, tmp, image)
        status[i] = rc
        if rc != 0:
            out[i] = 0
            continue
        finish_image(image, channels, ops[i], mags[i], tables, has_ops, pair, out[i])


def compile_render(channels: int) -> None:
    """Compile `render_jpeg_batch` with the argument types the image-folder path calls it with (from numba's
    cache after the first process): an empty batch of `channels`-channel images."""
    empty = np.zeros(0, np.int64)
    render_jpeg_batch(np.zeros(1, np.uint8), np.zeros(1, np.int64), empty, empty, np.zeros(0, np.bool_),
                      np.zeros((0, 4), np.int64), np.zeros(0, np.bool_), np.uint8(0), np.zeros((0, 2), np.int8),
                      np.zeros((0, 2), np.float32), param_tables(0, 8, 8), True, np.int64(1),
                      np.zeros((0, channels, 8, 8), np.uint8), empty)
