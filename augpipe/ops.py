"""The op table: every augmentation op declared once.

Each op states its magnitude range on the 0..30 scale (31 bins), whether its
sign is drawn at random, and how a magnitude becomes the parameter that
torchvision.transforms.v2.functional takes. Integer magnitudes reproduce
torchvision's `_AUGMENTATION_SPACE` bin for bin (the tables are built with
`torch.linspace` exactly as torchvision builds them); a fractional magnitude
interpolates linearly between its two neighbouring bins.

Two spaces exist: "standard" (RandAugment, AutoAugment) and "wide"
(TrivialAugmentWide). Op ids are stable small integers shared by the planner
and every executor.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

NUM_BINS = 31
MAX_MAGNITUDE = float(NUM_BINS - 1)

STANDARD = 0  # RandAugment / AutoAugment table
WIDE = 1  # TrivialAugmentWide table
SPACES = {"standard": STANDARD, "wide": WIDE}

Table = Callable[[int, int], torch.Tensor]  # (height, width) -> 31 values


def _lin(lo: float, hi: float) -> Table:
    return lambda h, w: torch.linspace(lo, hi, NUM_BINS)


def _posterize_bits(levels: int) -> Table:
    # torchvision: (8 - (arange(bins) / ((bins - 1) / levels))).round().int()
    return lambda h, w: (8 - (torch.arange(NUM_BINS) / ((NUM_BINS - 1) / levels))).round().int()


@dataclass(frozen=True)
class Op:
    """One augmentation op.

    Args:
        name: torchvision's name for it.
        signed: whether the planner draws a random sign (+/- with p=0.5 each).
        standard: magnitude table in the RandAugment/AutoAugment space, or None
            for ops without a magnitude.
        wide: magnitude table in the TrivialAugmentWide space.
        identity: the value of `op_params` at which the op does nothing (a
            factor of 1, 8 bits, a threshold of 255); a larger magnitude never
            moves the parameter closer to it.
    """

    name: str
    signed: bool
    standard: Table | None
    wide: Table | None
    identity: float = 0.0

    def table(self, space: int, height: int, width: int) -> np.ndarray:
        """The 31 per-bin parameter magnitudes (unsigned), as float64."""
        return _table(self, space, height, width)


@functools.lru_cache(maxsize=1024)
def _table(op: "Op", space: int, height: int, width: int) -> np.ndarray:
    fn = op.standard if space == STANDARD else op.wide
    table = np.zeros(NUM_BINS) if fn is None else fn(height, width).to(torch.float64).numpy()
    table.flags.writeable = False  # shared by every caller through the cache
    return table


# Order matters: ids are positions in this tuple, and 0..13 are torchvision's
# RandAugment ops in torchvision's order. Invert (14) is AutoAugment-only.
OPS: tuple[Op, ...] = (
    Op("Identity", False, None, None),
    Op("ShearX", True, _lin(0.0, 0.3), _lin(0.0, 0.99)),
    Op("ShearY", True, _lin(0.0, 0.3), _lin(0.0, 0.99)),
    Op("TranslateX", True, lambda h, w: torch.linspace(0.0, 150.0 / 331.0 * w, NUM_BINS), _lin(0.0, 32.0)),
    Op("TranslateY", True, lambda h, w: torch.linspace(0.0, 150.0 / 331.0 * h, NUM_BINS), _lin(0.0, 32.0)),
    Op("Rotate", True, _lin(0.0, 30.0), _lin(0.0, 135.0)),
    Op("Brightness", True, _lin(0.0, 0.9), _lin(0.0, 0.99), identity=1.0),
    Op("Color", True, _lin(0.0, 0.9), _lin(0.0, 0.99), identity=1.0),
    Op("Contrast", True, _lin(0.0, 0.9), _lin(0.0, 0.99), identity=1.0),
    Op("Sharpness", True, _lin(0.0, 0.9), _lin(0.0, 0.99), identity=1.0),
    Op("Posterize", False, _posterize_bits(4), _posterize_bits(6), identity=8.0),
    Op("Solarize", False, _lin(1.0, 0.0), _lin(1.0, 0.0), identity=255.0),
    Op("AutoContrast", False, None, None),
    Op("Equalize", False, None, None),
    Op("Invert", False, None, None),
)
OP_IDS: dict[str, int] = {op.name: i for i, op in enumerate(OPS)}
RAND_AUGMENT_OPS: tuple[int, ...] = tuple(range(14))
SIGNED = np.array([op.signed for op in OPS], dtype=np.bool_)


def check_magnitude(value, name: str = "magnitude") -> float:
    """Validate a magnitude on the 0..30 scale; return it as a float.

    Raises:
        ValueError: for non-numeric, NaN or out-of-range values, naming them.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        try:
            value = float(value.item()) if hasattr(value, "item") and value.numel() == 1 else value
        except (AttributeError, TypeError, RuntimeError):
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number in [0, {MAX_MAGNITUDE:g}], got {value!r}")
    value = float(value)
    if math.isnan(value) or not 0.0 <= value <= MAX_MAGNITUDE:
        raise ValueError(f"{name} must be in [0, {MAX_MAGNITUDE:g}] (RandAugment's 31-bin scale), got {value!r}")
    return value


def interpolate(table: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
    """Linear interpolation of a 31-bin table at (unsigned) magnitudes."""
    m = np.clip(np.abs(np.asarray(magnitude, dtype=np.float64)), 0.0, MAX_MAGNITUDE)
    lo = np.floor(m).astype(np.int64)
    hi = np.minimum(lo + 1, NUM_BINS - 1)
    t = m - lo
    # At integer magnitudes t == 0 and the bin's exact value comes back.
    return np.where(t == 0.0, table[lo], table[lo] + t * (table[hi] - table[lo]))


def op_params(op_id: int, magnitude, space: int, height: int, width: int) -> np.ndarray:
    """torchvision parameters for `op_id` at signed magnitudes (float64 array).

    Returned per op (what torchvision's RandAugment passes to v2.functional):
    ShearX/Y: shear in degrees, degrees(atan(level)); TranslateX/Y: whole
    pixels, int(level) (truncation toward zero, as torchvision); Rotate:
    degrees; Brightness/Color/Contrast/Sharpness: factor 1 + level;
    Posterize: bits (rounded); Solarize: threshold on the 0..255 scale;
    parameterless ops: 0.
    """
    op = OPS[op_id]
    mag = np.asarray(magnitude, dtype=np.float64)
    level = interpolate(op.table(space, height, width), mag)
    if op.signed:
        level = np.where(mag < 0, -level, level)
    name = op.name
    if name in ("ShearX", "ShearY"):
        return np.degrees(np.arctan(level))
    if name in ("TranslateX", "TranslateY"):
        return np.trunc(level)
    if name in ("Brightness", "Color", "Contrast", "Sharpness"):
        return 1.0 + level
    if name == "Posterize":
        return np.floor(level + 0.5)  # bins are whole; between bins, halves round up
    if name == "Solarize":
        # torchvision: threshold = 255.0 * float(linspace value)
        return 255.0 * level
    return level


def param_tables(space: int, height: int, width: int) -> np.ndarray:
    """All ops' 31-bin level tables as one float64 (len(OPS), 31) array, for
    compiled code (kernels.params) that cannot call `op_params`."""
    return np.stack([op.table(space, height, width) for op in OPS])
