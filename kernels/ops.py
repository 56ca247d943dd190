"""numba kernels for every augmentation op, on uint8 HWC images.

One `op_xxx(src, param, dst)` per op works on ONE image: `src` and `dst` are
uint8 (H, W, C) arrays, C in {1, 3}, of the same shape; the result is written
to `dst` and `src` is never modified (they must not overlap). `param` is the
float64 value `augpipe.ops.op_params` (or `kernels.params.op_param`) gives.
`apply_op` dispatches on the op id and `apply_ops_batch` runs a whole plan,
parallel over samples, for use inside FFCV's compiled pipeline.

Results equal `augpipe.backends.torch_ops` (hence torchvision) bit for bit: the
arithmetic repeats torch's float32 operations in the same order with the same
roundings. Where torch uses a fused multiply-add, we compute the product and
sum in float64 (exact for these operands) and round once, or, for the sampling
grid, use `_fma32`, an exactly rounded float32 fma. Notes per op below.
"""
import math

import numpy as np
from numba import njit, prange

from .params import (
    AUTO_CONTRAST,
    BRIGHTNESS,
    COLOR,
    CONTRAST,
    EQUALIZE,
    IDENTITY,
    INVERT,
    NUM_OPS,
    POSTERIZE,
    ROTATE,
    SHARPNESS,
    SHEAR_X,
    SHEAR_Y,
    SOLARIZE,
    TRANSLATE_X,
    TRANSLATE_Y,
    op_param,
)

_DEG_TO_RAD = math.pi / 180.0  # np.radians multiplies by this


# ------------------------------------------------------------------ helpers

@njit(nogil=True, cache=True)
def _to_u8(v):
    """torch's clamp_(0, 255).to(uint8): clamp, then truncate toward zero."""
    if v <= 0.0:
        return 0
    if v >= 255.0:
        return 255
    return int(v)


@njit(nogil=True, cache=True)
def _rint(v):
    """Round half to even (std::nearbyint, torch.round), as an int."""
    r = math.floor(v)
    d = v - r
    if d > 0.5 or (d == 0.5 and r % 2 != 0):
        r += 1
    return int(r)


@njit(nogil=True, cache=True)
def _fma32(a, b, c):
    """float32 a * b + c with a single rounding (a, b, c float32).

    The product is exact in float64; the float64 sum may not be (then TwoSum
    gives its error), and rounding it to float32 can only go wrong when the
    float64 sum sits exactly half-way between two float32s: the error then
    says which way the exact value lies.
    """
    p = np.float64(a) * np.float64(b)
    q = np.float64(c)
    s = p + q
    bb = s - p
    err = (p - (s - bb)) + (q - bb)
    v = np.float32(s)
    if err != 0.0:
        u = np.float64(v)
        d = s - u
        if d != 0.0 and u != 0.0:
            m, e = math.frexp(u)
            half = math.ldexp(1.0, e - 25)  # half a float32 ulp at u
            if abs(m) == 0.5 and (d < 0.0) == (u > 0.0):
                half = math.ldexp(1.0, e - 26)  # below a power of two the spacing halves
            if abs(d) == half and (err > 0.0) == (d > 0.0):
                v = np.float32(u + 2.0 * d)  # exact value lies past the midpoint
    return v


@njit(nogil=True, cache=True)
def _blend32(a, other, alpha):
    """torch_ops._fused_add for one value: float32(a + other * alpha), evaluated
    in float64 (a, other, alpha float32) and rounded once."""
    return np.float32(np.float64(a) + np.float64(other) * np.float64(alpha))


@njit(nogil=True, cache=True)
def _gray(r, g, b):
    """torchvision's floored float32 luma: r*0.2989, then fused adds of
    g*0.587 and b*0.114 (torch's add with alpha is an fma), then floor."""
    t = np.float32(r) * np.float32(0.2989)
    t = np.float32(np.float64(t) + np.float64(g) * np.float64(np.float32(0.587)))
    t = np.float32(np.float64(t) + np.float64(b) * np.float64(np.float32(0.114)))
    return math.floor(t)


# Pointwise kernels loop over flat views (images are C-contiguous): 2-3x
# faster than (y, x, c) indexing, measured at 224 px.

@njit(nogil=True, cache=True)
def _copy(src, dst):
    """dst = src (same shape, C-contiguous)."""
    dst.reshape(-1)[:] = src.reshape(-1)


