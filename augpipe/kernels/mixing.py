"""In-place MixUp / CutMix / constant erasing on CPU batches, and the uint8 ->
float normalisation, alone or fused with them (numba, GIL-free).

A pair (i, n-1-i) is mixed row by row: both original rows are copied to
small float32 buffers before either is written, so each side mixes with its
partner's unmixed image without a copy of the batch; CutMix-only pairs touch
the rows of their boxes alone.
Helpers are inlined (inline="always"): a call per row would cost 8x the
pass itself at 32 px. Arithmetic is torchvision's and timm's: x·λ + x_partner·(1-λ) in float32
(λ float32, no fused multiply-add: numba compiles without fast-math), rounded
half to even for uint8 (timm's FastCollateMixup uses np.rint).
"""
import numpy as np
from numba import njit

MIXUP, CUTMIX = 1, 2
# (v + 1.5·2^23) - 1.5·2^23 rounds a float32 in [0, 2^22) half to even, exactly as np.rint, but vectorises
# (no fast-math: LLVM keeps the two operations)
_RINT = np.float32(12582912.0)


@njit(nogil=True, cache=True, inline="always")
def _write_side(images, i, ch, y, own, other, k, lam, y1, y2, x1, x2, rounded):
    """Row y of sample i, in place, from both sides' original rows (float32 copies)."""
    if k == MIXUP:
        weight = np.float32(1.0) - lam
        if rounded:
            for x in range(own.shape[0]):
                images[i, ch, y, x] = (own[x] * lam + other[x] * weight + _RINT) - _RINT
        else:
            for x in range(own.shape[0]):
                images[i, ch, y, x] = own[x] * lam + other[x] * weight
    elif k == CUTMIX and y1 <= y < y2:
        for x in range(x1, x2):
            images[i, ch, y, x] = other[x]


