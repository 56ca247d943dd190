"""The op table's generated dispatch, compiled: what the executors call, and
the per-op parameters every executor derives from it.

`ops` declares the table, `opgen` generates code for a table; this module joins
the two, so neither imports the other.
"""
from __future__ import annotations

import functools

import numpy as np

from ..kernels.interpreted import cached_or_twin
from . import opgen
from .ops import OPS, param_tables


@functools.lru_cache(maxsize=1)
def compiled():
    """The generated module for `OPS`: op_param(s), apply_op, apply_ops_batch, ..."""
    return opgen.load(OPS)


def op_params(op_id: int, magnitude, space: int, height: int, width: int) -> np.ndarray:
    """torchvision parameters for `op_id` at signed magnitudes (float64 array).

    Returned per op (what torchvision's RandAugment passes to v2.functional):
    ShearX/Y: shear in degrees, degrees(atan(level)); TranslateX/Y: whole
    pixels, int(level) (truncation toward zero, as torchvision); Rotate:
    degrees; Brightness/Color/Contrast/Sharpness: factor 1 + level;
    Posterize: bits (rounded); Solarize: threshold on the 0..255 scale;
    parameterless ops: 0. Computed by the same compiled functions the
    kernels use (augpipe.core.opgen), so every executor gets the same bits.
    """
    mag = np.asarray(magnitude, dtype=np.float64)
    flat = np.ascontiguousarray(mag.reshape(-1))
    # the torch executor serves a first use (engine/firstuse.py): the twin until the kernel is cached
    kernel = cached_or_twin(compiled().op_params_array)
    out = kernel(int(op_id), flat, param_tables(space, height, width))
    return out.reshape(mag.shape)
