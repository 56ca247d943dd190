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

from ..kernels import ops as K
from ..kernels import params as P
from ..kernels import torch_ops as T

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
class Affine:
    """How a geometric op's parameter enters the shared affine sampler (the
    torch executor samples every geometric op of a slot at once).

    Args:
        arg: "angle", "tx", "ty", "shear_x" or "shear_y".
        corner: centre the transform on the top-left corner (torchvision's
            center=[0, 0] for shears) instead of the image centre.
        negate: the sampler takes -parameter (rotate() turns counter-clockwise).
        right_angles: multiples of 90 degrees take torchvision's exact
            rot90 / copy short cuts instead of sampling.
    """

    arg: str
    corner: bool = False
    negate: bool = False
    right_angles: bool = False


@dataclass(frozen=True)
class Op:
    """One augmentation op, declared once.

    Args:
        name: torchvision's name for it.
        signed: whether the planner draws a random sign (+/- with p=0.5 each).
        standard: magnitude table in the RandAugment/AutoAugment space, or None
            for ops without a magnitude.
        wide: magnitude table in the TrivialAugmentWide space.
        param: numba function, signed level -> the parameter torchvision's
            functional op takes (kernels/params.py).
        kernel: numba kernel `(src HWC, param, dst)` for one image (kernels/ops.py).
        torch: batched torch kernel `(images NCHW, params (N,)) -> images`
            (augpipe/torch_kernels.py).
        identity: the value of `op_params` at which the op does nothing (a
            factor of 1, 8 bits, a threshold of 255); a larger magnitude never
            moves the parameter closer to it.
        affine: for geometric ops, how the torch executor batches them.
    """

    name: str
    signed: bool
    standard: Table | None
    wide: Table | None
    param: Callable
    kernel: Callable
    torch: Callable
    identity: float = 0.0
    affine: Affine | None = None

    def table(self, space: int, height: int, width: int) -> np.ndarray:
        """The 31 per-bin parameter magnitudes (unsigned), as float64."""
        return _table(self, space, height, width)


@functools.lru_cache(maxsize=1024)
def _table(op: "Op", space: int, height: int, width: int) -> np.ndarray:
    fn = op.standard if space == STANDARD else op.wide
    table = np.zeros(NUM_BINS) if fn is None else fn(height, width).to(torch.float64).numpy()
    table.flags.writeable = False  # shared by every caller through the cache
    return table


def _translate(side: int, wide: float) -> tuple[Table, Table]:
    """TranslateX/Y tables: 150/331 of the image side, or 32 px in the wide space."""
    return (lambda h, w: torch.linspace(0.0, 150.0 / 331.0 * (w, h)[side], NUM_BINS)), _lin(0.0, wide)


# Order matters: ids are positions in this tuple, and 0..13 are torchvision's
# RandAugment ops in torchvision's order. Invert (14) is AutoAugment-only.
# Adding an op: one line here, its numba kernel in kernels/ops.py and its torch
# kernel in augpipe/torch_kernels.py (and a parameter map in kernels/params.py
# if none fits); the dispatch, the id tables and the tests follow from this tuple.
OPS: tuple[Op, ...] = (
    Op("Identity", False, None, None, P.param_level, K.op_identity, T.identity),
    Op("ShearX", True, _lin(0.0, 0.3), _lin(0.0, 0.99), P.param_shear, K.op_shear_x, T.shear_x,
       affine=Affine("shear_x", corner=True)),
    Op("ShearY", True, _lin(0.0, 0.3), _lin(0.0, 0.99), P.param_shear, K.op_shear_y, T.shear_y,
       affine=Affine("shear_y", corner=True)),
    Op("TranslateX", True, *_translate(0, 32.0), P.param_pixels, K.op_translate_x, T.translate_x,
       affine=Affine("tx")),
    Op("TranslateY", True, *_translate(1, 32.0), P.param_pixels, K.op_translate_y, T.translate_y,
       affine=Affine("ty")),
    Op("Rotate", True, _lin(0.0, 30.0), _lin(0.0, 135.0), P.param_level, K.op_rotate, T.rotate,
       affine=Affine("angle", negate=True, right_angles=True)),
    Op("Brightness", True, _lin(0.0, 0.9), _lin(0.0, 0.99), P.param_factor, K.op_brightness, T.brightness, 1.0),
    Op("Color", True, _lin(0.0, 0.9), _lin(0.0, 0.99), P.param_factor, K.op_color, T.color, 1.0),
    Op("Contrast", True, _lin(0.0, 0.9), _lin(0.0, 0.99), P.param_factor, K.op_contrast, T.contrast, 1.0),
    Op("Sharpness", True, _lin(0.0, 0.9), _lin(0.0, 0.99), P.param_factor, K.op_sharpness, T.sharpness, 1.0),
    Op("Posterize", False, _posterize_bits(4), _posterize_bits(6), P.param_bits, K.op_posterize, T.posterize, 8.0),
    Op("Solarize", False, _lin(1.0, 0.0), _lin(1.0, 0.0), P.param_threshold, K.op_solarize, T.solarize, 255.0),
    Op("AutoContrast", False, None, None, P.param_level, K.op_autocontrast, T.autocontrast),
    Op("Equalize", False, None, None, P.param_level, K.op_equalize, T.equalize),
    Op("Invert", False, None, None, P.param_level, K.op_invert, T.invert),
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


@functools.lru_cache(maxsize=256)
def param_tables(space: int, height: int, width: int) -> np.ndarray:
    """All ops' 31-bin level tables as one read-only float64 (len(OPS), 31)
    array, for compiled code."""
    tables = np.stack([op.table(space, height, width) for op in OPS])
    tables.flags.writeable = False
    return tables
