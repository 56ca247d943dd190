"""In-place MixUp / CutMix / constant erasing on CPU batches, and the uint8 ->
float normalisation, alone or fused with them (numba, GIL-free).

uint8 batches (`mix_pairs`): a pair (i, n-1-i) is mixed row by row, both
original rows copied to small float32 buffers before either is written, so
each side mixes with its partner's unmixed image without a copy of the batch.
float output (`normalize_mix`): whole channel planes, one flat loop each,
which LLVM vectorises (rows of 32 pixels left it a loop set-up per row).
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
def _mix_plane(dst, i, src, k, lam, y1, y2, x1, x2, w):
    """Plane i (a (H*W,) float32 view) of kind k from itself and its partner's unmixed plane `src`, in place.
    Flat loops LLVM vectorises; the plan's values come in as scalars (loaded inside the loop they stop
    the vectorising: 8x slower)."""
    if k == MIXUP:
        weight = np.float32(1.0) - lam
        for p in range(dst.shape[0]):
            dst[p] = dst[p] * lam + src[p] * weight
    elif k == CUTMIX:
        for y in range(y1, y2):
            for x in range(x1, x2):
                dst[y * w + x] = src[y * w + x]


@njit(nogil=True, cache=True, inline="always")
def _direct_plane(dst, src, i, j, ch, sc, sh, k, lam, y1, y2, x1, x2, w):
    """Channel ch of output sample i, normalised straight from the uint8 planes of i and its partner j
    (src, dst: (N, C, H*W) views), for pairs without erasing: one pass, no buffer."""
    hw = src.shape[2]
    if k == MIXUP:
        weight = np.float32(1.0) - lam
        for p in range(hw):
            dst[i, ch, p] = (np.float32(src[i, ch, p]) * sc + sh) * lam + \
                (np.float32(src[j, ch, p]) * sc + sh) * weight
    else:
        for p in range(hw):
            dst[i, ch, p] = np.float32(src[i, ch, p]) * sc + sh
        if k == CUTMIX:
            for y in range(y1, y2):
                for x in range(x1, x2):
                    dst[i, ch, y * w + x] = np.float32(src[j, ch, y * w + x]) * sc + sh


@njit(nogil=True, cache=True, inline="always")
def _erased_original(dst, src, i, ch, sc, sh, rects, fill, w):
    """Plane ch of sample i normalised into dst, then its planned rectangles filled (in place)."""
    for p in range(src.shape[2]):
        dst[i, ch, p] = np.float32(src[i, ch, p]) * sc + sh
    for r in range(rects.shape[1]):
        top, left, h, width = rects[i, r, 0], rects[i, r, 1], rects[i, r, 2], rects[i, r, 3]
        for y in range(top, top + h):
            for x in range(left, left + width):
                dst[i, ch, y * w + x] = fill


@njit(nogil=True, cache=True)
def normalize_mix(src, dst, scale, shift, kind, lam, box, rects, fill):
    """uint8 src (N, C, H, W) -> float32 dst: normalise, erase the planned rectangles with `fill`, mix the
    pairs (n-1-i) from the erased originals. Equal to torch's normalisation followed by torchvision's
    RandomErasing and timm's Mixup (the same float32 operations), in whole-plane loops that LLVM
    vectorises (32-pixel rows left it a loop set-up per row: 3x slower at 32 px). A pair without erasing
    is one pass from uint8; an erased pair is normalised and erased first, then mixed in place, keeping
    one side's erased original in a plane-sized buffer when both sides are mixed."""
    n, c, h, w = src.shape
    fill = np.float32(fill)
    flat_src, flat = src.reshape((n, c, h * w)), dst.reshape((n, c, h * w))  # both C-contiguous
    keep = np.empty(h * w, np.float32)
    for i in range((n + 1) // 2):
        j = n - 1 - i
        ki, kj = kind[i], kind[j]
        li, lj = np.float32(lam[i]), np.float32(lam[j])
        erased = False
        for r in range(rects.shape[1]):
            erased = erased or rects[i, r, 2] > 0 or rects[j, r, 2] > 0
        for ch in range(c):
            sc, sh = np.float32(scale[ch]), np.float32(shift[ch])
            if not erased:
                _direct_plane(flat, flat_src, i, j, ch, sc, sh, ki, li, box[i, 0], box[i, 1], box[i, 2], box[i, 3], w)
                if j != i:
                    _direct_plane(flat, flat_src, j, i, ch, sc, sh, kj, lj, box[j, 0], box[j, 1], box[j, 2],
                                  box[j, 3], w)
                continue
            _erased_original(flat, flat_src, i, ch, sc, sh, rects, fill, w)
            if j != i:
                _erased_original(flat, flat_src, j, ch, sc, sh, rects, fill, w)
            a, b = flat[i, ch], flat[j, ch]
            if j == i:  # the middle sample of an odd batch is its own partner
                _mix_plane(a, i, a, ki, li, box[i, 0], box[i, 1], box[i, 2], box[i, 3], w)
            elif ki != 0 and kj != 0:
                for p in range(keep.shape[0]):  # j's erased original, for i after j is mixed
                    keep[p] = b[p]
                _mix_plane(b, j, a, kj, lj, box[j, 0], box[j, 1], box[j, 2], box[j, 3], w)
                _mix_plane(a, i, keep, ki, li, box[i, 0], box[i, 1], box[i, 2], box[i, 3], w)
            elif ki != 0:
                _mix_plane(a, i, b, ki, li, box[i, 0], box[i, 1], box[i, 2], box[i, 3], w)
            elif kj != 0:
                _mix_plane(b, j, a, kj, lj, box[j, 0], box[j, 1], box[j, 2], box[j, 3], w)


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
