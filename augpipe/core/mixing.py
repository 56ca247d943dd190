"""Mixing (MixUp, CutMix) and RandomErasing: declared once, planned per sample.

These act on a whole batch after every sample's own ops, as timm's `Mixup`
and `RandomErasing` do in a timm/DeiT recipe (erasing first, on each sample;
then mixing across the batch). Unlike those, every choice is the planner's:
a pure function of (seed, epoch, dataset index, the sample's magnitude, its
position in the batch), drawn from counter streams of its own (1024.. for
mixing, 2048.. for erasing), so plans without mixing are unchanged and a
mixed batch is the same in any process, worker count, backend or resume.

The partner of the sample at position i of a batch of n is the sample at
n-1-i (timm's `mode='elem'`: one λ, one switch and one box per sample). That
is cheap (no second decode) but ties a sample's partner to its batch: with
another batch size, world size or skipped images the partners change (each
sample's own λ, switch, box centre and rectangles do not). With an odd batch
the middle sample pairs with itself and stays unmixed, as in timm.

Strength under the knob: `follow=None` keeps the declared values (timm's
behaviour, the default); `follow="prob"` scales the probability by the
sample's magnitude / 30 (its planned magnitude: min(knob, cap), what its ops
used), so a capacity schedule, per-sample caps and the teacher gate's
fallback lower mixing and erasing exactly as they lower the ops; mixing also
takes `follow="alpha"` (Beta(α·m/30, α·m/30), more mass near λ = 0 or 1 as m
falls; m = 0 leaves the sample unmixed).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from ..kernels.rng import sample_key, uniform
from .checks import check_finite, check_positive, check_probability
from .ops import MAX_MAGNITUDE

MIX_STREAM = 1024  # 0 apply, 1 switch, 2..3 box centre, 4.. Beta draws
ERASE_STREAM = 2048  # 0 apply, 1 count, 2.. rectangles (4 per attempt)
GAMMA_TRIES = 16  # Marsaglia-Tsang acceptance is > 95 % per try: 16 tries fail with p < 1e-20
ERASE_TRIES = 10  # timm's and torchvision's attempts per rectangle
NO_MIX, MIXUP, CUTMIX = 0, 1, 2
FOLLOW = (None, "prob", "alpha")


def _follow(value, allowed) -> str | None:
    if value not in allowed:
        raise ValueError(f"follow must be one of {allowed}, got {value!r}")
    return value


@dataclass(frozen=True)
class Mixing:
    """MixUp and/or CutMix, timm's `Mixup` arguments (mode 'elem').

    Args:
        mixup_alpha, cutmix_alpha: Beta(α, α) concentrations; 0 turns one off
            (at least one > 0).
        prob: probability that a sample is mixed at all (timm's `prob`).
        switch_prob: with both on, probability of CutMix rather than MixUp.
        correct_lam: λ = 1 - the box's area share after clipping (timm's
            default; torchvision's CutMix always does this).
        label_smoothing: smoothing of the soft targets (timm's `label_smoothing`,
            applied to unmixed samples too).
        follow: None, "prob" or "alpha" (see the module docstring).

    `CutMix(1.0) | MixUp(0.8)` is `Mixing(mixup_alpha=0.8, cutmix_alpha=1.0)`.
    """

    mixup_alpha: float = 0.8
    cutmix_alpha: float = 1.0
    prob: float = 1.0
    switch_prob: float = 0.5
    correct_lam: bool = True
    label_smoothing: float = 0.0
    follow: str | None = None

    def __post_init__(self):
        for name in ("mixup_alpha", "cutmix_alpha"):
            check_finite(name, getattr(self, name), 0, " (0 turns it off)")
        if self.mixup_alpha == 0 and self.cutmix_alpha == 0:
            raise ValueError("Mixing needs mixup_alpha > 0 or cutmix_alpha > 0 (both are 0)")
        check_probability("prob", self.prob)
        check_probability("switch_prob", self.switch_prob)
        check_probability("label_smoothing", self.label_smoothing)
        if not isinstance(self.correct_lam, bool):
            raise TypeError(f"correct_lam must be a bool, got {type(self.correct_lam).__name__}")
        _follow(self.follow, FOLLOW)

    def __or__(self, other: "Mixing") -> "Mixing":
        """One MixUp and one CutMix: each sample picks CutMix with probability 0.5."""
        if not isinstance(other, Mixing):
            return NotImplemented
        mix = [m for m in (self, other) if m.mixup_alpha > 0 and m.cutmix_alpha == 0]
        cut = [m for m in (self, other) if m.cutmix_alpha > 0 and m.mixup_alpha == 0]
        if len(mix) != 1 or len(cut) != 1:
            raise ValueError("`a | b` combines one MixUp(...) with one CutMix(...); for other mixtures build "
                             "Mixing(mixup_alpha=..., cutmix_alpha=..., switch_prob=...)")
        for name in ("prob", "label_smoothing", "follow"):
            if getattr(self, name) != getattr(other, name):
                raise ValueError(f"MixUp(...) | CutMix(...) need the same {name}, got {getattr(self, name)!r} and "
                                 f"{getattr(other, name)!r}")
        return Mixing(mix[0].mixup_alpha, cut[0].cutmix_alpha, self.prob, 0.5, cut[0].correct_lam,
                      self.label_smoothing, self.follow)

    def params(self) -> np.ndarray:
        """The packed float64 parameters the planner reads."""
        return np.array([self.mixup_alpha, self.cutmix_alpha, self.prob, self.switch_prob, float(self.correct_lam),
                         float(FOLLOW.index(self.follow))], np.float64)


def MixUp(alpha: float = 0.8, p: float = 1.0, label_smoothing: float = 0.0, follow: str | None = None) -> Mixing:
    """MixUp: x = λ·x_i + (1-λ)·x_partner, λ ~ Beta(α, α), per sample with probability p."""
    return Mixing(check_positive("alpha", alpha, "a Beta concentration"), 0.0, p, 0.0, True, label_smoothing, follow)


def CutMix(alpha: float = 1.0, p: float = 1.0, correct_lam: bool = True, label_smoothing: float = 0.0,
           follow: str | None = None) -> Mixing:
    """CutMix: a box of area share ~(1-λ) pasted from the partner, λ ~ Beta(α, α), with probability p."""
    alpha = check_positive("alpha", alpha, "a Beta concentration")
    return Mixing(0.0, alpha, p, 1.0, correct_lam, label_smoothing, follow)


@dataclass(frozen=True)
class RandomErasing:
    """RandomErasing (timm's arguments; torchvision's with count=1), per sample.

    Args:
        p: probability that a sample is erased (timm's `probability`, `--reprob`).
        scale: range of the erased area share (split over `count` rectangles).
        ratio: range of aspect ratios (log-uniform).
        value: "const" fill `fill`; "rand" one normal draw per channel; "pixel"
            one per pixel (timm's `mode`). "rand"/"pixel" need output="float"
            (they are values of the normalised image, as in timm).
        fill: the constant (0..255 for uint8 output; in normalised units for
            float output, where 0 is the mean, as timm's 'const').
        count: rectangles per erased sample, an int or a (min, max) range.
        follow: None or "prob" (see the module docstring).
    """

    p: float = 0.25
    scale: tuple[float, float] = (0.02, 1 / 3)
    ratio: tuple[float, float] = (0.3, 1 / 0.3)
    value: str = "const"
    fill: float = 0.0
    count: int | tuple[int, int] = 1
    follow: str | None = None

    def __post_init__(self):
        check_probability("p", self.p)
        lo, hi = _pair("scale", self.scale)
        if not 0 <= lo <= hi <= 1:
            raise ValueError(f"scale must be a (min, max) range within [0, 1], got {self.scale!r}")
        lo, hi = _pair("ratio", self.ratio)
        if not 0 < lo <= hi:
            raise ValueError(f"ratio must be a (min, max) range of positive aspect ratios, got {self.ratio!r}")
        if self.value not in ("const", "rand", "pixel"):
            raise ValueError(f"value must be 'const', 'rand' or 'pixel', got {self.value!r}")
        check_finite("fill", self.fill)
        lo, hi = self.counts
        if not (1 <= lo <= hi <= 8):
            raise ValueError(f"count must be an int or a (min, max) range within [1, 8], got {self.count!r}")
        _follow(self.follow, FOLLOW[:2])

    @property
    def counts(self) -> tuple[int, int]:
        c = (self.count, self.count) if isinstance(self.count, (int, np.integer)) else tuple(self.count)
        if len(c) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in c):
            raise ValueError(f"count must be an int or a (min, max) range of ints, got {self.count!r}")
        return int(c[0]), int(c[1])

    def params(self) -> np.ndarray:
        lo, hi = self.counts
        return np.array([self.p, self.scale[0], self.scale[1], math.log(self.ratio[0]), math.log(self.ratio[1]),
                         lo, hi, float(FOLLOW.index(self.follow))], np.float64)


def _pair(name, value) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (min, max) pair of numbers, got {value!r}") from None
    return lo, hi


# ------------------------------------------------------------------ the planner
@njit(nogil=True, cache=True)
def _normal(key, c):
    """A standard normal from two counter draws (Box-Muller)."""
    u1 = 1.0 - uniform(key, c)  # (0, 1]
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * uniform(key, c + 1))


@njit(nogil=True, cache=True)
def _gamma(key, c, a):
    """Gamma(a, 1) by Marsaglia-Tsang from counters c .. c + 4*GAMMA_TRIES (a < 1 boosted by U^(1/a))."""
    boost = 1.0
    if a < 1.0:
        boost = uniform(key, c + 4 * GAMMA_TRIES) ** (1.0 / a)
        a += 1.0
    d = a - 1.0 / 3.0
    s = 1.0 / math.sqrt(9.0 * d)
    for t in range(GAMMA_TRIES):
        z = _normal(key, c + 4 * t)
        v = (1.0 + s * z) ** 3
        if v > 0 and math.log(1.0 - uniform(key, c + 4 * t + 2)) < 0.5 * z * z + d - d * v + d * math.log(v):
            return d * v * boost
    return d * boost  # unreachable in practice (see GAMMA_TRIES)


@njit(nogil=True, cache=True)
def beta_draw(key, c, a):
    """Beta(a, a) as X / (X + Y), X, Y ~ Gamma(a); counters c .. c + 2*(4*GAMMA_TRIES+1)."""
    x = _gamma(key, c, a)
    y = _gamma(key, c + 4 * GAMMA_TRIES + 1, a)
    return x / (x + y) if x + y > 0 else 0.5


@njit(nogil=True, cache=True)
def plan_mixing(seed, epoch, indices, magnitudes, height, width, p, kind, lam, partner, box):
    """Per sample i of a batch: kind (NO_MIX/MIXUP/CUTMIX), λ (float32), partner position, CutMix box
    (y1, y2, x1, x2) — written into the arrays. `p` is Mixing.params()."""
    n = indices.shape[0]
    for i in range(n):
        key = sample_key(seed, epoch, np.uint64(indices[i]))
        kind[i] = NO_MIX
        lam[i] = 1.0
        partner[i] = n - 1 - i
        box[i, 0] = 0
        box[i, 1] = 0
        box[i, 2] = 0
        box[i, 3] = 0
        strength = min(max(magnitudes[i], 0.0), MAX_MAGNITUDE) / MAX_MAGNITUDE
        prob = p[2] * strength if p[5] == 1.0 else p[2]
        if partner[i] == i or not uniform(key, MIX_STREAM) < prob:
            continue
        cut = p[1] > 0 and (p[0] == 0 or uniform(key, MIX_STREAM + 1) < p[3])
        alpha = p[1] if cut else p[0]
        if p[5] == 2.0:
            alpha *= strength
        if alpha <= 0:
            continue
        lm = np.float32(beta_draw(key, MIX_STREAM + 4, alpha))
        if cut:
            # timm's rand_bbox / torchvision's CutMix: half-sides int(side * sqrt(1-λ)) // 2 around a uniform centre
            r = math.sqrt(1.0 - np.float64(lm))
            half_h = np.int64(height * r) // 2
            half_w = np.int64(width * r) // 2
            cy = min(np.int64(uniform(key, MIX_STREAM + 2) * height), height - 1)
            cx = min(np.int64(uniform(key, MIX_STREAM + 3) * width), width - 1)
            y1, y2 = max(cy - half_h, 0), min(cy + half_h, height)
            x1, x2 = max(cx - half_w, 0), min(cx + half_w, width)
            box[i, 0] = y1
            box[i, 1] = y2
            box[i, 2] = x1
            box[i, 3] = x2
            if p[4] == 1.0:
                lm = np.float32(1.0 - (y2 - y1) * (x2 - x1) / float(height * width))
            kind[i] = CUTMIX
        else:
            kind[i] = MIXUP
        lam[i] = lm


@njit(nogil=True, cache=True)
def plan_erasing(seed, epoch, indices, magnitudes, height, width, p, rects):
    """Per sample: up to rects.shape[1] rectangles (top, left, h, w); h = 0 marks an unused slot.
    timm's rule: count ~ U{min..max}; per rectangle up to 10 tries of area share ~ U(scale)/count and
    log-uniform aspect, kept when h < height and w < width; top, left uniform over the valid range."""
    area = float(height * width)
    for i in range(indices.shape[0]):
        key = sample_key(seed, epoch, np.uint64(indices[i]))
        for r in range(rects.shape[1]):
            for k in range(4):
                rects[i, r, k] = 0
        strength = min(max(magnitudes[i], 0.0), MAX_MAGNITUDE) / MAX_MAGNITUDE
        prob = p[0] * strength if p[7] == 1.0 else p[0]
        if not uniform(key, ERASE_STREAM) < prob:
            continue
        lo, hi = np.int64(p[5]), np.int64(p[6])
        count = lo + min(np.int64(uniform(key, ERASE_STREAM + 1) * (hi - lo + 1)), hi - lo)
        for r in range(count):
            for t in range(ERASE_TRIES):
                c = ERASE_STREAM + 2 + 4 * (ERASE_TRIES * r + t)
                target = (p[1] + (p[2] - p[1]) * uniform(key, c)) * area / count
                aspect = math.exp(p[3] + (p[4] - p[3]) * uniform(key, c + 1))
                h = np.int64(round(math.sqrt(target * aspect)))
                w = np.int64(round(math.sqrt(target / aspect)))
                if 0 < h < height and 0 < w < width:
                    rects[i, r, 0] = min(np.int64(uniform(key, c + 2) * (height - h + 1)), height - h)
                    rects[i, r, 1] = min(np.int64(uniform(key, c + 3) * (width - w + 1)), width - w)
                    rects[i, r, 2] = h
                    rects[i, r, 3] = w
                    break


@dataclass
class MixPlan:
    """The mixing and erasing decisions for one batch (row i = position i).

    Attributes:
        kind: int8 (B,) NO_MIX / MIXUP / CUTMIX.
        lam: float32 (B,) weight of the sample itself (1 when unmixed).
        partner: int64 (B,) batch position of the partner (n-1-i).
        box: int32 (B, 4) CutMix box (y1, y2, x1, x2); zeros otherwise.
        rects: int32 (B, R, 4) erased rectangles (top, left, h, w); h = 0: none.
    """

    kind: np.ndarray
    lam: np.ndarray
    partner: np.ndarray
    box: np.ndarray
    rects: np.ndarray


def make_mix_plan(seed: int, epoch: int, indices, magnitudes, size: tuple[int, int], mixing: Mixing | None,
                  erasing: RandomErasing | None) -> MixPlan:
    """Plan a batch's mixing and erasing (numpy in, numpy out; either may be None)."""
    indices = np.ascontiguousarray(indices, dtype=np.int64)
    n = indices.shape[0]
    mags = np.broadcast_to(np.asarray(magnitudes, dtype=np.float64), (n,)).copy()
    h, w = size
    kind, lam = np.zeros(n, np.int8), np.ones(n, np.float32)
    partner, box = np.arange(n, dtype=np.int64), np.zeros((n, 4), np.int32)
    rects = np.zeros((n, erasing.counts[1] if erasing is not None else 0, 4), np.int32)
    with np.errstate(over="ignore"):  # uint64 wrap-around is intended (JIT-off runs)
        if mixing is not None:
            plan_mixing(np.uint64(seed), np.uint64(epoch), indices, mags, h, w, mixing.params(), kind, lam, partner,
                        box)
        if erasing is not None:
            plan_erasing(np.uint64(seed), np.uint64(epoch), indices, mags, h, w, erasing.params(), rects)
    return MixPlan(kind, lam, partner, box, rects)
