"""numba kernels for every augmentation op, on uint8 HWC images.

One `op_xxx(src, param, dst)` per op works on ONE image: `src` and `dst` are
uint8 (H, W, C) arrays, C in {1, 3}, of the same shape; the result is written
to `dst` and `src` is never modified (they must not overlap). `param` is the
float64 value `augpipe.core.ops.op_params` gives.
The op table (`augpipe.core.ops.OPS`) names one kernel per op; the per-op dispatch
and the batch drivers are generated from it (`augpipe.core.opgen`). This module
depends on nothing of augpipe.

Results equal the torch executor (`augpipe.engine.exec_torch`) bit for bit on every
CPU, and torchvision's for every op whose torchvision arithmetic does not
depend on the CPU: the arithmetic repeats torch's float32 operations in the
same order with the same roundings; where torch uses a fused multiply-add, we
compute the product and sum in float64 (exact for these operands) and round
once. Geometric ops share one CPU-independent sampling grid (`_grid_row`).
Notes per op below.
"""
import math

import numpy as np
from numba import njit

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
def _blend32(a, other, alpha):
    """exec_torch._fused_add for one value: float32(a + other * alpha), evaluated
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
def copy_flat(src, dst):
    """dst = src (same size, C-contiguous). A loop, not `dst[:] = src`: for every slice assignment
    from an array numba compiles a formatted shape-mismatch error (unicode joins and f-strings),
    5-6 s of the first compile after an install on 2 cores (measured); the loop compiles to a copy."""
    s = src.reshape(-1)
    d = dst.reshape(-1)
    for k in range(d.shape[0]):
        d[k] = s[k]


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
    """torchvision's `_get_inverse_affine_matrix` (scale 1) for one sample:
    the same float64 expressions in the same order with libm's cos/sin/tan
    (Python's math module, as torchvision), rounded to the float32 theta (6,)."""
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
def scaled_theta(theta, h, w):
    """theta / [0.5 w, 0.5 h] in float32 (torchvision's _affine_grid scaling):
    (s0x, s1x, s2x, s0y, s1y, s2y)."""
    hw = np.float32(0.5 * w)
    hh = np.float32(0.5 * h)
    return (theta[0] / hw, theta[1] / hw, theta[2] / hw, theta[3] / hh, theta[4] / hh, theta[5] / hh)


@njit(nogil=True, cache=True)
def _grid_row(yb, xs, s0, s2, out):
    """One row of one grid coordinate: float32((x_j * s0 + yb) + s2), with
    yb = y * s1, all in float64.

    torchvision gets the grid from a batched matmul whose float32 rounding
    depends on the BLAS kernel the CPU selects (AVX2 and AVX-512 machines
    differ in the last bit, and nearest-neighbour sampling turns that into
    whole-pixel differences). Here both products are exact in float64 (a
    half-integer times a float32), the two sums round in float64 and the
    result once to float32: the same bits on every CPU and on CUDA, in this
    kernel and in the torch executor (augpipe.engine.exec_torch), which mirror each
    other operation for operation. The loop has no branches and vectorises.
    """
    c0 = np.float64(s0)
    c2 = np.float64(s2)
    for j in range(xs.shape[0]):
        out[j] = np.float32((xs[j] * c0 + yb) + c2)


@njit(nogil=True, cache=True)
def _base_x(w):
    """linspace((1 - w)/2, (w - 1)/2, w) as float64: exact half-integers."""
    xs = np.empty(w, dtype=np.float64)
    for j in range(w):
        xs[j] = j - (w - 1) * 0.5
    return xs


@njit(nogil=True, cache=True)
def affine_grid(theta, h, w):
    """The sampling grid for `theta`: float32 (H, W, 2) in [-1, 1] units (for
    tests; `_affine` computes the same rows on the fly)."""
    s0x, s1x, s2x, s0y, s1y, s2y = scaled_theta(theta, h, w)
    xs = _base_x(w)
    grid = np.empty((h, w, 2), dtype=np.float32)
    gx = np.empty(w, dtype=np.float32)
    gy = np.empty(w, dtype=np.float32)
    for i in range(h):
        y = i - (h - 1) * 0.5
        _grid_row(y * np.float64(s1x), xs, s0x, s2x, gx)
        _grid_row(y * np.float64(s1y), xs, s0y, s2y, gy)
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
    """Nearest-neighbour sampling over the affine grid of `theta` with zero
    fill (torchvision's grid_sample(mode="nearest", padding_mode="zeros",
    align_corners=False)), one output row at a time: `_grid_row`, then
    `_source_index`; outside -> 0."""
    h, w, ch = src.shape
    s0x, s1x, s2x, s0y, s1y, s2y = scaled_theta(theta, h, w)
    xs = _base_x(w)
    gx = np.empty(w, dtype=np.float32)
    gy = np.empty(w, dtype=np.float32)
    ix = np.empty(w, dtype=np.int32)
    iy = np.empty(w, dtype=np.int32)
    for i in range(h):
        y = i - (h - 1) * 0.5
        _grid_row(y * np.float64(s1x), xs, s0x, s2x, gx)
        _grid_row(y * np.float64(s1y), xs, s0y, s2y, gy)
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
def affine_thetas(angle, tx, ty, shear_x, shear_y, cx, cy):
    """`inverse_affine` for N samples (float64 (N,) arguments): float32 (N, 6).
    The torch executor takes its matrices from here, so both executors build
    them with the same libm calls."""
    n = angle.shape[0]
    out = np.empty((n, 6), dtype=np.float32)
    for k in range(n):
        theta = inverse_affine(angle[k], tx[k], ty[k], shear_x[k], shear_y[k], cx[k], cy[k])
        for j in range(6):  # not out[k] = theta: numba compiles a formatted shape error for that (~10 s)
            out[k, j] = theta[j]
    return out


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

    Like the torch executor: a multiple of 90 degrees goes through rotate(),
    which reduces it mod 360 and takes torchvision's exact short cuts (0, 180;
    90 and 270 on square images), else samples at -(angle mod 360). Any other
    angle is sampled at -degrees as given (exec_torch._mixed_affine).
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
    copy_flat(src, dst)


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
    """Lookup table of exec_torch._blend(x, other, factor) for a constant
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
        copy_flat(src, dst)
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
    copy_flat(src, dst)
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
