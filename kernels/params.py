"""Op parameters from signed magnitudes, for compiled code.

`op_param` is `augpipe.ops.op_params` for one sample: the same float64
expressions in the same order, reading the op's 31-bin level table from
`tables = augpipe.ops.param_tables(space, height, width)` (passed in: this
module depends on nothing of augpipe). Op ids are positions in
`augpipe.ops.OPS`; the constants below are checked against `OP_IDS` by the
tests.

One known difference: ShearX/ShearY take degrees(atan(level)). NumPy's float64
`arctan` on this machine (AVX-512, SVML loops) and libm's `atan` (what numba and
plain Python call) disagree in the last bit for ~0.4% of arguments, so a
fractional-magnitude shear may differ from `op_params` by 1 ulp of float64.
The affine matrix is rounded to float32 before use, so this never reaches a
pixel in practice (see tests/test_kernels.py).
"""
import math

import numpy as np
from numba import njit

IDENTITY = 0
SHEAR_X = 1
SHEAR_Y = 2
TRANSLATE_X = 3
TRANSLATE_Y = 4
ROTATE = 5
BRIGHTNESS = 6
COLOR = 7
CONTRAST = 8
SHARPNESS = 9
POSTERIZE = 10
SOLARIZE = 11
AUTO_CONTRAST = 12
EQUALIZE = 13
INVERT = 14
NUM_OPS = 15

OP_IDS = {
    "Identity": IDENTITY, "ShearX": SHEAR_X, "ShearY": SHEAR_Y, "TranslateX": TRANSLATE_X,
    "TranslateY": TRANSLATE_Y, "Rotate": ROTATE, "Brightness": BRIGHTNESS, "Color": COLOR,
    "Contrast": CONTRAST, "Sharpness": SHARPNESS, "Posterize": POSTERIZE, "Solarize": SOLARIZE,
    "AutoContrast": AUTO_CONTRAST, "Equalize": EQUALIZE, "Invert": INVERT,
}

NUM_BINS = 31
_MAX_MAG = 30.0
_RAD_TO_DEG = 180.0 / math.pi  # np.degrees and math.degrees both multiply by this


@njit(nogil=True, cache=True)
def level(table, magnitude):
    """`augpipe.ops.interpolate` for one (unsigned) magnitude."""
    m = min(max(abs(magnitude), 0.0), _MAX_MAG)
    lo = math.floor(m)
    hi = min(lo + 1, NUM_BINS - 1)
    t = m - lo
    if t == 0.0:
        return table[lo]  # integer magnitudes: the bin's exact value
    return table[lo] + t * (table[hi] - table[lo])


@njit(nogil=True, cache=True)
def is_signed(op_id):
    """Whether the planner draws a random sign for this op."""
    return SHEAR_X <= op_id <= SHARPNESS


@njit(nogil=True, cache=True)
def op_param(op_id, signed_mag, tables):
    """The torchvision parameter of op `op_id` at one signed magnitude (float64).

    Args:
        op_id: op id (position in augpipe.ops.OPS).
        signed_mag: magnitude on the 0..30 scale; its sign matters for signed ops.
        tables: float64 (15, 31) level tables, `augpipe.ops.param_tables(space, h, w)`.
    """
    mag = np.float64(signed_mag)
    lev = level(tables[op_id], mag)
    if is_signed(op_id) and mag < 0:
        lev = -lev
    if op_id == SHEAR_X or op_id == SHEAR_Y:
        return math.atan(lev) * _RAD_TO_DEG
    if op_id == TRANSLATE_X or op_id == TRANSLATE_Y:
        return math.copysign(float(int(lev)), lev)  # np.trunc: toward zero, keeps -0.0
    if BRIGHTNESS <= op_id <= SHARPNESS:
        return 1.0 + lev
    if op_id == POSTERIZE:
        return float(math.floor(lev + 0.5))
    if op_id == SOLARIZE:
        return 255.0 * lev
    return lev
