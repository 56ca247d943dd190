"""In-place MixUp / CutMix / constant erasing on CPU batches, and the uint8 ->
float normalisation, alone or fused with them (numba, GIL-free).

A pair (i, n-1-i) is mixed row by row: both original rows are copied to
small float32 buffers before either is written, so each side mixes with its
partner's unmixed image without a copy of the batch; CutMix-only pairs touch
the rows of their boxes alone.
Arithmetic is torchvision's and timm's: x·λ + x_partner·(1-λ) in float32
(λ float32, no fused multiply-add: numba compiles without fast-math), rounded
half to even for uint8 (timm's FastCollateMixup uses np.rint).
"""
import numpy as np
from numba import njit

MIXUP, CUTMIX = 1, 2
# (v + 1.5·2^23) - 1.5·2^23 rounds a float32 in [0, 2^22) half to even, exactly as np.rint, but vectorises
# (no fast-math: LLVM keeps the two operations)
_RINT = np.float32(12582912.0)


@njit(nogil=True, cache=True)
def _write_side(dst, own, other, kind, lam, box, y, rounded):
    """One row of one side of a pair, from both sides' original rows (float32 copies)."""
    if kind == MIXUP:
        weight = np.float32(1.0) - lam
        if rounded:
            for x in range(dst.shape[0]):
                dst[x] = (own[x] * lam + other[x] * weight + _RINT) - _RINT
        else:
            for x in range(dst.shape[0]):
                dst[x] = own[x] * lam + other[x] * weight
    elif kind == CUTMIX and box[0] <= y < box[1]:
        for x in range(box[2], box[3]):
            dst[x] = other[x]


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
        full = ki == MIXUP or kj == MIXUP
        y0 = 0 if full else min(box[i, 0] if ki == CUTMIX else h, box[j, 0] if kj == CUTMIX else h)
        y1 = h if full else max(box[i, 1] if ki == CUTMIX else 0, box[j, 1] if kj == CUTMIX else 0)
        for ch in range(c):
            for y in range(y0, y1):
                ri, rj = images[i, ch, y], images[j, ch, y]
                for x in range(w):
                    a[x] = ri[x]
                    b[x] = rj[x]
                _write_side(ri, a, b, ki, li, box[i], y, rounded)
                _write_side(rj, b, a, kj, lj, box[j], y, rounded)


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


@njit(nogil=True, cache=True)
def _load_row(dst, src, scale, shift, rects, y, fill):
    """One source row normalised (float32(x)·scale + shift: torch's two roundings), then erased."""
    for x in range(dst.shape[0]):
        dst[x] = np.float32(src[x]) * scale + shift
    for r in range(rects.shape[0]):
        top, left, h, w = rects[r, 0], rects[r, 1], rects[r, 2], rects[r, 3]
        if h > 0 and top <= y < top + h:
            for x in range(left, left + w):
                dst[x] = fill


@njit(nogil=True, cache=True)
def _store_row(dst, own, other, kind, lam, box, y):
    if kind == MIXUP:
        weight = np.float32(1.0) - lam
        for x in range(dst.shape[0]):
            dst[x] = own[x] * lam + other[x] * weight
        return
    for x in range(dst.shape[0]):
        dst[x] = own[x]
    if kind == CUTMIX and box[0] <= y < box[1]:
        for x in range(box[2], box[3]):
            dst[x] = other[x]


@njit(nogil=True, cache=True)
def normalize_mix(src, dst, scale, shift, kind, lam, box, rects, fill):
    """uint8 src (N, C, H, W) -> float32 dst in one pass: normalise, erase the planned rectangles with
    `fill`, mix the pairs (n-1-i) from the erased originals. Equal to torch's normalisation followed by
    torchvision's RandomErasing and timm's Mixup, without their three extra passes over the batch."""
    n, c, h, w = src.shape
    a = np.empty(w, np.float32)
    b = np.empty(w, np.float32)
    fill = np.float32(fill)
    for i in range((n + 1) // 2):
        j = n - 1 - i
        li, lj = np.float32(lam[i]), np.float32(lam[j])
        for ch in range(c):
            sc, sh = np.float32(scale[ch]), np.float32(shift[ch])
            for y in range(h):
                _load_row(a, src[i, ch, y], sc, sh, rects[i], y, fill)
                _load_row(b, src[j, ch, y], sc, sh, rects[j], y, fill)
                _store_row(dst[i, ch, y], a, b, kind[i], li, box[i], y)
                if j != i:
                    _store_row(dst[j, ch, y], b, a, kind[j], lj, box[j], y)


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