@njit(nogil=True, cache=True)
def _apply_lut(src, lut, dst):
    """dst = lut[c][src] with a (C, 256) lookup table."""
    ch = src.shape[2]
    s = src.reshape(-1)
    d = dst.reshape(-1)
    for k in range(0, s.shape[0], ch):
        for c in range(ch):
            d[k + c] = lut[c, s[k + c]]


@njit(nogil=True, cache=True)
def _apply_lut1(src, lut, dst):
    """dst = lut[src] with one 256-entry lookup table for every channel."""
    s = src.reshape(-1)
    d = dst.reshape(-1)
    for k in range(s.shape[0]):
        d[k] = lut[s[k]]


# ------------------------------------------------------------------ geometry

@njit(nogil=True, cache=True)
def inverse_affine(angle, tx, ty, shear_x, shear_y, cx, cy):
    """torch_ops._inverse_affine (torchvision's inverse matrix, scale 1) for
    one sample, rounded to the float32 theta (6,) that torch samples with."""
    rot = angle * _DEG_TO_RAD
    sx = shear_x * _DEG_TO_RAD
    sy = shear_y * _DEG_TO_RAD
    cos_sy = math.cos(sy)
    tan_sx = math.tan(sx)
    a = math.cos(rot - sy) / cos_sy
    b = -(a * tan_sx + math.sin(rot))
    c = math.sin(rot - sy) / cos_sy
    d = math.cos(rot) - c * tan_sx
    cx_tx = cx + tx
    cy_ty = cy + ty
    m2 = 0.0 + (cx - d * cx_tx - (-b) * cy_ty)
    m5 = 0.0 + (cy - (-c) * cx_tx - a * cy_ty)
    theta = np.empty(6, dtype=np.float32)
    theta[0] = d
    theta[1] = -b
    theta[2] = m2
    theta[3] = -c
    theta[4] = a
    theta[5] = m5
    return theta


@njit(nogil=True, cache=True)
def _grid_row(y, px, s1, s2, out):
    """One row of one grid coordinate: torch's bmm of the base grid rows
    [x_j, y, 1] with a scaled theta column (s0, s1, s2), rounded as MKL's
    sgemm rounds it on CPU: x_j * s0 rounded (px[j], given), then
    fma(y, s1, .), then + s2 rounded, all float32.

    The fma is evaluated in float64 (y * s1 is exact there, and so is the sum
    unless its operands are very far apart in scale); only lanes where the sum
    was inexact (TwoSum error != 0) are redone with the exact `_fma32`. The
    main loop has no branches, so LLVM vectorises it.
    """
    yb = np.float64(y) * np.float64(s1)
    inexact = False
    for j in range(px.shape[0]):
        p = np.float64(px[j])
        s = p + yb
        bb = s - p
        err = (p - (s - bb)) + (yb - bb)
        inexact |= err != 0.0
        out[j] = np.float32(s) + s2
    if inexact:
        for j in range(px.shape[0]):
            out[j] = _fma32(y, s1, px[j]) + s2


@njit(nogil=True, cache=True)
def _scaled_theta(theta, h, w):
    """theta^T / [0.5 w, 0.5 h] in float32, as torchvision's _affine_grid."""
    hw = np.float32(0.5 * w)
    hh = np.float32(0.5 * h)
    return (theta[0] / hw, theta[1] / hw, theta[2] / hw, theta[3] / hh, theta[4] / hh, theta[5] / hh)


@njit(nogil=True, cache=True)
def _base_products(s0x, s0y, w):
    """x_j * s0 for both coordinates, x_j = linspace((1 - w)/2, (w - 1)/2)[j]
    (exact half-integers in float32)."""
    x0 = np.float32((w - 1) * 0.5)
    pxx = np.empty(w, dtype=np.float32)
    pxy = np.empty(w, dtype=np.float32)
    for j in range(w):
        x = np.float32(j) - x0
        pxx[j] = x * s0x
        pxy[j] = x * s0y
    return pxx, pxy


