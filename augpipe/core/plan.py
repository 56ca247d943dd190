"""The planner: every random decision about a sample, as a pure function.

plan = f(seed, epoch, dataset index, knob, per-sample cap, source size,
crop, policy). Built on a counter-based RNG (kernels.rng), so the same inputs
give the same plan in any process, thread, worker count, backend or resume.
`plan_sample` / `plan_batch` are numba functions that compiled pipelines
(FFCV) call directly; `make_plan` is the numpy entry point.

Random streams per sample (counter ranges) are fixed, so adding a decision to
one component never shifts another's numbers:
  0..31 crop, 32 flip, 64.. policy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from ..kernels.rng import sample_key, uniform
from .ops import MAX_MAGNITUDE, SIGNED
from .policy import (
    C_CROP_RATIO,
    C_FLIP,
    C_LOG_RATIO_HI,
    C_LOG_RATIO_LO,
    C_MODE,
    C_OUT_H,
    C_OUT_W,
    C_PADDING,
    C_SCALE_HI,
    C_SCALE_LO,
    CROP_CENTER,
    CROP_PAD,
    CROP_RRC,
    KIND_SUBPOLICY,
    KIND_UNIFORM,
    Crop,
    PolicyArrays,
)

_CROP_STREAM = 0
_FLIP_STREAM = 32
_POLICY_STREAM = 64


@njit(nogil=True, cache=True)
def _randint(key, counter, n):
    """Uniform int in [0, n)."""
    r = np.int64(uniform(key, counter) * n)
    return min(r, n - 1)


@njit(nogil=True, cache=True)
def plan_crop(key, height, width, crop, box):
    """Write (top, left, h, w) of the source region into `box`.

    The region may extend past the image for padded crops (top/left < 0).
    """
    mode = np.int64(crop[C_MODE])
    out_h = np.int64(crop[C_OUT_H])
    out_w = np.int64(crop[C_OUT_W])
    if mode == CROP_RRC:
        area = float(height * width)
        for attempt in range(10):
            c = _CROP_STREAM + 3 * attempt
            target = area * (crop[C_SCALE_LO] + (crop[C_SCALE_HI] - crop[C_SCALE_LO]) * uniform(key, c))
            aspect = math.exp(crop[C_LOG_RATIO_LO] + (crop[C_LOG_RATIO_HI] - crop[C_LOG_RATIO_LO]) * uniform(key, c + 1))
            w = np.int64(math.floor(math.sqrt(target * aspect) + 0.5))
            h = np.int64(math.floor(math.sqrt(target / aspect) + 0.5))
            if 0 < w <= width and 0 < h <= height:
                u = uniform(key, c + 2)
                # one draw for both offsets keeps the stream layout fixed
                top = min(np.int64(u * (height - h + 1)), height - h)
                left = min(np.int64(uniform(key, _CROP_STREAM + 30) * (width - w + 1)), width - w)
                box[0] = top
                box[1] = left
                box[2] = h
                box[3] = w
                return
        # fallback: central crop clamped to the ratio range (torchvision's rule)
        in_ratio = width / height
        rmin = math.exp(crop[C_LOG_RATIO_LO])
        rmax = math.exp(crop[C_LOG_RATIO_HI])
        if in_ratio < rmin:
            w = width
            h = np.int64(math.floor(w / rmin + 0.5))
        elif in_ratio > rmax:
            h = height
            w = np.int64(math.floor(h * rmax + 0.5))
        else:
            w = width
            h = height
        box[0] = (height - h) // 2
        box[1] = (width - w) // 2
        box[2] = h
        box[3] = w
    elif mode == CROP_PAD:
        pad = np.int64(crop[C_PADDING])
        box[0] = _randint(key, _CROP_STREAM, height + 2 * pad - out_h + 1) - pad
        box[1] = _randint(key, _CROP_STREAM + 1, width + 2 * pad - out_w + 1) - pad
        box[2] = out_h
        box[3] = out_w
    elif mode == CROP_CENTER:
        side = max(1, np.int64(math.floor(crop[C_CROP_RATIO] * min(height, width) + 0.5)))
        box[0] = (height - side) // 2
        box[1] = (width - side) // 2
        box[2] = side
        box[3] = side
    else:
        box[0] = 0
        box[1] = 0
        box[2] = height
        box[3] = width


@njit(nogil=True, cache=True)
def plan_ops(key, m_eff, kind, pool, num_ops, draw_magnitude, sub_ops, sub_probs, sub_mags, signed, limits,
             ops, mags):
    """Write op ids (-1: none) and signed magnitudes; return the magnitude used.
    Each op's magnitude is also bounded by its own limit (`limits[op]`)."""
    for k in range(ops.shape[0]):
        ops[k] = -1
        mags[k] = 0.0
    c = _POLICY_STREAM
    used = m_eff
    if kind == KIND_UNIFORM:
        if draw_magnitude:
            used = m_eff * uniform(key, c)
        for k in range(num_ops):
            op = pool[_randint(key, c + 1 + 2 * k, pool.shape[0])]
            m = min(used, limits[op])
            if signed[op] and uniform(key, c + 2 + 2 * k) < 0.5:
                m = -m
            ops[k] = op
            mags[k] = m
    elif kind == KIND_SUBPOLICY:
        s = _randint(key, c, sub_ops.shape[0])
        for k in range(2):
            if uniform(key, c + 1 + 2 * k) < sub_probs[s, k]:
                op = sub_ops[s, k]
                m = min(sub_mags[s, k] * m_eff / MAX_MAGNITUDE, limits[op])
                if signed[op] and uniform(key, c + 2 + 2 * k) < 0.5:
                    m = -m
                ops[k] = op
                mags[k] = m
    return used


