"""Augmentation policies and the base crop/flip transforms around them.

A policy is a description, lowered once into a few small arrays that the
numba planner reads (`PolicyArrays`). It holds no randomness and no state.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .ops import MAX_MAGNITUDE, OP_IDS, RAND_AUGMENT_OPS, STANDARD, WIDE

# Planner policy kinds.
KIND_NONE = 0  # no ops
KIND_UNIFORM = 1  # num_ops ops drawn uniformly from a pool (RandAugment, TrivialAugment)
KIND_SUBPOLICY = 2  # one sub-policy drawn uniformly, each op applied with its probability


@dataclass(frozen=True)
class PolicyArrays:
    """What the planner needs to know of a policy (numba-friendly arrays)."""

    kind: int
    space: int
    num_ops: int  # op slots per sample (columns of Plan.ops)
    pool: np.ndarray  # int8 op ids to draw from (KIND_UNIFORM)
    draw_magnitude: bool  # TrivialAugment: magnitude ~ U[0, knob] per sample
    sub_ops: np.ndarray  # int8 (S, 2) (KIND_SUBPOLICY)
    sub_probs: np.ndarray  # float64 (S, 2)
    sub_mags: np.ndarray  # float64 (S, 2), on the 0..30 scale at full strength
    limits: np.ndarray  # float64 (len(OPS),): each op's own magnitude bound (30: none)


def _arrays(kind, space, num_ops, pool=(), draw_magnitude=False, subs=(), limits=None) -> PolicyArrays:
    sub_ops = np.array([[OP_IDS[o] for o, _, _ in s] for s in subs], dtype=np.int8).reshape(-1, 2)
    sub_probs = np.array([[p for _, p, _ in s] for s in subs], dtype=np.float64).reshape(-1, 2)
    sub_mags = np.array([[m for _, _, m in s] for s in subs], dtype=np.float64).reshape(-1, 2)
    bounds = np.full(len(OP_IDS), MAX_MAGNITUDE, dtype=np.float64)
    for name, value in (limits or {}).items():
        bounds[OP_IDS[name]] = value
    return PolicyArrays(kind, space, num_ops, np.array(pool, dtype=np.int8), draw_magnitude, sub_ops, sub_probs,
                        sub_mags, bounds)


class Policy:
    """Base class. Subclasses implement `_lower(limits)`.

    Every policy takes per-op magnitude limits (`with_limits`): op k then runs
    at min(its planned magnitude, limit[k]), e.g. a limit derived from a
    teacher's per-op difficulty report (`augpipe.limits_from_report`).
    """

    name = "policy"
    limits: dict = {}

    def with_limits(self, limits: dict) -> "Policy":
        """A copy of this policy whose ops named in `limits` never exceed
        their limit, e.g. `RandAugment(2).with_limits({"Solarize": 12})`.

        Raises:
            ValueError: an unknown op name or a limit outside [0, 30].
        """
        import copy

        from .ops import check_magnitude

        unknown = sorted(set(limits) - set(OP_IDS))
        if unknown:
            raise ValueError(f"unknown op name(s) {unknown} in limits; ops are {sorted(OP_IDS)}")
        new = copy.copy(self)
        new.limits = {**self.limits, **{k: check_magnitude(v, name=f"limit of {k}") for k, v in limits.items()}}
        return new

    def lower(self) -> PolicyArrays:
        return self._lower(self.limits)

    def _lower(self, limits: dict) -> PolicyArrays:
        raise NotImplementedError

    def _limits_repr(self) -> str:
        return f".with_limits({self.limits})" if self.limits else ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(){self._limits_repr()}"


class Identity(Policy):
    """No augmentation op (the base crop/flip still apply)."""

    name = "identity"

    def _lower(self, limits: dict) -> PolicyArrays:
        return _arrays(KIND_NONE, STANDARD, 1, limits=limits)


class RandAugment(Policy):
    """torchvision's RandAugment: `num_ops` ops drawn uniformly from the 14.

    Every sample uses magnitude min(knob, cap[i]); signed ops get a random
    sign. Integer magnitudes match torchvision.transforms.v2.RandAugment(
    num_ops, magnitude=M, num_magnitude_bins=31).

    Args:
        num_ops: ops applied in sequence per sample, >= 1. Default 2.
        ops: optional subset of op names to draw from (default: all 14).
    """

    name = "randaugment"

    def __init__(self, num_ops: int = 2, ops: tuple[str, ...] | None = None):
        if isinstance(num_ops, bool) or not isinstance(num_ops, int) or num_ops < 1:
            raise ValueError(f"RandAugment num_ops must be an int >= 1, got {num_ops!r}")
        if isinstance(ops, (int, float)):  # torchvision's RandAugment(num_ops, magnitude) habit
            raise ValueError(f"RandAugment's second argument is `ops` (op names), got {ops!r}: the magnitude is "
                             f"the loader's live knob, Loader(..., magnitude={ops!r})")
        names = [n for n, i in OP_IDS.items() if i in RAND_AUGMENT_OPS] if ops is None else list(ops)
        unknown = [n for n in names if n not in OP_IDS]
        if unknown or not names:
            raise ValueError(f"RandAugment ops must be a non-empty subset of {sorted(OP_IDS)}, got {ops!r}")
        self.num_ops = num_ops
        self.ops = tuple(names)

    def _lower(self, limits: dict) -> PolicyArrays:
        return _arrays(KIND_UNIFORM, STANDARD, self.num_ops, [OP_IDS[n] for n in self.ops], limits=limits)

    def __repr__(self) -> str:
        ops = "" if len(self.ops) == len(RAND_AUGMENT_OPS) else f", ops={self.ops}"
        return f"RandAugment(num_ops={self.num_ops}{ops}){self._limits_repr()}"


class TrivialAugment(Policy):
    """torchvision's TrivialAugmentWide: one op per sample from the wide table.

    The magnitude is drawn per sample, uniformly in [0, min(knob, cap[i])]
    (continuous; torchvision draws an integer bin in [0, 30], which is the
    knob=30 case up to discretisation). `Batch.magnitude` reports the draw.
    """

    name = "trivialaugment"

    def _lower(self, limits: dict) -> PolicyArrays:
        return _arrays(KIND_UNIFORM, WIDE, 1, list(RAND_AUGMENT_OPS), draw_magnitude=True, limits=limits)


# torchvision AutoAugmentPolicy.IMAGENET; magnitudes are bin indices of a
# 10-bin table, i.e. M = 30 * k / 9 on the 31-bin scale (same parameters).
_IMAGENET = (
    (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
    (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
    (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
    (("Equalize", 0.4, None), ("Rotate", 0.8, 8)),
    (("Solarize", 0.6, 3), ("Equalize", 0.6, None)),
    (("Posterize", 0.8, 5), ("Equalize", 1.0, None)),
    (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
    (("Equalize", 0.6, None), ("Posterize", 0.4, 6)),
    (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
    (("Rotate", 0.4, 9), ("Equalize", 0.6, None)),
    (("Equalize", 0.0, None), ("Equalize", 0.8, None)),
    (("Invert", 0.6, None), ("Equalize", 1.0, None)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
    (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
    (("Sharpness", 0.4, 7), ("Invert", 0.6, None)),
    (("ShearX", 0.6, 5), ("Equalize", 1.0, None)),
    (("Color", 0.4, 0), ("Equalize", 0.6, None)),
    (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
    (("Invert", 0.6, None), ("Equalize", 1.0, None)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
)
AUTOAUGMENT_BINS = 10


class AutoAugment(Policy):
    """torchvision's AutoAugment with its ImageNet policy.

    The knob scales every sub-policy magnitude: the op runs at
    M_policy * min(knob, cap[i]) / 30, so knob 30 is exactly torchvision's
    AutoAugment(AutoAugmentPolicy.IMAGENET) and knob 0 leaves only the
    parameterless ops (Equalize, AutoContrast, Invert, Posterize at 8 bits).
    """

    name = "autoaugment"

    def _lower(self, limits: dict) -> PolicyArrays:
        subs = [
            [(op, p, 0.0 if k is None else MAX_MAGNITUDE * k / (AUTOAUGMENT_BINS - 1)) for op, p, k in sub]
            for sub in _IMAGENET
        ]
        return _arrays(KIND_SUBPOLICY, STANDARD, 2, subs=subs, limits=limits)


POLICIES = {p.name: p for p in (RandAugment, TrivialAugment, AutoAugment, Identity)}


def get_policy(policy) -> Policy:
    """A Policy from an instance or a name ("randaugment", "trivialaugment", ...)."""
    if isinstance(policy, Policy):
        return policy
    if policy is None:
        return Identity()
    if isinstance(policy, str) and policy.lower().replace("_", "") in POLICIES:
        return POLICIES[policy.lower().replace("_", "")]()
    raise ValueError(f"unknown policy {policy!r}; use a Policy instance or one of {sorted(POLICIES)}")


# ---------------------------------------------------------------- base crops

CROP_FULL = 0  # whole image, resized to the output size if needed
CROP_RRC = 1
CROP_PAD = 2
CROP_CENTER = 3


def _pair(size) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if not (isinstance(h, int) and isinstance(w, int)) or h < 1 or w < 1:
        raise ValueError(f"crop size must be a positive int or (h, w) pair, got {size!r}")
    return int(h), int(w)


# Slots of `Crop.params()`: compiled code reads the packed array by these
# names (module-level ints are compile-time constants for numba).
CROP_SLOTS = ("mode", "out_h", "out_w", "scale_lo", "scale_hi", "log_ratio_lo", "log_ratio_hi", "padding",
              "crop_ratio", "flip")
(C_MODE, C_OUT_H, C_OUT_W, C_SCALE_LO, C_SCALE_HI, C_LOG_RATIO_LO, C_LOG_RATIO_HI, C_PADDING, C_CROP_RATIO,
 C_FLIP) = range(len(CROP_SLOTS))


@dataclass(frozen=True)
class Crop:
    """Base geometric transform: where to crop, output size, flip probability.

    Build one with `RandomResizedCrop`, `RandomCrop`, `CenterCrop` or
    `FullImage`. `params()` packs it for the planner.
    """

    mode: int
    size: tuple[int, int]
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    padding: int = 0
    fill: int = 0
    crop_ratio: float = 1.0
    flip: float = 0.0
    extra: dict = field(default_factory=dict, compare=False)

    def params(self) -> np.ndarray:
        """float64 (10,): the slots named by the C_* constants below, what the compiled planner reads."""
        out = np.zeros(len(CROP_SLOTS), np.float64)
        out[[C_MODE, C_OUT_H, C_OUT_W]] = self.mode, self.size[0], self.size[1]
        out[[C_SCALE_LO, C_SCALE_HI]] = self.scale
        out[[C_LOG_RATIO_LO, C_LOG_RATIO_HI]] = math.log(self.ratio[0]), math.log(self.ratio[1])
        out[[C_PADDING, C_CROP_RATIO, C_FLIP]] = self.padding, self.crop_ratio, self.flip
        return out


def RandomResizedCrop(size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), flip: float = 0.5) -> Crop:
    """torchvision's RandomResizedCrop algorithm (10 tries, then a central crop), plus a horizontal flip."""
    if not (0 < scale[0] <= scale[1] <= 1) or not (0 < ratio[0] <= ratio[1]):
        raise ValueError(f"RandomResizedCrop needs 0 < scale[0] <= scale[1] <= 1 and 0 < ratio[0] <= ratio[1], got {scale}, {ratio}")
    return Crop(CROP_RRC, _pair(size), tuple(scale), tuple(ratio), flip=flip)


def RandomCrop(size, padding: int = 4, fill: int = 0, flip: float = 0.5) -> Crop:
    """CIFAR-style crop: pad by `padding` with `fill`, crop `size` at a random offset, flip."""
    if padding < 0 or not 0 <= fill <= 255:
        raise ValueError(f"RandomCrop needs padding >= 0 and fill in [0, 255], got {padding}, {fill}")
    return Crop(CROP_PAD, _pair(size), padding=int(padding), fill=int(fill), flip=flip)


def CenterCrop(size, crop_ratio: float = 0.875) -> Crop:
    """Evaluation: central square of side crop_ratio * shorter side, resized to `size`
    (the usual Resize(size / crop_ratio) + CenterCrop(size))."""
    if not 0 < crop_ratio <= 1:
        raise ValueError(f"crop_ratio must be in (0, 1], got {crop_ratio}")
    return Crop(CROP_CENTER, _pair(size), crop_ratio=float(crop_ratio))


def FullImage(size) -> Crop:
    """Evaluation on arrays: the whole image, resized to `size` if it differs."""
    return Crop(CROP_FULL, _pair(size))