@njit(nogil=True, cache=True)
def affine_grid(theta, h, w):
    """torchvision's _affine_grid for one theta: float32 (H, W, 2) in [-1, 1]
    units (for tests; `_affine` computes the same rows on the fly)."""
    s0x, s1x, s2x, s0y, s1y, s2y = _scaled_theta(theta, h, w)
    pxx, pxy = _base_products(s0x, s0y, w)
    y0 = np.float32((h - 1) * 0.5)
    grid = np.empty((h, w, 2), dtype=np.float32)
    gx = np.empty(w, dtype=np.float32)
    gy = np.empty(w, dtype=np.float32)
    for i in range(h):
        y = np.float32(i) - y0
        _grid_row(y, pxx, s1x, s2x, gx)
        _grid_row(y, pxy, s1y, s2y, gy)
        for j in range(w):
            grid[i, j, 0] = gx[j]
            grid[i, j, 1] = gy[j]
    return grid


@njit(nogil=True, cache=True)
def _source_index(g, size, out):
    """grid_sample's nearest source index (align_corners=False) for a row of
    grid values: ((g + 1) * size - 1) / 2 in float32, rounded half to even;
    -1 for anything outside [0, size)."""
    one = np.float32(1.0)
    two = np.float32(2.0)
    fsize = np.float32(size)
    lo = np.float32(-1.0)
    hi = np.float32(size)
    for j in range(g.shape[0]):
        f = ((g[j] + one) * fsize - one) / two
        f = min(max(f, lo), hi)  # far-out values would overflow an int; -1 and size are both outside
        r = np.rint(f)  # round half to even, like std::nearbyint
        out[j] = np.int32(r) if r < hi else -1


@njit(nogil=True, cache=True)
def _affine(src, theta, dst):
    """grid_sample(mode="nearest", padding_mode="zeros", align_corners=False)
    over torchvision's affine grid for `theta`, one output row at a time.

    Base grid x = linspace((1 - w)/2, (w - 1)/2)[j] (exact half-integers), the
    bmm as in `_grid_row`, then `_source_index`; outside -> 0.
    """
    h, w, ch = src.shape
    s0x, s1x, s2x, s0y, s1y, s2y = _scaled_theta(theta, h, w)
    pxx, pxy = _base_products(s0x, s0y, w)
    y0 = np.float32((h - 1) * 0.5)
    gx = np.empty(w, dtype=np.float32)
    gy = np.empty(w, dtype=np.float32)
    ix = np.empty(w, dtype=np.int32)
    iy = np.empty(w, dtype=np.int32)
    for i in range(h):
        y = np.float32(i) - y0
        _grid_row(y, pxx, s1x, s2x, gx)
        _grid_row(y, pxy, s1y, s2y, gy)
        _source_index(gx, w, ix)
        _source_index(gy, h, iy)
        if ch == 3:
            for j in range(w):
                sx, sy = ix[j], iy[j]
                if sx >= 0 and sy >= 0:
                    dst[i, j, 0] = src[sy, sx, 0]
                    dst[i, j, 1] = src[sy, sx, 1]
                    dst[i, j, 2] = src[sy, sx, 2]
                else:
                    dst[i, j, 0] = 0
                    dst[i, j, 1] = 0
                    dst[i, j, 2] = 0
        else:
            for j in range(w):
                sx, sy = ix[j], iy[j]
                if sx >= 0 and sy >= 0:
                    for c in range(ch):
                        dst[i, j, c] = src[sy, sx, c]
                else:
                    for c in range(ch):
                        dst[i, j, c] = 0


@njit(nogil=True, cache=True)
def op_shear_x(src, degrees, dst):
    """ShearX (torchvision: shear=[deg, 0], center=[0, 0], i.e. the top-left corner)."""
    h, w = src.shape[0], src.shape[1]
    _affine(src, inverse_affine(0.0, 0.0, 0.0, degrees, 0.0, -w * 0.5, -h * 0.5), dst)


@njit(nogil=True, cache=True)
def op_shear_y(src, degrees, dst):
    """ShearY (shear=[0, deg], center=[0, 0])."""
    h, w = src.shape[0], src.shape[1]
    _affine(src, inverse_affine(0.0, 0.0, 0.0, 0.0, degrees, -w * 0.5, -h * 0.5), dst)


@njit(nogil=True, cache=True)
def op_translate_x(src, pixels, dst):
    """TranslateX by `pixels` (whole pixels; op_param truncates)."""
    _affine(src, inverse_affine(0.0, pixels, 0.0, 0.0, 0.0, 0.0, 0.0), dst)


@njit(nogil=True, cache=True)
def op_translate_y(src, pixels, dst):
    """TranslateY by `pixels`."""
    _affine(src, inverse_affine(0.0, 0.0, pixels, 0.0, 0.0, 0.0, 0.0), dst)


