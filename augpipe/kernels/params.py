"""Magnitude -> parameter maps, for compiled code.

`level` interpolates an op's 31-bin table (`augpipe.core.ops.param_tables`); the
`param_*` functions turn a signed level into the parameter torchvision's
functional op takes. The op table (`augpipe.core.ops.OPS`) names one map per op;
`augpipe.core.opgen` generates the per-op dispatch from it, and the NumPy face
(`augpipe.core.ops.op_params`) calls the same compiled functions, so every executor
uses the very same float64 arithmetic: libm's `atan` for shears, as Python's
`math.atan` in torchvision (NumPy's SIMD `arctan` differs in the last bit on
some CPUs and is not used). This module depends on nothing of augpipe.
"""
import math

import numpy as np
from numba import njit

NUM_BINS = 31
_MAX_MAG = 30.0
_RAD_TO_DEG = 180.0 / math.pi  # math.degrees multiplies by this


@njit(nogil=True, cache=True)
def level(table, magnitude):
    """Linear interpolation of a 31-bin table at an (unsigned) magnitude;
    integer magnitudes give the bin's exact value."""
    m = min(max(abs(magnitude), 0.0), _MAX_MAG)
    lo = math.floor(m)
    hi = min(lo + 1, NUM_BINS - 1)
    t = m - lo
    if t == 0.0:
        return table[lo]
    return table[lo] + t * (table[hi] - table[lo])


@njit(nogil=True, cache=True)
def param_level(lev):
    """The level itself (Rotate's degrees; parameterless ops)."""
    return lev


@njit(nogil=True, cache=True)
def param_shear(lev):
    """Shear in degrees: torchvision's math.degrees(math.atan(level))."""
    return math.atan(lev) * _RAD_TO_DEG


@njit(nogil=True, cache=True)
def param_pixels(lev):
    """Whole pixels: int(level), toward zero, keeping -0.0 (np.trunc)."""
    return math.copysign(float(int(lev)), lev)


@njit(nogil=True, cache=True)
def param_factor(lev):
    """Enhancement factor 1 + level (Brightness, Color, Contrast, Sharpness)."""
    return 1.0 + lev


@njit(nogil=True, cache=True)
def param_bits(lev):
    """Posterize bits: whole bins; between bins, halves round up."""
    return float(math.floor(lev + 0.5))


@njit(nogil=True, cache=True)
def param_threshold(lev):
    """Solarize threshold on the 0..255 scale: 255.0 * level."""
    return 255.0 * lev


@njit(nogil=True, cache=True)
def signed_level(table, signed, signed_mag):
    """The op's level at a signed magnitude (the sign counts for signed ops)."""
    mag = np.float64(signed_mag)
    lev = level(table, mag)
    if signed and mag < 0:
        lev = -lev
    return lev