@njit(nogil=True, cache=True)
def mix_pairs(images, kind, lam, box, rounded):
    """images (N, C, H, W), uint8 (rounded=True) or float32, mixed in place by the plan's
    kind/lam/box rows; partners are n-1-i. Row by row: both original rows are copied to
    float32 buffers, then each side is written from them."""
    n, c, h, w = images.shape
    a = np.empty(w, np.float32)
    b = np.empty(w, np.float32)
    for i in range(n // 2):
        j = n - 1 - i
        ki, kj = kind[i], kind[j]
        if ki == 0 and kj == 0:
            continue
        li, lj = np.float32(lam[i]), np.float32(lam[j])
        i0, i1, i2, i3 = box[i, 0], box[i, 1], box[i, 2], box[i, 3]
        j0, j1, j2, j3 = box[j, 0], box[j, 1], box[j, 2], box[j, 3]
        full = ki == MIXUP or kj == MIXUP
        y0 = 0 if full else min(i0 if ki == CUTMIX else h, j0 if kj == CUTMIX else h)
        y1 = h if full else max(i1 if ki == CUTMIX else 0, j1 if kj == CUTMIX else 0)
        for ch in range(c):
            for y in range(y0, y1):
                for x in range(w):
                    a[x] = images[i, ch, y, x]
                    b[x] = images[j, ch, y, x]
                _write_side(images, i, ch, y, a, b, ki, li, i0, i1, i2, i3, rounded)
                _write_side(images, j, ch, y, b, a, kj, lj, j0, j1, j2, j3, rounded)


@njit(nogil=True, cache=True)
def erase_const(images, rects, fill):
    """Fill every planned rectangle (top, left, h, w; h = 0: none) of every sample with `fill`."""
    for i in range(images.shape[0]):
        for r in range(rects.shape[1]):
            top, left, h, w = rects[i, r, 0], rects[i, r, 1], rects[i, r, 2], rects[i, r, 3]
            if h == 0:
                continue
            for ch in range(images.shape[1]):
                for y in range(top, top + h):
                    for x in range(left, left + w):
                        images[i, ch, y, x] = fill


@njit(nogil=True, cache=True, inline="always")
def _erased_row(rects, i, y):
    for r in range(rects.shape[1]):
        if rects[i, r, 2] > 0 and rects[i, r, 0] <= y < rects[i, r, 0] + rects[i, r, 2]:
            return True
    return False


@njit(nogil=True, cache=True, inline="always")
def _load(buf, src, i, ch, y, sc, sh, rects, fill):
    """Row y of sample i, channel ch, normalised (float32(x)·sc + sh: torch's two roundings), then erased."""
    for x in range(buf.shape[0]):
        buf[x] = np.float32(src[i, ch, y, x]) * sc + sh
    for r in range(rects.shape[1]):
        top, left, h, w = rects[i, r, 0], rects[i, r, 1], rects[i, r, 2], rects[i, r, 3]
        if h > 0 and top <= y < top + h:
            for x in range(left, left + w):
                buf[x] = fill


@njit(nogil=True, cache=True, inline="always")
def _store(dst, i, ch, y, own, other, k, lam, y1, y2, x1, x2):
    """Row y of output sample i (its kind k, λ, box) from its own and its partner's normalised, erased rows."""
    if k == MIXUP:
        weight = np.float32(1.0) - lam
        for x in range(own.shape[0]):
            dst[i, ch, y, x] = own[x] * lam + other[x] * weight
    else:
        for x in range(own.shape[0]):
            dst[i, ch, y, x] = own[x]
        if k == CUTMIX and y1 <= y < y2:
            for x in range(x1, x2):
                dst[i, ch, y, x] = other[x]


@njit(nogil=True, cache=True, inline="always")
def _store_direct(dst, src, i, j, ch, y, sc, sh, k, lam, y1, y2, x1, x2):
    """_store on a row without erasing, normalising straight from the uint8 rows (no buffers). The plan's
    values come in as scalars: loaded inside the loops, they stop LLVM vectorising them (8x slower)."""
    w = src.shape[3]
    if k == MIXUP:
        weight = np.float32(1.0) - lam
        for x in range(w):
            dst[i, ch, y, x] = (np.float32(src[i, ch, y, x]) * sc + sh) * lam + \
                (np.float32(src[j, ch, y, x]) * sc + sh) * weight
    else:
        for x in range(w):
            dst[i, ch, y, x] = np.float32(src[i, ch, y, x]) * sc + sh
        if k == CUTMIX and y1 <= y < y2:
            for x in range(x1, x2):
                dst[i, ch, y, x] = np.float32(src[j, ch, y, x]) * sc + sh


@njit(nogil=True, cache=True)
def normalize_mix(src, dst, scale, shift, kind, lam, box, rects, fill):
    """uint8 src (N, C, H, W) -> float32 dst in one pass: normalise, erase the planned rectangles with
    `fill`, mix the pairs (n-1-i) from the erased originals. Equal to torch's normalisation followed by
    torchvision's RandomErasing and timm's Mixup, without their extra passes over the batch."""
    n, c, h, w = src.shape
    a = np.empty(w, np.float32)
    b = np.empty(w, np.float32)
    fill = np.float32(fill)
    for i in range((n + 1) // 2):
        j = n - 1 - i
        ki, kj = kind[i], kind[j]
        li, lj = np.float32(lam[i]), np.float32(lam[j])
        i0, i1, i2, i3 = box[i, 0], box[i, 1], box[i, 2], box[i, 3]
        j0, j1, j2, j3 = box[j, 0], box[j, 1], box[j, 2], box[j, 3]
        erased = False
        for r in range(rects.shape[1]):
            erased = erased or rects[i, r, 2] > 0 or rects[j, r, 2] > 0
        for ch in range(c):
            sc, sh = np.float32(scale[ch]), np.float32(shift[ch])
            for y in range(h):
                if erased and (_erased_row(rects, i, y) or _erased_row(rects, j, y)):
                    _load(a, src, i, ch, y, sc, sh, rects, fill)
                    _load(b, src, j, ch, y, sc, sh, rects, fill)
                    _store(dst, i, ch, y, a, b, ki, li, i0, i1, i2, i3)
                    if j != i:
                        _store(dst, j, ch, y, b, a, kj, lj, j0, j1, j2, j3)
                else:
                    _store_direct(dst, src, i, j, ch, y, sc, sh, ki, li, i0, i1, i2, i3)
                    if j != i:
                        _store_direct(dst, src, j, i, ch, y, sc, sh, kj, lj, j0, j1, j2, j3)


@njit(nogil=True, cache=True)
def normalize(src, dst, scale, shift):
    """uint8 src (N, C, H, W) -> float32 dst = float32(x)·scale[c] + shift[c], one pass; the same two
    roundings as torch's x.float().mul_(scale).add_(shift), without its two extra passes."""
    n, c, h, w = src.shape
    for i in range(n):
        for ch in range(c):
            sc, sh = np.float32(scale[ch]), np.float32(shift[ch])
            for y in range(h):
                for x in range(w):
                    dst[i, ch, y, x] = np.float32(src[i, ch, y, x]) * sc + sh