@njit(nogil=True, cache=True)
def _rot90(src, turns, dst):
    """torch.rot90(k=turns, dims=(H, W)) (counter-clockwise); turns 1 and 3
    need a square image."""
    h, w, ch = src.shape
    for i in range(h):
        for j in range(w):
            if turns == 0:
                sy, sx = i, j
            elif turns == 1:
                sy, sx = j, w - 1 - i
            elif turns == 2:
                sy, sx = h - 1 - i, w - 1 - j
            else:
                sy, sx = h - 1 - j, i
            for c in range(ch):
                dst[i, j, c] = src[sy, sx, c]


@njit(nogil=True, cache=True)
def op_rotate(src, degrees, dst):
    """Rotate counter-clockwise about the centre, no expand, zero fill.

    Like torch_ops.apply_ops: a multiple of 90 degrees goes through rotate(),
    which reduces it mod 360 and takes torchvision's exact short cuts (0, 180;
    90 and 270 on square images), else samples at -(angle mod 360). Any other
    angle is sampled at -degrees as given (torch_ops._mixed_affine).
    """
    h, w = src.shape[0], src.shape[1]
    if degrees % 90.0 == 0.0:
        angle = degrees % 360.0  # Python float % == np.mod
        if angle == 0.0:
            _rot90(src, 0, dst)
        elif angle == 180.0:
            _rot90(src, 2, dst)
        elif h == w and angle == 90.0:
            _rot90(src, 1, dst)
        elif h == w and angle == 270.0:
            _rot90(src, 3, dst)
        else:
            _affine(src, inverse_affine(-angle, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0), dst)
    else:
        _affine(src, inverse_affine(-degrees, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0), dst)


# -------------------------------------------------------------------- colour

@njit(nogil=True, cache=True)
def op_identity(src, _param, dst):
    """A copy."""
    _copy(src, dst)


@njit(nogil=True, cache=True)
def op_brightness(src, factor, dst):
    """float32 x * factor, clamped, truncated (a lookup table per image)."""
    f = np.float32(factor)
    lut = np.empty(256, dtype=np.uint8)
    for v in range(256):
        lut[v] = _to_u8(np.float32(v) * f)
    _apply_lut1(src, lut, dst)


@njit(nogil=True, cache=True)
def _blend_lut(factor, other):
    """Lookup table of torch_ops._blend(x, other, factor) for a constant
    float32 `other`: x * ratio (float32), then + other * (1 - factor) rounded once."""
    ratio = np.float32(factor)
    alpha = np.float32(1.0 - factor)
    lut = np.empty(256, dtype=np.uint8)
    for v in range(256):
        lut[v] = _to_u8(_blend32(np.float32(v) * ratio, other, alpha))
    return lut


@njit(nogil=True, cache=True)
def op_color(src, factor, dst):
    """Saturation: blend each pixel with its floored grayscale; a copy on
    1-channel images (torchvision matches PIL there)."""
    h, w, ch = src.shape
    if ch != 3:
        dst[...] = src
        return
    ratio = np.float32(factor)
    alpha = np.float32(1.0 - factor)
    s = src.reshape(-1)
    d = dst.reshape(-1)
    for k in range(0, s.shape[0], 3):
        r, g, b = s[k], s[k + 1], s[k + 2]
        gray = np.float32(_gray(r, g, b))
        d[k] = _to_u8(_blend32(np.float32(r) * ratio, gray, alpha))
        d[k + 1] = _to_u8(_blend32(np.float32(g) * ratio, gray, alpha))
        d[k + 2] = _to_u8(_blend32(np.float32(b) * ratio, gray, alpha))


@njit(nogil=True, cache=True)
def op_contrast(src, factor, dst):
    """Blend with the mean of the floored grayscale (the image itself if C == 1).

    torch's float32 mean is sum / count; every partial sum of these integers is
    exact in float32 while the total stays below 2**24 (any image up to 65793
    pixels), so float32(exact sum) / float32(count) is torch's mean. Beyond
    that torch's float32 accumulation order would matter; we round the exact sum.
    """
    h, w, ch = src.shape
    total = 0
    for y in range(h):
        for x in range(w):
            if ch == 3:
                total += _gray(src[y, x, 0], src[y, x, 1], src[y, x, 2])
            else:
                total += int(src[y, x, 0])
    mean = np.float32(total) / np.float32(h * w)
    _apply_lut1(src, _blend_lut(factor, mean), dst)