@njit(nogil=True, cache=True)
def plan_sample(seed, epoch, index, height, width, knob, cap, crop,
                kind, pool, num_ops, draw_magnitude, sub_ops, sub_probs, sub_mags, signed, limits,
                box, ops, mags):
    """Plan one sample. Writes box, ops and mags; returns (flip, magnitude used)."""
    key = sample_key(seed, epoch, index)
    plan_crop(key, height, width, crop, box)
    flip = uniform(key, _FLIP_STREAM) < crop[C_FLIP]
    m_eff = min(knob, cap)
    used = plan_ops(key, m_eff, kind, pool, num_ops, draw_magnitude, sub_ops, sub_probs, sub_mags, signed, limits,
                    ops, mags)
    return flip, used


@njit(nogil=True, cache=True)
def plan_batch(seed, epoch, indices, heights, widths, knobs, caps, crop,
               kind, pool, num_ops, draw_magnitude, sub_ops, sub_probs, sub_mags, signed, limits,
               boxes, flips, ops, mags, used):
    """Plan a batch into preallocated arrays. `knobs` and `caps` hold one
    magnitude and one cap per sample of the batch (`caps` empty: no caps)."""
    for i in range(indices.shape[0]):
        idx = indices[i]
        cap = caps[i] if caps.shape[0] > 0 else MAX_MAGNITUDE
        f, u = plan_sample(seed, epoch, idx, heights[i], widths[i], knobs[i], cap, crop,
                           kind, pool, num_ops, draw_magnitude, sub_ops, sub_probs, sub_mags, signed, limits,
                           boxes[i], ops[i], mags[i])
        flips[i] = f
        used[i] = u


@dataclass
class Plan:
    """Every decision for a batch, as a struct of arrays (row i = sample i).

    Attributes:
        index: int64 (B,) dataset indices.
        box: int32 (B, 4) source region (top, left, height, width); may reach
            outside the image for padded crops.
        flip: bool (B,) horizontal flip.
        ops: int8 (B, K) op ids in application order, -1 for none.
        mags: float32 (B, K) signed magnitudes on the 0..30 scale.
        magnitude: float32 (B,) magnitude actually used per sample.
        space: ops.STANDARD or ops.WIDE (which magnitude table).
        size: (height, width) of the output.
        fill: fill value for padded regions.
    """

    index: np.ndarray
    box: np.ndarray
    flip: np.ndarray
    ops: np.ndarray
    mags: np.ndarray
    magnitude: np.ndarray
    space: int
    size: tuple[int, int]
    fill: int = 0

    def __len__(self) -> int:
        return len(self.index)

    @staticmethod
    def concat(plans: list["Plan"]) -> "Plan":
        """Rows of several plans (of one policy and crop; at least one) as one plan."""
        first = plans[0]
        cat = lambda name: np.concatenate([getattr(p, name) for p in plans])  # noqa: E731
        return Plan(cat("index"), cat("box"), cat("flip"), cat("ops"), cat("mags"), cat("magnitude"),
                    first.space, first.size, first.fill)

    def subset(self, keep: np.ndarray) -> "Plan":
        return Plan(self.index[keep], self.box[keep], self.flip[keep], self.ops[keep], self.mags[keep],
                    self.magnitude[keep], self.space, self.size, self.fill)


def make_plan(seed: int, epoch: int, indices, heights, widths, knob, caps: np.ndarray | None,
              crop: Crop, policy: PolicyArrays, interpreted: bool = False) -> Plan:
    """Plan a batch from numpy: the numpy face of `plan_batch`.

    The crop, the flip, the ops and their signs depend on (seed, epoch,
    index) only; the knob and the cap only scale the magnitudes. So planning
    the same samples at another knob gives the same choices at other
    magnitudes (what `Loader.render` relies on).

    Args:
        seed, epoch: the run's seed and the epoch (non-negative ints).
        indices: dataset indices of the batch.
        heights, widths: source image sizes, per sample (or scalars).
        knob: magnitude in [0, 30], global (a scalar) or per sample.
        caps: the per-dataset caps (a float32 array of len = dataset size, or
            the byte store's `ByteCaps`), or None; the batch's are read here.
        crop, policy: the base transform and the lowered policy.
        interpreted: run the planner's pure-Python twin (the same plan; for
            the first use, before the compiled planner is cached).
    """
    indices = np.ascontiguousarray(indices, dtype=np.int64)
    n = indices.shape[0]
    heights = np.broadcast_to(np.asarray(heights, dtype=np.int64), (n,)).copy()
    widths = np.broadcast_to(np.asarray(widths, dtype=np.int64), (n,)).copy()
    knobs = np.broadcast_to(np.asarray(knob, dtype=np.float64), (n,)).copy()
    caps = np.empty(0, np.float32) if caps is None else np.ascontiguousarray(caps[indices], dtype=np.float32)
    boxes = np.empty((n, 4), np.int32)
    flips = np.empty(n, np.bool_)
    ops = np.empty((n, policy.num_ops), np.int8)
    mags = np.empty((n, policy.num_ops), np.float32)
    used = np.empty(n, np.float32)
    planner = plan_batch
    if interpreted:
        from ..kernels.interpreted import interpreted as twin

        planner = twin(plan_batch)
    with np.errstate(over="ignore"):  # uint64 wrap-around is intended (JIT-off runs and the twin)
        planner(np.uint64(seed), np.uint64(epoch), indices, heights, widths, knobs, caps, crop.params(),
                   policy.kind, policy.pool, policy.num_ops, policy.draw_magnitude,
                   policy.sub_ops, policy.sub_probs, policy.sub_mags, SIGNED, policy.limits,
                   boxes, flips, ops, mags, used)
    return Plan(indices, boxes, flips, ops, mags, used, policy.space, crop.size, crop.fill)