@njit(nogil=True, cache=True)
def op_sharpness(src, factor, dst):
    """Blend with the 3x3 smoothing [1,1,1;1,5,1;1,1,1]/13 (rounded); borders kept.

    torchvision rounds a float32 conv2d whose exact value is k/13 for an
    integer k; k/13 is never near a .5 tie, so the result is the integer
    nearest k/13 = (2k + 13) // 26. Then x + (blurred - x) * (1 - factor),
    rounded once (torch's fused add), clamped and truncated.
    """
    h, w, ch = src.shape
    _copy(src, dst)
    if h <= 2 or w <= 2:
        return
    alpha = np.float32(1.0 - factor)
    s = src.reshape(-1)
    d = dst.reshape(-1)
    rs = w * ch
    lut = np.full(65536, -1, np.int16)  # (center, blurred) -> result, filled on first use:
    # the float64 blend per value is the cost, and an image holds few distinct pairs
    for y in range(1, h - 1):
        up, mid, down = (y - 1) * rs, y * rs, (y + 1) * rs
        for j in range(ch, rs - ch):
            center = np.int64(s[mid + j])
            k = (5 * center + np.int64(s[up + j - ch]) + np.int64(s[up + j]) + np.int64(s[up + j + ch])
                 + np.int64(s[mid + j - ch]) + np.int64(s[mid + j + ch])
                 + np.int64(s[down + j - ch]) + np.int64(s[down + j]) + np.int64(s[down + j + ch]))
            blurred = (2 * k + 13) // 26
            key = (center << 8) | blurred
            r = lut[key]
            if r < 0:
                r = np.int16(_to_u8(_blend32(np.float32(center), np.float32(blurred - center), alpha)))
                lut[key] = r
            d[mid + j] = np.uint8(r)


@njit(nogil=True, cache=True)
def op_posterize(src, bits, dst):
    """Keep the top `bits` (rounded, clipped to 0..8) bits of every value."""
    n = min(max(_rint(bits), 0), 8)
    mask = np.uint8((0xFF << (8 - n)) & 0xFF)
    s = src.reshape(-1)
    d = dst.reshape(-1)
    for k in range(s.shape[0]):
        d[k] = s[k] & mask


@njit(nogil=True, cache=True)
def op_solarize(src, threshold, dst):
    """Invert values >= threshold (compared in float32, as torch does)."""
    t = np.float32(threshold)
    lut = np.empty(256, dtype=np.uint8)
    for v in range(256):
        lut[v] = 255 - v if np.float32(v) >= t else v
    _apply_lut1(src, lut, dst)


@njit(nogil=True, cache=True)
def op_autocontrast(src, _param, dst):
    """Stretch each channel's [min, max] to [0, 255] in float32:
    (x - lo) / ((hi - lo) * float32(1/255)); flat channels unchanged."""
    h, w, ch = src.shape
    lut = np.empty((ch, 256), dtype=np.uint8)
    inv255 = np.float32(1.0 / 255)
    for c in range(ch):
        lo = 255
        hi = 0
        for y in range(h):
            for x in range(w):
                v = int(src[y, x, c])
                lo = min(lo, v)
                hi = max(hi, v)
        if h * w == 0 or hi == lo:
            for v in range(256):
                lut[c, v] = v
        else:
            scale = np.float32(hi - lo) * inv255
            for v in range(256):
                lut[c, v] = _to_u8(np.float32(v - lo) / scale)
    _apply_lut(src, lut, dst)


@njit(nogil=True, cache=True)
def op_equalize(src, _param, dst):
    """Per-channel histogram equalisation with PIL's table:
    lut[v] = (cum_hist[v - 1] + step // 2) // step, lut[0] = 0, where step is
    (pixels not at the channel's maximum value) // 255; step 0 -> unchanged."""
    h, w, ch = src.shape
    lut = np.empty((ch, 256), dtype=np.uint8)
    hist = np.empty(256, dtype=np.int64)
    for c in range(ch):
        hist[:] = 0
        top = 0
        for y in range(h):
            for x in range(w):
                v = int(src[y, x, c])
                hist[v] += 1
                top = max(top, v)
        step = (h * w - hist[top]) // 255
        if step == 0:
            for v in range(256):
                lut[c, v] = v
            continue
        lut[c, 0] = 0
        cum = 0
        for v in range(1, 256):
            cum += hist[v - 1]
            lut[c, v] = min((cum + step // 2) // step, 255)
    _apply_lut(src, lut, dst)


@njit(nogil=True, cache=True)
def op_invert(src, _param, dst):
    """255 - x."""
    s = src.reshape(-1)
    d = dst.reshape(-1)
    for k in range(s.shape[0]):
        d[k] = 255 - s[k]


# ------------------------------------------------------------------- drivers

@njit(nogil=True, cache=True)
def apply_op(op_id, src, param, dst):
    """Apply op `op_id` with parameter `param` (op_param's value) from src to dst."""
    if op_id == IDENTITY:
        op_identity(src, param, dst)
    elif op_id == SHEAR_X:
        op_shear_x(src, param, dst)
    elif op_id == SHEAR_Y:
        op_shear_y(src, param, dst)
    elif op_id == TRANSLATE_X:
        op_translate_x(src, param, dst)
    elif op_id == TRANSLATE_Y:
        op_translate_y(src, param, dst)
    elif op_id == ROTATE:
        op_rotate(src, param, dst)
    elif op_id == BRIGHTNESS:
        op_brightness(src, param, dst)
    elif op_id == COLOR:
        op_color(src, param, dst)
    elif op_id == CONTRAST:
        op_contrast(src, param, dst)
    elif op_id == SHARPNESS:
        op_sharpness(src, param, dst)
    elif op_id == POSTERIZE:
        op_posterize(src, param, dst)
    elif op_id == SOLARIZE:
        op_solarize(src, param, dst)
    elif op_id == AUTO_CONTRAST:
        op_autocontrast(src, param, dst)
    elif op_id == EQUALIZE:
        op_equalize(src, param, dst)
    elif op_id == INVERT:
        op_invert(src, param, dst)
    else:
        raise ValueError("unknown op id")


@njit(nogil=True, cache=True)
def apply_sample_ops(image, ops, mags, tables, scratch):
    """One sample's plan: ops (K,) in slot order, in place in `image` (H, W, C),
    using `scratch` (same shape) as the other half of a ping-pong pair."""
    cur, other = image, scratch
    in_scratch = False
    for k in range(ops.shape[0]):
        op_id = int(ops[k])
        if op_id <= IDENTITY:  # -1: no op; Identity: nothing to do
            continue
        apply_op(op_id, cur, op_param(op_id, np.float64(mags[k]), tables), other)
        cur, other = other, cur
        in_scratch = not in_scratch
    if in_scratch:
        _copy(scratch, image)


@njit(parallel=True, nogil=True, cache=True)
def apply_ops_batch(images, ops, mags, tables, scratch):
    """Apply each sample's ops in slot order, in place, parallel over samples.

    Args:
        images: uint8 (N, H, W, C), C in {1, 3}; overwritten with the results.
        ops: int (N, K) op ids, -1 for no op; slot k is applied before k + 1.
        mags: float (N, K) signed magnitudes on the 0..30 scale.
        tables: float64 (15, 31), augpipe.ops.param_tables(space, H, W).
        scratch: uint8 array of the images' shape (contents ignored).

    Raises:
        ValueError: for mismatched shapes or an op id >= 15 (checked before
            the parallel loop; exceptions inside it surface as SystemError).
    """
    if ops.shape[0] != images.shape[0] or mags.shape != ops.shape or scratch.shape != images.shape:
        raise ValueError("apply_ops_batch: ops/mags must be (N, K) and scratch shaped like images")
    for n in range(ops.shape[0]):
        for k in range(ops.shape[1]):
            if ops[n, k] >= NUM_OPS:
                raise ValueError("apply_ops_batch: unknown op id")
    for n in prange(images.shape[0]):
        apply_sample_ops(images[n], ops[n], mags[n], tables, scratch[n])


@njit(nogil=True, cache=True)
def apply_ops_serial(images, ops, mags, tables, scratch):
    """`apply_ops_batch` on the calling thread only: for DataLoader worker
    processes, which are the parallelism already (no nested thread pools)."""
    if ops.shape[0] != images.shape[0] or mags.shape != ops.shape or scratch.shape != images.shape:
        raise ValueError("apply_ops_serial: ops/mags must be (N, K) and scratch shaped like images")
    for n in range(images.shape[0]):
        for k in range(ops.shape[1]):
            if ops[n, k] >= NUM_OPS:
                raise ValueError("apply_ops_serial: unknown op id")
        apply_sample_ops(images[n], ops[n], mags[n], tables, scratch[n])
